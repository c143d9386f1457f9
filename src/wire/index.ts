/**
 * What both ends of a wire agree on: the shared limits, the error model and
 * its wire forms, the WebSocket frame codecs, the hand-written hot codecs,
 * and backoff. Imports only gen/ and @bufbuild/protobuf (the boundary lint
 * enforces it), so the browser client can use it. The server-side hot codecs
 * and the raw frame writer use Node's global Buffer for speed; the client
 * does not call them.
 */

// Limits and request checks (VALIDATION errors naming the field).
export { DEFAULT_PAGE_SIZE, IDEMPOTENCY_KEY, MAX_BATCH_ITEMS, MAX_BODY_CODE_POINTS, MAX_DIRECT_OTHERS, MAX_PAGE_SIZE, MAX_REASON_CODE_POINTS, MAX_ROOM_NAME_CODE_POINTS, MAX_ROOM_TOPIC_CODE_POINTS, ROOM_ID, checkBody, checkIdempotencyKey, checkPageSize, checkRoom, checkSeq, checkText } from "./limits.js";
export { canHoldEnums, checkEnums } from "./enum-check.js";

// Who may read a room's log: the read row of core's decision table, which the bridge applies per connection.
export { mayReadRoom, type ReadLost, ReadWatch } from "./room-read.js";

// The error model: one class, one closed category, one wire detail.
export { ParleyError, validationError } from "./errors/parley-error.js";
export type { ErrorContext, ParleyErrorOptions } from "./errors/parley-error.js";
export { ErrorCategory, categoryName } from "./errors/category.js";
export { fromErrorDetail, toErrorDetail } from "./errors/detail.js";
export { closeMeaning, errorFrame, httpStatusForCategory } from "./errors/websocket.js";

// WebSocket frames: decoding against the schema, encoding, raw framing.
export { FrameDecodeError, decodeClientFrame, encodeServerFrame } from "./frames/frames.js";
export type { FrameFormat } from "./frames/frames.js";
export { serverFrame } from "./frames/ws-frame.js";

// Hand-written codecs of the hottest gRPC messages (checked against protobuf-es by one conformance test).
export { hotCodec } from "./codecs/registry.js";

// Retries.
export { backoffCap, backoffDelay, PEER_RETRY_BACKOFF, sleep } from "./backoff.js";
export type { BackoffPolicy } from "./backoff.js";
