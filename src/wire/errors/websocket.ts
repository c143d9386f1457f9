import { create } from "@bufbuild/protobuf";
import { CloseCode, type ServerFrame, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { ErrorCategory } from "./category.js";
import { toErrorDetail } from "./detail.js";
import type { ParleyError } from "./parley-error.js";

export { CloseCode };

/** The error frame answering `requestId` (empty when it could not be read). */
export function errorFrame(requestId: string, error: ParleyError, traceId = ""): ServerFrame {
  return create(ServerFrameSchema, {
    requestId,
    kind: { case: "error", value: toErrorDetail(error, traceId) },
  });
}

/**
 * category → WebSocket close code, for failures that end a connection
 * (most failures only answer one request with an error frame).
 */
export function closeCodeForCategory(category: ErrorCategory): CloseCode {
  switch (category) {
    case ErrorCategory.UNAUTHENTICATED:
      return CloseCode.UNAUTHENTICATED;
    case ErrorCategory.PERMISSION_DENIED:
      return CloseCode.PERMISSION_DENIED;
    case ErrorCategory.RATE_LIMITED:
      return CloseCode.RATE_LIMITED;
    case ErrorCategory.VALIDATION:
    case ErrorCategory.ROUTING:
      return CloseCode.TOO_MANY_ERRORS;
    case ErrorCategory.TIMEOUT:
      return CloseCode.HEARTBEAT_TIMEOUT;
    case ErrorCategory.DELIVERY:
      return CloseCode.SLOW_CONSUMER;
    case ErrorCategory.UNAVAILABLE:
      return CloseCode.GOING_AWAY;
    case ErrorCategory.SERIALIZATION:
    case ErrorCategory.PERSISTENCE:
    case ErrorCategory.INTERNAL:
    case ErrorCategory.UNSPECIFIED:
      return CloseCode.INTERNAL_ERROR;
  }
}

/**
 * Whether a client should reconnect (with backoff) after this close code and
 * resume from its last seq. 4000-4499 and the standard transient codes do;
 * 4500-4999 are terminal until the client changes something.
 */
export function shouldReconnect(code: number): boolean {
  if (code >= 4000 && code <= 4499) return true;
  if (code >= 4500 && code <= 4999) return false;
  return code === 1001 || code === 1006 || code === 1011 || code === 1012 || code === 1013;
}

/** category → HTTP status for a WebSocket upgrade that is refused. */
export function httpStatusForCategory(category: ErrorCategory): number {
  switch (category) {
    case ErrorCategory.VALIDATION:
      return 400;
    case ErrorCategory.UNAUTHENTICATED:
      return 401;
    case ErrorCategory.PERMISSION_DENIED:
      return 403;
    case ErrorCategory.ROUTING:
      return 404;
    case ErrorCategory.RATE_LIMITED:
      return 429;
    case ErrorCategory.UNAVAILABLE:
    case ErrorCategory.DELIVERY:
      return 503;
    case ErrorCategory.TIMEOUT:
      return 504;
    case ErrorCategory.SERIALIZATION:
    case ErrorCategory.PERSISTENCE:
    case ErrorCategory.INTERNAL:
    case ErrorCategory.UNSPECIFIED:
      return 500;
  }
}
