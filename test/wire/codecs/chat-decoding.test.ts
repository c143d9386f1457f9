import { create, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ChatMessageBatchSchema,
  ChatServiceSubscribeResponseSchema,
  SendBatchesRequestSchema,
  SendBatchesResponseSchema,
  SendStreamResponseSchema,
} from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { decodeFast, HOT_DECODERS } from "../../../src/wire/codecs/chat-decoding.js";
import { lenientDeserializer, UndecodableMessage } from "../../../src/runtime/grpc/codec.js";
import { chatMessage, fieldsOf, int64, sendStreamRequestItem, text } from "../../support/chat-arbitraries.js";

const storedAnswer = fc
  .record({ streamSeq: fc.oneof(fc.constant(0n), int64), message: chatMessage, duplicate: fc.boolean() })
  .map(({ message, ...rest }) => create(SendStreamResponseSchema, { ...rest, result: { case: "message", value: message } }));

const anyAnswer = fc.oneof(
  storedAnswer,
  fc
    .record({ streamSeq: int64, category: fc.constantFrom(ErrorCategory.VALIDATION, ErrorCategory.UNAVAILABLE), message: text })
    .map(({ streamSeq, ...error }) => create(SendStreamResponseSchema, { streamSeq, result: { case: "error", value: error } })),
  fc.constant(create(SendStreamResponseSchema, {})),
);

/** Valid encodings of each hot type: the traffic the fast path must decode itself, and others it may leave to fromBinary. */
const encodings: { schema: DescMessage; usual: fc.Arbitrary<Uint8Array>; any: fc.Arbitrary<Uint8Array> }[] = [
  {
    schema: SendBatchesResponseSchema,
    usual: fc.array(storedAnswer, { maxLength: 10 }).map((answers) => toBinary(SendBatchesResponseSchema, create(SendBatchesResponseSchema, { answers }))),
    any: fc.array(anyAnswer, { maxLength: 10 }).map((answers) => toBinary(SendBatchesResponseSchema, create(SendBatchesResponseSchema, { answers }))),
  },
  {
    schema: ChatServiceSubscribeResponseSchema,
    usual: fc
      .oneof(
        chatMessage.map((value) => ({ case: "message" as const, value })),
        fc.array(chatMessage, { maxLength: 8 }).map((messages) => ({ case: "messages" as const, value: create(ChatMessageBatchSchema, { messages }) })),
      )
      .map((event) => toBinary(ChatServiceSubscribeResponseSchema, create(ChatServiceSubscribeResponseSchema, { event }))),
    any: fc
      .oneof(
        chatMessage.map((value) => ({ case: "message" as const, value })),
        int64.map((headSeq) => ({ case: "caughtUp" as const, value: { headSeq } })),
        fc.constant({ case: undefined }),
      )
      .map((event) => toBinary(ChatServiceSubscribeResponseSchema, create(ChatServiceSubscribeResponseSchema, { event }))),
  },
  {
    schema: SendBatchesRequestSchema,
    usual: fc.array(sendStreamRequestItem, { maxLength: 10 }).map((items) => toBinary(SendBatchesRequestSchema, create(SendBatchesRequestSchema, { items }))),
    any: fc.array(sendStreamRequestItem, { maxLength: 10 }).map((items) => toBinary(SendBatchesRequestSchema, create(SendBatchesRequestSchema, { items }))),
  },
];

/** fromBinary's answer: the message, or that it throws. */
function reference(schema: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return "throws";
  }
}

function hotDecode(schema: DescMessage, bytes: Uint8Array): unknown {
  const decode = HOT_DECODERS.get(schema.typeName);
  if (decode === undefined) throw new Error(`no hot decoder for ${schema.typeName}`);
  try {
    return decode(bytes);
  } catch {
    return "throws";
  }
}

function hasSequence(bytes: Uint8Array, sequence: readonly number[]): boolean {
  return Buffer.from(bytes).includes(Buffer.from(sequence));
}

/** A valid encoding changed a little: bytes flipped, cut short, or added. */
function mutated(bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(bytes, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.constantFrom("flip", "cut", "append"))
    .map(([original, changes, how]) => {
      const copy = new Uint8Array(original);
      if (how === "cut") return copy.subarray(0, original.length === 0 ? 0 : (changes[0]?.[0] ?? 0) % original.length);
      if (how === "append") return new Uint8Array([...copy, ...changes.map(([, value]) => value)]);
      for (const [at, value] of changes) if (copy.length > 0) copy[at % copy.length] = value;
      return copy;
    });
}

describe("the hand-written chat decoders", () => {
  it("cover every field of the types they read (a new field must be added to them)", () => {
    expect(fieldsOf(TimestampSchema)).toEqual([
      [1, "seconds"],
      [2, "nanos"],
    ]);
    // The chat types' own field lists are checked in chat-encoding.test.ts.
    expect(fieldsOf(SendStreamResponseSchema).map(([no]) => no)).toEqual([1, 2, 3, 4]);
  });

  for (const { schema, usual, any } of encodings) {
    it(`decode the usual ${schema.name} traffic themselves, as fromBinary does`, () => {
      fc.assert(
        fc.property(usual, (bytes) => {
          // U+FFFD and a leading byte order mark are left to fromBinary (see chat-decoding.ts).
          fc.pre(!hasSequence(bytes, [0xef, 0xbf, 0xbd]) && !hasSequence(bytes, [0xef, 0xbb, 0xbf]));
          const fast = decodeFast(schema.typeName, bytes);
          expect(fast).not.toBeUndefined();
          expect(fast).toEqual(fromBinary(schema, bytes));
        }),
        { numRuns: 500 },
      );
    });

    it(`decode any valid, mutated or random ${schema.name} as fromBinary does, or throw where it throws`, () => {
      fc.assert(
        fc.property(fc.oneof(any, mutated(any), fc.uint8Array({ maxLength: 200 })), (bytes) => {
          expect(hotDecode(schema, bytes)).toEqual(reference(schema, bytes));
        }),
        { numRuns: 3000 },
      );
    });
  }

  it("decode strings of any bytes as fromBinary does, replacing invalid UTF-8 the same way", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (raw) => {
        // ChatServiceSubscribeResponse { message { body = raw } }
        const message = new Uint8Array([0x2a, raw.length, ...raw]);
        const bytes = new Uint8Array([0x0a, message.length, ...message]);
        expect(hotDecode(ChatServiceSubscribeResponseSchema, bytes)).toEqual(reference(ChatServiceSubscribeResponseSchema, bytes));
      }),
      { numRuns: 3000 },
    );
    const withMark = new Uint8Array([0x0a, 7, 0x2a, 5, 0xef, 0xbb, 0xbf, 0x68, 0x69]);
    expect(hotDecode(ChatServiceSubscribeResponseSchema, withMark)).toEqual(fromBinary(ChatServiceSubscribeResponseSchema, withMark));
  });

  it("still turn an undecodable request into a VALIDATION marker on the server side", () => {
    const decoded = lenientDeserializer(SendBatchesRequestSchema)(Buffer.from([0x0a, 0x05, 0x12]));
    expect(decoded).toBeInstanceOf(UndecodableMessage);
  });
});
