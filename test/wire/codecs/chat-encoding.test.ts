import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChatMessageSchema, ChatServiceSubscribeResponseSchema, SendBatchesRequestSchema, SendBatchesResponseSchema } from "../../../gen/parley/v1/chat_pb.js";
import { serializer } from "../../../src/runtime/grpc/codec.js";
import { encodeChatSubscribeResponse, encodeSendBatchesRequest, encodeSendBatchesResponse } from "../../../src/wire/codecs/chat-encoding.js";
import { encodedChatMessage } from "../../../src/wire/codecs/chat-message.js";
import { sendStreamRequestItem } from "../../support/chat-arbitraries.js";

// Messages of every hot type are compared with toBinary in
// conformance.test.ts; here, what callers hand over that is not a message.

describe("the hand-written chat encoders", () => {
  it("write SendBatchesRequest byte for byte as toBinary does, from plain objects as the bridge builds them", () => {
    fc.assert(
      fc.property(fc.array(sendStreamRequestItem, { maxLength: 12 }), (items) => {
        const bytes = new Uint8Array(encodeSendBatchesRequest({ items }));
        expect(bytes).toEqual(toBinary(SendBatchesRequestSchema, create(SendBatchesRequestSchema, { items })));
        expect(fromBinary(SendBatchesRequestSchema, bytes)).toEqual(create(SendBatchesRequestSchema, { items }));
      }),
      { numRuns: 500 },
    );
  });

  it("accept init objects as the gRPC serializer is handed them, with the same bytes", () => {
    const message = { id: "m1", room: "lobby", seq: 7n, sender: "ada", body: "hi", clientMsgId: "c1", createdAt: { seconds: 5n, nanos: 6 } };
    const serialize = serializer(ChatServiceSubscribeResponseSchema);
    const init = { event: { case: "message" as const, value: message } };
    expect(new Uint8Array(serialize(init))).toEqual(toBinary(ChatServiceSubscribeResponseSchema, create(ChatServiceSubscribeResponseSchema, init)));
    const caughtUp = { event: { case: "caughtUp" as const, value: { headSeq: 9n } } };
    expect(new Uint8Array(serialize(caughtUp))).toEqual(toBinary(ChatServiceSubscribeResponseSchema, create(ChatServiceSubscribeResponseSchema, caughtUp)));
    const answers = { answers: [{ streamSeq: 1n, result: { case: "message" as const, value: message } }, { streamSeq: 2n, result: { case: "error" as const, value: { message: "no" } } }] };
    expect(encodeSendBatchesResponse(answers)).toEqual(toBinary(SendBatchesResponseSchema, create(SendBatchesResponseSchema, answers)));
  });

  it("encode a stored message once for its answer and its room event", () => {
    const message = create(ChatMessageSchema, { id: "m1", room: "lobby", seq: 1n, sender: "ada", body: "hello" });
    const first = encodedChatMessage(message);
    encodeSendBatchesResponse(create(SendBatchesResponseSchema, { answers: [{ streamSeq: 1n, result: { case: "message", value: message } }] }));
    encodeChatSubscribeResponse(create(ChatServiceSubscribeResponseSchema, { event: { case: "messages", value: { messages: [message] } } }));
    expect(encodedChatMessage(message)).toBe(first);
  });
});
