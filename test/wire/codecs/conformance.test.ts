import { type DescMessage, fromBinary, fromJsonString, type Message, toBinary, toJsonString } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ChatServiceSubscribeResponse, SendBatchesResponse } from "../../../gen/parley/v1/chat_pb.js";
import type { ClientFrame, ServerFrame } from "../../../gen/parley/v1/frames_pb.js";
import { HOT_CODECS } from "../../../src/wire/codecs/registry.js";
import { arbitraryMessage } from "../../support/arbitrary-message.js";

/**
 * Every hand-written codec in the registry against protobuf-es, on messages
 * generated from the schema: a field added to one of these types in the
 * proto is generated here from the next `npm run generate`, and fails this
 * test until each hand-written codec of the type writes or reads it.
 *
 * Each codec may leave some messages to protobuf-es by design (an error
 * answer, a rare frame); what it leaves is said here, per type, and every
 * other message must go the fast way with the same answer.
 */
const LEFT_TO_PROTOBUF_ES: Record<string, (message: Message) => boolean> = {
  "parley.v1.ChatMessage": () => false,
  "parley.v1.SendBatchesRequest": () => false,
  "parley.v1.SendBatchesResponse": (message) => (message as SendBatchesResponse).answers.some((answer) => answer.result.case === "error"),
  "parley.v1.ChatServiceSubscribeResponse": (message) => {
    const event = (message as ChatServiceSubscribeResponse).event.case;
    return event === "caughtUp" || event === "roomEvent";
  },
  "parley.v1.ServerFrame": (message) => {
    const kind = (message as ServerFrame).kind.case;
    return kind !== "message" && kind !== "sendAck";
  },
  // The plain send frame only; a seq of more than 18 digits is left to fromJsonString.
  "parley.v1.ClientFrame": (message) => {
    const request = (message as ClientFrame).request;
    return request.case !== "send" || request.value.seq < 0n || request.value.seq >= 10n ** 18n;
  },
};

/** U+FFFD (maybe invalid UTF-8) and a byte order mark are left to fromBinary (see wire-cursor.ts). */
function hasUnsureText(bytes: Uint8Array): boolean {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return buffer.includes(Buffer.from([0xef, 0xbf, 0xbd])) || buffer.includes(Buffer.from([0xef, 0xbb, 0xbf]));
}

/** What protobuf-es answers: the value, or undefined where it throws. */
function orUndefined<T>(run: () => T): T | undefined {
  try {
    return run();
  } catch {
    return undefined;
  }
}

const RUNS = 400;

describe("the registry of hand-written codecs", () => {
  it("says, for every type it holds, what the codecs leave to protobuf-es", () => {
    expect(Object.keys(LEFT_TO_PROTOBUF_ES).sort()).toEqual([...HOT_CODECS.keys()].sort());
  });
});

for (const [typeName, codec] of HOT_CODECS) {
  const schema: DescMessage = codec.schema;
  const messages = arbitraryMessage(schema);
  const leftToProtobufEs = LEFT_TO_PROTOBUF_ES[typeName] ?? (() => true);
  const { encode, decode, decodeFast, toJson, fromJson } = codec;

  describe(`${typeName}'s hand-written codecs`, () => {
    if (encode !== undefined) {
      it("encode byte for byte as toBinary does", () => {
        fc.assert(
          fc.property(messages, (message) => {
            expect(new Uint8Array(encode(message))).toEqual(toBinary(schema, message));
          }),
          { numRuns: RUNS },
        );
      });
    }

    if (decode !== undefined && decodeFast !== undefined) {
      it("decode as fromBinary does, on the fast path for all but what they leave to it", () => {
        fc.assert(
          fc.property(messages, (message) => {
            const bytes = toBinary(schema, message);
            const expected = fromBinary(schema, bytes);
            expect(decode(bytes)).toEqual(expected);
            const fast = decodeFast(bytes);
            if (fast !== undefined) expect(fast).toEqual(expected);
            else expect(leftToProtobufEs(message) || hasUnsureText(bytes), "the fast path gave up").toBe(true);
          }),
          { numRuns: RUNS },
        );
      });
    }

    if (toJson !== undefined) {
      it("write JSON exactly as toJsonString does, or leave to it what it refuses", () => {
        fc.assert(
          fc.property(messages, (message) => {
            const hot = toJson(message);
            const expected = orUndefined(() => toJsonString(schema, message));
            if (hot !== undefined || !leftToProtobufEs(message)) expect(hot).toBe(expected);
          }),
          { numRuns: RUNS },
        );
      });
    }

    if (fromJson !== undefined) {
      it("read toJsonString's JSON as fromJsonString does", () => {
        fc.assert(
          fc.property(messages, (message) => {
            const text = orUndefined(() => toJsonString(schema, message));
            fc.pre(text !== undefined);
            const hot = fromJson(text);
            if (hot !== undefined || !leftToProtobufEs(message)) expect(hot).toEqual(fromJsonString(schema, text));
          }),
          { numRuns: RUNS },
        );
      });
    }
  });
}
