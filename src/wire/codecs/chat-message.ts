import { create, isMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type ChatMessage, ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import { timestampJson } from "./timestamp-json.js";
import { GIVE_UP, LENGTH_DELIMITED, once, readTimestamp, tagOf, VARINT, type WireCursor } from "./wire-cursor.js";
import { int64FieldSize, stringFieldSize, varint32Size, writeInt64Field, writeStringField, writeTag, writeVarint32 } from "./wire-writer.js";

/**
 * ChatMessage's three hand-written codecs — binary encode, binary decode,
 * proto3 JSON encode — in one place: a field added to ChatMessage in the
 * proto is added here three times (see docs/adding-a-field.md), and
 * test/wire/codecs/conformance.test.ts fails until it is, comparing each with
 * protobuf-es on messages generated from the schema.
 *
 * ChatMessage: id = 1, room = 2, seq = 3 (int64), sender = 4, body = 5,
 * client_msg_id = 6, created_at = 7 (Timestamp: seconds = 1 (int64), nanos =
 * 2 (int32)).
 */

/** Each ChatMessage's encoding, for as long as the message object lives. */
const encodedMessages = new WeakMap<ChatMessage, Uint8Array>();

/**
 * `message` encoded, once per message object (messages are not changed after
 * they are stored): core sends every stored message in its SendBatches answer
 * and in its room's Subscribe event, the same bytes in both envelopes.
 */
export function encodedChatMessage(message: ChatMessage): Uint8Array {
  let bytes = encodedMessages.get(message);
  if (bytes === undefined) {
    bytes = encodeChatMessage(message);
    encodedMessages.set(message, bytes);
  }
  return bytes;
}

/** A message as the service code hands it over: created, or an init object. */
export function asChatMessage(message: MessageInitShape<typeof ChatMessageSchema>): ChatMessage {
  return isMessage(message, ChatMessageSchema) ? message : create(ChatMessageSchema, message);
}

/** ChatMessage's bytes, exactly toBinary's: sized first, then written into one buffer. */
export function encodeChatMessage(message: ChatMessage): Uint8Array {
  const createdAt = message.createdAt;
  const timestampSize = createdAt === undefined ? 0 : int64FieldSize(createdAt.seconds) + int64FieldSize(BigInt(createdAt.nanos));
  const size =
    stringFieldSize(message.id) +
    stringFieldSize(message.room) +
    int64FieldSize(message.seq) +
    stringFieldSize(message.sender) +
    stringFieldSize(message.body) +
    stringFieldSize(message.clientMsgId) +
    (createdAt === undefined ? 0 : 1 + varint32Size(timestampSize) + timestampSize);
  const out = Buffer.allocUnsafe(size);
  let at = writeStringField(out, 0, 1, message.id);
  at = writeStringField(out, at, 2, message.room);
  at = writeInt64Field(out, at, 3, message.seq);
  at = writeStringField(out, at, 4, message.sender);
  at = writeStringField(out, at, 5, message.body);
  at = writeStringField(out, at, 6, message.clientMsgId);
  if (createdAt !== undefined) {
    at = writeVarint32(out, writeTag(out, at, 7, WireType.LengthDelimited), timestampSize);
    at = writeInt64Field(out, at, 1, createdAt.seconds);
    writeInt64Field(out, at, 2, BigInt(createdAt.nanos));
  }
  return out;
}

/** Reads a ChatMessage's fields, exactly as fromBinary does (or gives up, see wire-cursor.ts). */
export function readChatMessage(cursor: WireCursor): ChatMessage {
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

/**
 * ChatMessage in proto3 JSON, exactly toJsonString's text: fields in
 * field-number order, zero values left out, int64 as decimal strings,
 * strings through JSON.stringify. Undefined where toJsonString throws (a
 * timestamp out of range).
 */
export function chatMessageJson(message: ChatMessage): string | undefined {
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
