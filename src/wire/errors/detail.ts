import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type ErrorDetail, ErrorDetailSchema } from "../../../gen/parley/v1/errors_pb.js";
import { ErrorCategory } from "./category.js";
import { ParleyError } from "./parley-error.js";

/**
 * The wire form of an error, shared by the gRPC status details and the
 * WebSocket error frame. Only the message and field go out; the cause and
 * context stay in the server's logs.
 */
export function toErrorDetail(error: ParleyError, traceId = ""): ErrorDetail {
  return create(ErrorDetailSchema, {
    category: error.category,
    message: wireText(error.message, 1024),
    field: wireText(error.field ?? "", 256),
    retryable: error.retryable,
    retryAfter: error.retryAfterMs === undefined ? undefined : durationFromMs(error.retryAfterMs),
    traceId,
  });
}

/** The inverse of toErrorDetail, for clients reading an error off the wire. */
export function fromErrorDetail(detail: ErrorDetail): ParleyError {
  const retryAfter = detail.retryAfter;
  return new ParleyError(
    detail.category === ErrorCategory.UNSPECIFIED ? ErrorCategory.INTERNAL : detail.category,
    detail.message,
    {
      field: detail.field === "" ? undefined : detail.field,
      retryable: detail.retryable,
      retryAfterMs:
        retryAfter === undefined ? undefined : Number(retryAfter.seconds) * 1000 + Math.round(retryAfter.nanos / 1e6),
      context: detail.traceId === "" ? {} : { remote_trace_id: detail.traceId },
    },
  );
}

/**
 * Messages may quote client input: bound their length and replace lone
 * surrogates, so that every error frame encodes (UTF-8) and stays small.
 */
function wireText(text: string, max: number): string {
  const bounded = text.length > max ? `${text.slice(0, max)}…` : text;
  return bounded.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}
