import { type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChatServiceSubscribeResponseSchema, SendBatchesRequestSchema, SendBatchesResponseSchema } from "../../../gen/parley/v1/chat_pb.js";
import { lenientDeserializer, UndecodableMessage } from "../../../src/runtime/grpc/codec.js";
import { hotCodec } from "../../../src/wire/codecs/registry.js";
import { arbitraryMessage } from "../../support/arbitrary-message.js";

// Valid messages of every hot type are compared with fromBinary in
// conformance.test.ts; here, the bytes the schema cannot generate.

/** fromBinary's answer: the message, or that it throws. */
function reference(schema: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return "throws";
  }
}

function hotDecode(schema: DescMessage, bytes: Uint8Array): unknown {
  const decode = hotCodec(schema)?.decode;
  if (decode === undefined) throw new Error(`no hot decoder for ${schema.typeName}`);
  try {
    return decode(bytes);
  } catch {
    return "throws";
  }
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
  for (const schema of [SendBatchesResponseSchema, ChatServiceSubscribeResponseSchema, SendBatchesRequestSchema] as DescMessage[]) {
    it(`decode mutated or random ${schema.name} bytes as fromBinary does, or throw where it throws`, () => {
      const valid = arbitraryMessage(schema).map((message) => toBinary(schema, message));
      fc.assert(
        fc.property(fc.oneof(mutated(valid), fc.uint8Array({ maxLength: 200 })), (bytes) => {
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
