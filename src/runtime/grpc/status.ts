import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { Metadata, status as Status, type StatusObject } from "@grpc/grpc-js";
import { StatusSchema } from "../../../gen/google/rpc/status_pb.js";
import { ErrorDetailSchema } from "../../../gen/parley/v1/errors_pb.js";
import { ErrorCategory, type ErrorContext, fromErrorDetail, ParleyError, type ParleyErrorOptions, toErrorDetail } from "../../wire/index.js";

/** The standard trailer that carries a binary google.rpc.Status. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** category → gRPC status code. The one place this decision is made. */
export function grpcCodeForCategory(category: ErrorCategory): Status {
  switch (category) {
    case ErrorCategory.VALIDATION:
      return Status.INVALID_ARGUMENT;
    case ErrorCategory.SERIALIZATION:
      return Status.INTERNAL;
    case ErrorCategory.ROUTING:
      return Status.UNIMPLEMENTED;
    case ErrorCategory.PERSISTENCE:
      return Status.ABORTED;
    case ErrorCategory.UNAVAILABLE:
      return Status.UNAVAILABLE;
    case ErrorCategory.TIMEOUT:
      return Status.DEADLINE_EXCEEDED;
    case ErrorCategory.UNAUTHENTICATED:
      return Status.UNAUTHENTICATED;
    case ErrorCategory.PERMISSION_DENIED:
      return Status.PERMISSION_DENIED;
    case ErrorCategory.RATE_LIMITED:
      return Status.RESOURCE_EXHAUSTED;
    case ErrorCategory.DELIVERY:
      return Status.UNKNOWN;
    case ErrorCategory.INTERNAL:
    case ErrorCategory.UNSPECIFIED:
      return Status.INTERNAL;
  }
}

/**
 * gRPC status code → category, for statuses that arrive without a parley
 * ErrorDetail (raised by grpc-js itself, a proxy, or another server).
 */
export function categoryForGrpcCode(code: Status): ErrorCategory {
  switch (code) {
    case Status.INVALID_ARGUMENT:
    case Status.FAILED_PRECONDITION:
    case Status.OUT_OF_RANGE:
    case Status.ALREADY_EXISTS:
      return ErrorCategory.VALIDATION;
    case Status.NOT_FOUND:
    case Status.UNIMPLEMENTED:
      return ErrorCategory.ROUTING;
    case Status.ABORTED:
    case Status.DATA_LOSS:
      return ErrorCategory.PERSISTENCE;
    // A call cut off by the server going away looks like CANCELLED to the
    // client: as for UNAVAILABLE, resending with the same key is the answer.
    case Status.UNAVAILABLE:
    case Status.CANCELLED:
      return ErrorCategory.UNAVAILABLE;
    case Status.DEADLINE_EXCEEDED:
      return ErrorCategory.TIMEOUT;
    case Status.UNAUTHENTICATED:
      return ErrorCategory.UNAUTHENTICATED;
    case Status.PERMISSION_DENIED:
      return ErrorCategory.PERMISSION_DENIED;
    case Status.RESOURCE_EXHAUSTED:
      return ErrorCategory.RATE_LIMITED;
    case Status.OK:
    case Status.UNKNOWN:
    case Status.INTERNAL:
      return ErrorCategory.INTERNAL;
  }
}

/**
 * A failure whose gRPC status code a standard protocol prescribes, in place
 * of its category's: grpc.health.v1 answers an unknown service with
 * NOT_FOUND. The category still travels in the details.
 */
export class ProtocolStatusError extends ParleyError {
  constructor(
    readonly grpcCode: Status,
    category: ErrorCategory,
    message: string,
    options: ParleyErrorOptions = {},
  ) {
    super(category, message, options);
  }

  override withContext(context: ErrorContext): ProtocolStatusError {
    return new ProtocolStatusError(this.grpcCode, this.category, this.message, {
      field: this.field,
      cause: this.cause,
      retryable: this.retryable,
      retryAfterMs: this.retryAfterMs,
      context: { ...this.context, ...context },
    });
  }
}

/**
 * A ParleyError as a grpc-js status: the code from the table above (or
 * the one a ProtocolStatusError carries), the message, and the ErrorDetail
 * packed into google.rpc.Status details.
 */
export function toGrpcStatus(error: ParleyError, traceId = ""): StatusObject {
  const code = error instanceof ProtocolStatusError ? error.grpcCode : grpcCodeForCategory(error.category);
  const rpcStatus = create(StatusSchema, {
    code,
    message: error.message,
    details: [anyPack(ErrorDetailSchema, toErrorDetail(error, traceId))],
  });
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(StatusSchema, rpcStatus)));
  return { code, details: error.message, metadata };
}

/** The shape grpc-js gives a failed call (ServiceError), loosely typed. */
interface GrpcErrorLike {
  code?: unknown;
  details?: unknown;
  message?: unknown;
  metadata?: unknown;
}

/**
 * Reads a failed call's status back into a ParleyError: the ErrorDetail from
 * the status details when present, the code table otherwise.
 */
export function fromGrpcError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  const like = (typeof error === "object" && error !== null ? error : {}) as GrpcErrorLike;
  if (typeof like.code !== "number") return ParleyError.from(error);
  const detailed = like.metadata instanceof Metadata ? detailFromMetadata(like.metadata, error) : undefined;
  if (detailed) return detailed;
  const code = asStatus(like.code);
  const message = typeof like.details === "string" && like.details !== "" ? like.details : String(like.message);
  return oversizeError(code, message, error) ?? transportLoss(code, message, error) ?? new ParleyError(categoryForGrpcCode(code), message, { cause: error });
}

/**
 * grpc-js words the loss of the HTTP/2 session under a call (the peer reset
 * the stream, the session closed or went away) as INTERNAL with no details.
 * The call may or may not have reached the server, like any outage: it is
 * UNAVAILABLE, retryable (resent with the same idempotency key), never a
 * "give up" for the caller.
 */
const SESSION_LOST = /RST_STREAM|Session closed|GOAWAY|ECONNRESET|Stream refused/i;

function transportLoss(code: Status, message: string, cause: unknown): ParleyError | undefined {
  if (code !== Status.INTERNAL || !SESSION_LOST.test(message)) return undefined;
  return new ParleyError(ErrorCategory.UNAVAILABLE, message, { cause, retryable: true });
}

// grpc-js words its own size refusals this way (stream decoder, compression
// filter); the numbers are what a caller needs to fix the message.
const LARGER_THAN_MAX = /message larger than max \((\d+) vs\.? (\d+)\)/i;
const LARGER_THAN_LIMIT = /(?:decompresses to|send message with) a size larger than (\d+)/i;

/**
 * grpc-js refuses a message over a size limit (the server's receive limit,
 * or either side's send limit) with RESOURCE_EXHAUSTED and no details:
 * that is the caller's message being too big, VALIDATION naming the sizes
 * and not worth resending, where parley's own RATE_LIMITED always carries
 * its detail. Undefined for any other status.
 */
export function oversizeError(code: Status, message: string, cause: unknown = new Error(message)): ParleyError | undefined {
  if (code !== Status.RESOURCE_EXHAUSTED) return undefined;
  const sizes = LARGER_THAN_MAX.exec(message);
  if (sizes !== null) return tooLarge(`message of ${sizes[1]} bytes exceeds the limit of ${sizes[2]} bytes`, cause);
  const limit = LARGER_THAN_LIMIT.exec(message);
  if (limit !== null) return tooLarge(`message exceeds the limit of ${limit[1]} bytes`, cause);
  return undefined;
}

function tooLarge(message: string, cause: unknown): ParleyError {
  return new ParleyError(ErrorCategory.VALIDATION, message, { retryable: false, cause });
}

const STATUS_BY_NUMBER = new Map<number, Status>(
  Object.values(Status)
    .filter((value): value is Status => typeof value === "number")
    .map((value) => [value, value]),
);

/** A numeric code as a Status; codes outside the gRPC set count as UNKNOWN. */
function asStatus(code: number): Status {
  return STATUS_BY_NUMBER.get(code) ?? Status.UNKNOWN;
}

function detailFromMetadata(metadata: Metadata, cause: unknown): ParleyError | undefined {
  const raw = metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Buffer)) return undefined;
  try {
    const rpcStatus = fromBinary(StatusSchema, raw);
    for (const any of rpcStatus.details) {
      const detail = anyUnpack(any, ErrorDetailSchema);
      if (detail) {
        const parsed = fromErrorDetail(detail);
        return new ParleyError(parsed.category, parsed.message, {
          field: parsed.field,
          retryable: parsed.retryable,
          retryAfterMs: parsed.retryAfterMs,
          context: parsed.context,
          cause,
        });
      }
    }
  } catch {
    // A corrupt details trailer is not worth failing over: fall back to the code.
  }
  return undefined;
}
