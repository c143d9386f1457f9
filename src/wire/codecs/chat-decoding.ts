import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type ChatMessage,
  ChatServiceSubscribeResponseSchema,
  type ChatServiceSubscribeResponse,
  type SendBatchesRequest,
  SendBatchesRequestSchema,
  type SendBatchesResponse,
  SendBatchesResponseSchema,
  type SendStreamRequest,
  type SendStreamResponse,
} from "../../../gen/parley/v1/chat_pb.js";

/**
 * Hand-written binary decoders for the ChatService messages that carry the
 * traffic: the bridge reads every stored message twice (its SendBatches
 * answer and its room's Subscribe event), core reads every send in a
 * SendBatches request. fromBinary's reflection was a tenth of the bridge's
 * busy time at 2,500 msgs/s.
 *
 * The messages are exactly fromBinary's (the same fields, `$typeName`s and
 * oneof shapes): test/chat-decoding.test.ts compares the two on random and
 * mutated bytes, and fails when a field is added to one of these types.
 * Whatever the fast path does not expect — an unknown field, a field repeated
 * where fromBinary would merge, a string that is not valid UTF-8 or starts
 * with a byte order mark (TextDecoder drops it), an error answer, anything
 * malformed — makes it give up, and fromBinary decodes (or rejects) the whole
 * message instead.
 */

/** Thrown inside the fast path to hand the message to fromBinary. */
const GIVE_UP = new Error("not on the fast path");

class WireCursor {
  pos = 0;
  /** The last varint read, as its low and high 32 bits (unsigned). */
  lo = 0;
  hi = 0;

  constructor(
    private readonly bytes: Buffer,
    public end: number,
  ) {}

  /** A tag of a field numbered 1–15 (one byte). */
  tag(): number {
    if (this.pos >= this.end) throw GIVE_UP;
    const tag = this.bytes[this.pos++] ?? 0;
    if (tag >= 0x80 || tag < 8) throw GIVE_UP;
    return tag;
  }

  /** Reads a varint into `lo` and `hi`. */
  #varint(): void {
    let lo = 0;
    let hi = 0;
    let byte = 0x80;
    for (let shift = 0; shift < 28 && byte >= 0x80; shift += 7) {
      byte = this.#byte();
      lo |= (byte & 0x7f) << shift;
    }
    if (byte >= 0x80) {
      byte = this.#byte();
      lo |= (byte & 0x0f) << 28;
      hi = (byte & 0x7f) >> 4;
      for (let shift = 3; shift <= 31 && byte >= 0x80; shift += 7) {
        byte = this.#byte();
        hi |= (byte & 0x7f) << shift;
      }
      // More than ten bytes.
      if (byte >= 0x80) throw GIVE_UP;
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  #byte(): number {
    if (this.pos >= this.end) throw GIVE_UP;
    return this.bytes[this.pos++] ?? 0;
  }

  /** int64: the two's complement of the 64 bits. */
  int64(): bigint {
    this.#varint();
    if (this.hi === 0) return BigInt(this.lo);
    // Below 2^53 a double holds it exactly.
    if (this.hi < 0x200000) return BigInt(this.hi * 0x1_0000_0000 + this.lo);
    return BigInt.asIntN(64, (BigInt(this.hi) << 32n) | BigInt(this.lo));
  }

  /** int32: the low 32 bits, signed (a negative one is sign-extended to ten bytes). */
  int32(): number {
    this.#varint();
    return this.lo | 0;
  }

  bool(): boolean {
    this.#varint();
    return this.lo !== 0 || this.hi !== 0;
  }

  /** The length of a length-delimited field, checked against the end. */
  length(): number {
    this.#varint();
    if (this.hi !== 0 || this.lo > this.end - this.pos) throw GIVE_UP;
    return this.lo;
  }

  string(): string {
    const length = this.length();
    const start = this.pos;
    this.pos += length;
    // TextDecoder (fromBinary's) drops a leading byte order mark; Buffer keeps it.
    if (length >= 3 && this.bytes[start] === 0xef && this.bytes[start + 1] === 0xbb && this.bytes[start + 2] === 0xbf) throw GIVE_UP;
    if (length === 0) return "";
    const text = this.bytes.toString("utf8", start, this.pos);
    // fromBinary refuses invalid UTF-8 (proto3 strings are verified), which
    // Buffer replaces with U+FFFD: leave any U+FFFD, meant or not, to it.
    if (text.includes("\ufffd")) throw GIVE_UP;
    return text;
  }

  /** Runs `read` over the next length-delimited field's bytes. */
  nested<T>(read: (cursor: WireCursor) => T): T {
    const length = this.length();
    const outerEnd = this.end;
    this.end = this.pos + length;
    const value = read(this);
    if (this.pos !== this.end) throw GIVE_UP;
    this.end = outerEnd;
    return value;
  }
}

// Tags (field number << 3 | wire type) of the fields read here.
const VARINT = 0;
const LENGTH_DELIMITED = 2;
const tagOf = (fieldNo: number, wireType: number) => (fieldNo << 3) | wireType;

/** A field seen twice would be merged (messages) or overwritten by fromBinary: leave both to it. */
function once(seen: number, fieldNo: number): number {
  const bit = 1 << fieldNo;
  if ((seen & bit) !== 0) throw GIVE_UP;
  return seen | bit;
}

/** Timestamp: seconds = 1 (int64), nanos = 2 (int32). */
function readTimestamp(cursor: WireCursor): Timestamp {
  const timestamp: Timestamp = { $typeName: "google.protobuf.Timestamp", seconds: 0n, nanos: 0 };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    seen = once(seen, tag >> 3);
    if (tag === tagOf(1, VARINT)) timestamp.seconds = cursor.int64();
    else if (tag === tagOf(2, VARINT)) timestamp.nanos = cursor.int32();
    else throw GIVE_UP;
  }
  return timestamp;
}

/** ChatMessage: id = 1, room = 2, seq = 3, sender = 4, body = 5, client_msg_id = 6, created_at = 7. */
function readChatMessage(cursor: WireCursor): ChatMessage {
  const message: ChatMessage = { $typeName: "parley.v1.ChatMessage", id: "", room: "", seq: 0n, sender: "", body: "", clientMsgId: "" };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    seen = once(seen, tag >> 3);
    switch (tag) {
      case tagOf(1, LENGTH_DELIMITED):
        message.id = cursor.string();
        break;
      case tagOf(2, LENGTH_DELIMITED):
        message.room = cursor.string();
        break;
      case tagOf(3, VARINT):
        message.seq = cursor.int64();
        break;
      case tagOf(4, LENGTH_DELIMITED):
        message.sender = cursor.string();
        break;
      case tagOf(5, LENGTH_DELIMITED):
        message.body = cursor.string();
        break;
      case tagOf(6, LENGTH_DELIMITED):
        message.clientMsgId = cursor.string();
        break;
      case tagOf(7, LENGTH_DELIMITED):
        message.createdAt = cursor.nested(readTimestamp);
        break;
      default:
        throw GIVE_UP;
    }
  }
  return message;
}

/** SendStreamResponse: stream_seq = 1, oneof result { message = 2, error = 3 }, duplicate = 4. Error answers give up. */
function readSendStreamResponse(cursor: WireCursor): SendStreamResponse {
  const answer: SendStreamResponse = { $typeName: "parley.v1.SendStreamResponse", streamSeq: 0n, result: { case: undefined }, duplicate: false };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    seen = once(seen, tag >> 3);
    if (tag === tagOf(1, VARINT)) answer.streamSeq = cursor.int64();
    else if (tag === tagOf(2, LENGTH_DELIMITED)) answer.result = { case: "message", value: cursor.nested(readChatMessage) };
    else if (tag === tagOf(4, VARINT)) answer.duplicate = cursor.bool();
    else throw GIVE_UP;
  }
  return answer;
}

/** SendBatchesResponse: repeated SendStreamResponse answers = 1. */
function readSendBatchesResponse(cursor: WireCursor): SendBatchesResponse {
  const answers: SendStreamResponse[] = [];
  while (cursor.pos < cursor.end) {
    if (cursor.tag() !== tagOf(1, LENGTH_DELIMITED)) throw GIVE_UP;
    answers.push(cursor.nested(readSendStreamResponse));
  }
  return { $typeName: "parley.v1.SendBatchesResponse", answers };
}

/** ChatServiceSubscribeResponse: oneof event { message = 1, caught_up = 2, messages = 3 (ChatMessageBatch: repeated messages = 1) }; caught_up gives up. */
function readChatSubscribeResponse(cursor: WireCursor): ChatServiceSubscribeResponse {
  const response: ChatServiceSubscribeResponse = { $typeName: "parley.v1.ChatServiceSubscribeResponse", event: { case: undefined } };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    // One event per response: a second would replace or merge into the first.
    seen = once(seen, 1);
    if (tag === tagOf(1, LENGTH_DELIMITED)) response.event = { case: "message", value: cursor.nested(readChatMessage) };
    else if (tag === tagOf(3, LENGTH_DELIMITED)) response.event = { case: "messages", value: { $typeName: "parley.v1.ChatMessageBatch", messages: cursor.nested(readMessageList) } };
    else throw GIVE_UP;
  }
  return response;
}

function readMessageList(cursor: WireCursor): ChatMessage[] {
  const messages: ChatMessage[] = [];
  while (cursor.pos < cursor.end) {
    if (cursor.tag() !== tagOf(1, LENGTH_DELIMITED)) throw GIVE_UP;
    messages.push(cursor.nested(readChatMessage));
  }
  return messages;
}

/** SendStreamRequest: stream_seq = 1, room = 2, body = 3, client_msg_id = 4, acting_token = 5, traceparent = 6. */
function readSendStreamRequest(cursor: WireCursor): SendStreamRequest {
  const item: SendStreamRequest = { $typeName: "parley.v1.SendStreamRequest", streamSeq: 0n, room: "", body: "", clientMsgId: "", actingToken: "", traceparent: "" };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    seen = once(seen, tag >> 3);
    switch (tag) {
      case tagOf(1, VARINT):
        item.streamSeq = cursor.int64();
        break;
      case tagOf(2, LENGTH_DELIMITED):
        item.room = cursor.string();
        break;
      case tagOf(3, LENGTH_DELIMITED):
        item.body = cursor.string();
        break;
      case tagOf(4, LENGTH_DELIMITED):
        item.clientMsgId = cursor.string();
        break;
      case tagOf(5, LENGTH_DELIMITED):
        item.actingToken = cursor.string();
        break;
      case tagOf(6, LENGTH_DELIMITED):
        item.traceparent = cursor.string();
        break;
      default:
        throw GIVE_UP;
    }
  }
  return item;
}

/** SendBatchesRequest: repeated SendStreamRequest items = 1. */
function readSendBatchesRequest(cursor: WireCursor): SendBatchesRequest {
  const items: SendStreamRequest[] = [];
  while (cursor.pos < cursor.end) {
    if (cursor.tag() !== tagOf(1, LENGTH_DELIMITED)) throw GIVE_UP;
    items.push(cursor.nested(readSendStreamRequest));
  }
  return { $typeName: "parley.v1.SendBatchesRequest", items };
}

const FAST_READERS = new Map<string, (cursor: WireCursor) => unknown>([
  [SendBatchesResponseSchema.typeName, readSendBatchesResponse],
  [ChatServiceSubscribeResponseSchema.typeName, readChatSubscribeResponse],
  [SendBatchesRequestSchema.typeName, readSendBatchesRequest],
]);

/** The fast path alone: the message, or undefined where it gives up (for tests, which check that it does not give up on the usual traffic). */
export function decodeFast(typeName: string, bytes: Uint8Array): unknown {
  const read = FAST_READERS.get(typeName);
  if (read === undefined) return undefined;
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    return read(new WireCursor(buffer, buffer.length));
  } catch (error) {
    if (error !== GIVE_UP) throw error;
    return undefined;
  }
}

/**
 * The decoders, by the type they read (the gRPC deserializers look here
 * first): the fast path, or fromBinary when it gives up (fromBinary's errors
 * are the ones thrown).
 */
export const HOT_DECODERS: ReadonlyMap<string, (bytes: Uint8Array) => unknown> = new Map(
  [SendBatchesResponseSchema, ChatServiceSubscribeResponseSchema, SendBatchesRequestSchema].map((schema): [string, (bytes: Uint8Array) => unknown] => [
    schema.typeName,
    (bytes) => decodeFast(schema.typeName, bytes) ?? fromBinary(schema, bytes),
  ]),
);
