import type { ClientFrame } from "../../../gen/parley/v1/frames_pb.js";

/**
 * The usual send frame in proto3 JSON, read without protobuf-es's reflection
 * (fromJsonString was about a twelfth of the bridge's busy time at 2,500
 * msgs/s):
 *
 *   {"requestId":"7","send":{"seq":"7","room":"r","body":"hi","clientMsgId":"c7"}}
 *
 * Only the plainest form is taken: JSON field names, each at most once,
 * string values that are well-formed Unicode, and a seq that is a
 * non-negative integer (a safe-integer number, or a decimal string of at
 * most 18 digits without leading zeros). Anything else — proto field names,
 * nulls, other request kinds, duplicate keys, a value to convert or refuse —
 * returns undefined, and fromJsonString decodes the frame (or names what is
 * wrong with it; decodeClientFrame then also refuses a seq string that is
 * not a decimal integer, like "0x10" or "+5", which protobuf-es takes). For what it takes, the frame is exactly fromJsonString's:
 * test/client-frame-json.test.ts compares the two on random and mutated frames.
 */
export function plainSendFrame(text: string): ClientFrame | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isPlainObject(json)) return undefined;
  let requestId = "";
  let traceparent = "";
  let send: Record<string, unknown> | undefined;
  let keys = 0;
  for (const key in json) {
    keys++;
    const value = json[key];
    if (key === "requestId" && isText(value)) requestId = value;
    else if (key === "traceparent" && isText(value)) traceparent = value;
    else if (key === "send" && isPlainObject(value)) send = value;
    else return undefined;
  }
  if (send === undefined) return undefined;
  let seq = 0n;
  let room = "";
  let body = "";
  let clientMsgId = "";
  for (const key in send) {
    keys++;
    const value = send[key];
    if (key === "seq") {
      const parsed = plainSeq(value);
      if (parsed === undefined) return undefined;
      seq = parsed;
    } else if (key === "room" && isText(value)) room = value;
    else if (key === "body" && isText(value)) body = value;
    else if (key === "clientMsgId" && isText(value)) clientMsgId = value;
    else return undefined;
  }
  // JSON.parse keeps the last of repeated keys, which fromJsonString refuses.
  if (countKeys(text) !== keys) return undefined;
  return {
    $typeName: "parley.v1.ClientFrame",
    requestId,
    traceparent,
    request: { case: "send", value: { $typeName: "parley.v1.SendFrame", seq, room, body, clientMsgId } },
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** String.prototype.isWellFormed: in Node 20, not yet in the ES2022 library types. */
type WellFormedCheck = string & { isWellFormed(): boolean };

/** A string protobuf-es accepts as is (it refuses lone surrogates). */
function isText(value: unknown): value is string {
  return typeof value === "string" && (value as WellFormedCheck).isWellFormed();
}

const PLAIN_DECIMAL = /^(?:0|[1-9][0-9]{0,17})$/;

function plainSeq(value: unknown): bigint | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 && !Object.is(value, -0) ? BigInt(value) : undefined;
  if (typeof value === "string" && PLAIN_DECIMAL.test(value)) return BigInt(value);
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/**
 * Object member names in well-formed JSON text, at any depth. More names
 * than the parsed objects hold means a key was repeated. Nesting deeper than
 * 30 counts as -1 (never a match): the plain frame is two levels deep.
 */
function countKeys(text: string): number {
  let keys = 0;
  let depth = 0;
  // Bit d set: the container at depth d is an object (not an array).
  let objects = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      if (expectKey) keys++;
      expectKey = false;
      for (i++; i < text.length; i++) {
        const inner = text.charCodeAt(i);
        if (inner === BACKSLASH) i++;
        else if (inner === QUOTE) break;
      }
    } else if (code === OPEN_OBJECT || code === OPEN_ARRAY) {
      if (++depth > 30) return -1;
      objects = code === OPEN_OBJECT ? objects | (1 << depth) : objects & ~(1 << depth);
      expectKey = code === OPEN_OBJECT;
    } else if (code === CLOSE_OBJECT || code === CLOSE_ARRAY) {
      depth--;
      expectKey = false;
    } else if (code === COMMA) {
      expectKey = (objects & (1 << depth)) !== 0;
    } else if (code === COLON) {
      expectKey = false;
    }
  }
  return keys;
}
