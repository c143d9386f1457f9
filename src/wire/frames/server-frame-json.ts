import type { SendAck, ServerFrame } from "../../../gen/parley/v1/frames_pb.js";
import { chatMessageJson } from "../codecs/chat-message.js";

/**
 * proto3 JSON for the server frames that carry the traffic — a room's
 * message, pushed to every member, and a send's ack — written directly
 * instead of through toJsonString's reflection (about a ninth of the
 * bridge's busy time at 2,500 msgs/s went to toJsonString).
 *
 * The text is exactly toJsonString's: fields in field-number order, zero
 * values left out, int64 as decimal strings, strings through JSON.stringify,
 * a Timestamp as RFC 3339 with 0, 3, 6 or 9 fractional digits (ChatMessage's
 * own JSON is in ../codecs/chat-message.ts). test/wire/codecs/conformance.test.ts
 * compares the two on frames generated from the schema and fails when a
 * field is added to one of these types and not here. Anything else — another kind
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
