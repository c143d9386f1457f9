import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import type { SendAck, ServerFrame } from "../../../gen/parley/v1/frames_pb.js";

/**
 * proto3 JSON for the server frames that carry the traffic — a room's
 * message, pushed to every member, and a send's ack — written directly
 * instead of through toJsonString's reflection (about a ninth of the
 * bridge's busy time at 2,500 msgs/s went to toJsonString).
 *
 * The text is exactly toJsonString's: fields in field-number order, zero
 * values left out, int64 as decimal strings, strings through JSON.stringify,
 * a Timestamp as RFC 3339 with 0, 3, 6 or 9 fractional digits.
 * test/server-frame-json.test.ts compares the two on random frames and fails
 * when a field is added to one of these types. Anything else — another kind
 * of frame, or a timestamp toJsonString refuses — returns undefined, and the
 * caller uses toJsonString (which raises the error).
 */
export function hotServerFrameJson(frame: ServerFrame): string | undefined {
  const kind = frame.kind;
  let body: string | undefined;
  if (kind.case === "message") {
    const message = chatMessageJson(kind.value);
    body = message === undefined ? undefined : `"message":${message}`;
  } else if (kind.case === "sendAck") {
    const ack = sendAckJson(kind.value);
    body = ack === undefined ? undefined : `"sendAck":${ack}`;
  }
  if (body === undefined) return undefined;
  return frame.requestId === "" ? `{${body}}` : `{"requestId":${JSON.stringify(frame.requestId)},${body}}`;
}

/** SendAck: seq = 1 (int64), message = 2, duplicate = 3. */
function sendAckJson(ack: SendAck): string | undefined {
  const parts: string[] = [];
  if (ack.seq !== 0n) parts.push(`"seq":"${ack.seq}"`);
  if (ack.message !== undefined) {
    const message = chatMessageJson(ack.message);
    if (message === undefined) return undefined;
    parts.push(`"message":${message}`);
  }
  if (ack.duplicate) parts.push(`"duplicate":true`);
  return `{${parts.join(",")}}`;
}

/** ChatMessage: id = 1, room = 2, seq = 3 (int64), sender = 4, body = 5, client_msg_id = 6, created_at = 7. */
function chatMessageJson(message: ChatMessage): string | undefined {
  let out = "";
  if (message.id !== "") out += `,"id":${JSON.stringify(message.id)}`;
  if (message.room !== "") out += `,"room":${JSON.stringify(message.room)}`;
  if (message.seq !== 0n) out += `,"seq":"${message.seq}"`;
  if (message.sender !== "") out += `,"sender":${JSON.stringify(message.sender)}`;
  if (message.body !== "") out += `,"body":${JSON.stringify(message.body)}`;
  if (message.clientMsgId !== "") out += `,"clientMsgId":${JSON.stringify(message.clientMsgId)}`;
  if (message.createdAt !== undefined) {
    const createdAt = timestampJson(message.createdAt);
    if (createdAt === undefined) return undefined;
    out += `,"createdAt":"${createdAt}"`;
  }
  return `{${out.slice(1)}}`;
}

const EARLIEST_MS = Date.parse("0001-01-01T00:00:00Z");
const LATEST_MS = Date.parse("9999-12-31T23:59:59Z");

/** The last second formatted: a room's messages mostly share their second. */
let cachedSeconds: bigint | undefined;
let cachedSecondText = "";

/** RFC 3339 in UTC, as protobuf-es writes it; undefined where toJson throws (out of range, bad nanos). */
function timestampJson(timestamp: Timestamp): string | undefined {
  const { seconds, nanos } = timestamp;
  if (seconds !== cachedSeconds) {
    const ms = Number(seconds) * 1000;
    if (!(ms >= EARLIEST_MS && ms <= LATEST_MS)) return undefined;
    // "YYYY-MM-DDTHH:mm:ss" of "YYYY-MM-DDTHH:mm:ss.000Z" (whole seconds).
    cachedSecondText = new Date(ms).toISOString().slice(0, 19);
    cachedSeconds = seconds;
  }
  if (nanos < 0 || nanos > 999_999_999) return undefined;
  if (nanos === 0) return `${cachedSecondText}Z`;
  const digits = (nanos + 1_000_000_000).toString().slice(1);
  if (digits.endsWith("000000")) return `${cachedSecondText}.${digits.slice(0, 3)}Z`;
  if (digits.endsWith("000")) return `${cachedSecondText}.${digits.slice(0, 6)}Z`;
  return `${cachedSecondText}.${digits}Z`;
}
