/** fast-check arbitraries for the chat types, shared by the hand-written codec tests. */
import { create, type DescMessage } from "@bufbuild/protobuf";
import fc from "fast-check";
import { ChatMessageSchema } from "../../gen/parley/v1/chat_pb.js";

export const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
export const text = fc.string({ unit: "binary", maxLength: 40 });

/** Seconds from 0001-01-01 to 9999-12-31: the range a Timestamp has in JSON. */
export const timestampSeconds = fc.bigInt({ min: -62_135_596_800n, max: 253_402_300_799n });

/** Any nanos an int32 holds, valid or not, and the round ones JSON shortens. */
export const nanos = fc.oneof(
  fc.integer({ min: 0, max: 999_999_999 }),
  fc.integer({ min: 0, max: 999 }).map((n) => n * 1_000_000),
  fc.integer({ min: 0, max: 999_999 }).map((n) => n * 1_000),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
);

/**
 * ChatMessage's fields as the hand-written codecs know them (chat-encoding,
 * chat-decoding, server-frame-json): their tests compare the schema with this,
 * so a new field fails them until every codec writes and reads it.
 */
export const CHAT_MESSAGE_FIELDS: [number, string][] = [
  [1, "id"],
  [2, "room"],
  [3, "seq"],
  [4, "sender"],
  [5, "body"],
  [6, "client_msg_id"],
  [7, "created_at"],
];

/** A SendBatches request item as the bridge builds it (a plain object). */
export const sendStreamRequestItem = fc.record({
  streamSeq: fc.oneof(fc.constant(0n), int64),
  room: text,
  body: fc.string({ unit: "binary", maxLength: 300 }),
  clientMsgId: text,
  actingToken: fc.oneof(fc.constant(""), fc.string({ maxLength: 300 })),
  traceparent: fc.oneof(fc.constant(""), text),
});

export const chatMessage = fc
  .record({
    id: fc.oneof(fc.uuid(), fc.constant("")),
    room: text,
    seq: fc.oneof(fc.constant(0n), int64),
    sender: text,
    body: fc.string({ unit: "binary", maxLength: 300 }),
    clientMsgId: text,
    createdAt: fc.option(fc.record({ seconds: fc.oneof(fc.constant(0n), timestampSeconds, int64), nanos }), { nil: undefined }),
  })
  .map((init) => create(ChatMessageSchema, init));

/** Fields as [number, name] pairs, in number order. */
export function fieldsOf(schema: DescMessage): [number, string][] {
  return schema.fields.map((field): [number, string] => [field.number, field.name]).sort((a, b) => a[0] - b[0]);
}
