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

/** What a close code tells the client: the failure's category, and whether to reconnect (with backoff) and resume. */
export interface CloseMeaning {
  readonly category: ErrorCategory;
  readonly reconnect: boolean;
}

/**
 * Every close code parley sends, read back. 4000-4499 reconnect and
 * resume; 4500-4999 are terminal until the client changes something (a new
 * token, a fixed bug). A closeCodeForCategory result read here gives the
 * category back (or its nearest: SERIALIZATION and PERSISTENCE close as
 * INTERNAL_ERROR, ROUTING as TOO_MANY_ERRORS).
 */
const CLOSE_MEANINGS: Readonly<Record<CloseCode, CloseMeaning>> = {
  // Not a close code on the wire; a peer that sends 0 broke the protocol.
  [CloseCode.UNSPECIFIED]: { category: ErrorCategory.INTERNAL, reconnect: false },
  // The server ended the connection on purpose: nothing to resume.
  [CloseCode.NORMAL]: { category: ErrorCategory.UNAVAILABLE, reconnect: false },
  [CloseCode.GOING_AWAY]: { category: ErrorCategory.UNAVAILABLE, reconnect: true },
  [CloseCode.INVALID_PAYLOAD]: { category: ErrorCategory.VALIDATION, reconnect: false },
  [CloseCode.MESSAGE_TOO_BIG]: { category: ErrorCategory.VALIDATION, reconnect: false },
  [CloseCode.INTERNAL_ERROR]: { category: ErrorCategory.INTERNAL, reconnect: true },
  [CloseCode.HEARTBEAT_TIMEOUT]: { category: ErrorCategory.TIMEOUT, reconnect: true },
  [CloseCode.SLOW_CONSUMER]: { category: ErrorCategory.DELIVERY, reconnect: true },
  [CloseCode.RATE_LIMITED]: { category: ErrorCategory.RATE_LIMITED, reconnect: true },
  [CloseCode.UNAUTHENTICATED]: { category: ErrorCategory.UNAUTHENTICATED, reconnect: false },
  [CloseCode.PERMISSION_DENIED]: { category: ErrorCategory.PERMISSION_DENIED, reconnect: false },
  [CloseCode.TOO_MANY_ERRORS]: { category: ErrorCategory.VALIDATION, reconnect: false },
};

/**
 * Standard codes (RFC 6455 section 7.4, the IANA registry) that parley does
 * not send but a client still meets: from ws itself, a proxy, the browser.
 */
const STANDARD_CLOSE_MEANINGS: ReadonlyMap<number, CloseMeaning> = new Map([
  [1002, { category: ErrorCategory.VALIDATION, reconnect: false }], // protocol error
  [1003, { category: ErrorCategory.VALIDATION, reconnect: false }], // unsupported data
  [1006, { category: ErrorCategory.UNAVAILABLE, reconnect: true }], // closed without a close frame
  [1012, { category: ErrorCategory.UNAVAILABLE, reconnect: true }], // service restart
  [1013, { category: ErrorCategory.UNAVAILABLE, reconnect: true }], // try again later
]);

const RECONNECT_UNKNOWN: CloseMeaning = { category: ErrorCategory.UNAVAILABLE, reconnect: true };
const TERMINAL_UNKNOWN: CloseMeaning = { category: ErrorCategory.UNAVAILABLE, reconnect: false };

/**
 * What the close code a client received means. Codes parley does not name
 * fall into their range (4000-4499 reconnect, 4500-4999 terminal); any
 * other unknown code is terminal.
 */
export function closeMeaning(code: number): CloseMeaning {
  const known = (CLOSE_MEANINGS as Readonly<Record<number, CloseMeaning | undefined>>)[code] ?? STANDARD_CLOSE_MEANINGS.get(code);
  if (known !== undefined) return known;
  return code >= 4000 && code <= 4499 ? RECONNECT_UNKNOWN : TERMINAL_UNKNOWN;
}

/** Whether a client should reconnect (with backoff) after this close code and resume from its last seq. */
export function shouldReconnect(code: number): boolean {
  return closeMeaning(code).reconnect;
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
