import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ChatMessageBatchSchema,
  ChatMessageSchema,
  ChatServiceSubscribeResponseSchema,
  SendBatchesRequestSchema,
  SendBatchesResponseSchema,
  SendStreamRequestSchema,
  SendStreamResponseSchema,
} from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { encodeChatMessage, encodeChatSubscribeResponse, encodedChatMessage, encodeSendBatchesRequest, encodeSendBatchesResponse } from "../../../src/wire/codecs/chat-encoding.js";
import { serializer } from "../../../src/runtime/grpc/codec.js";
import { CHAT_MESSAGE_FIELDS, chatMessage, fieldsOf, int64, sendStreamRequestItem, text } from "../../support/chat-arbitraries.js";

const answer = fc
  .record({
    streamSeq: fc.oneof(fc.constant(0n), int64),
    result: fc.oneof(
      chatMessage.map((value) => ({ case: "message" as const, value })),
      fc.record({ category: fc.constantFrom(ErrorCategory.VALIDATION, ErrorCategory.UNAVAILABLE), message: text, field: text }).map((value) => ({ case: "error" as const, value })),
      fc.constant({ case: undefined }),
    ),
    duplicate: fc.boolean(),
  })
  .map((init) => create(SendStreamResponseSchema, init as MessageInitShape<typeof SendStreamResponseSchema>));

const subscribeEvent = fc.oneof(
  chatMessage.map((value) => ({ case: "message" as const, value })),
  fc.array(chatMessage, { maxLength: 8 }).map((messages) => ({ case: "messages" as const, value: create(ChatMessageBatchSchema, { messages }) })),
  int64.map((headSeq) => ({ case: "caughtUp" as const, value: { headSeq } })),
  fc.constant({ case: undefined }),
);

describe("the hand-written chat encoders", () => {
  it("cover every field of the types they write (a new field must be added to them)", () => {
    expect(fieldsOf(SendBatchesResponseSchema)).toEqual([[1, "answers"]]);
    expect(fieldsOf(SendStreamResponseSchema)).toEqual([
      [1, "stream_seq"],
      [2, "message"],
      [3, "error"],
      [4, "duplicate"],
    ]);
    expect(fieldsOf(ChatServiceSubscribeResponseSchema)).toEqual([
      [1, "message"],
      [2, "caught_up"],
      [3, "messages"],
    ]);
    expect(fieldsOf(ChatMessageBatchSchema)).toEqual([[1, "messages"]]);
    expect(fieldsOf(ChatMessageSchema)).toEqual(CHAT_MESSAGE_FIELDS);
    expect(fieldsOf(SendBatchesRequestSchema)).toEqual([[1, "items"]]);
    expect(fieldsOf(SendStreamRequestSchema)).toEqual([
      [1, "stream_seq"],
      [2, "room"],
      [3, "body"],
      [4, "client_msg_id"],
      [5, "acting_token"],
      [6, "traceparent"],
    ]);
  });

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

  it("write ChatMessage byte for byte as toBinary does", () => {
    fc.assert(
      fc.property(chatMessage, (message) => {
        expect(new Uint8Array(encodeChatMessage(message))).toEqual(toBinary(ChatMessageSchema, message));
      }),
      { numRuns: 1000 },
    );
  });

  it("write SendBatchesResponse byte for byte as toBinary does", () => {
    fc.assert(
      fc.property(fc.array(answer, { maxLength: 12 }), (answers) => {
        const response = create(SendBatchesResponseSchema, { answers });
        const bytes = encodeSendBatchesResponse(response);
        expect(bytes).toEqual(toBinary(SendBatchesResponseSchema, response));
        expect(fromBinary(SendBatchesResponseSchema, bytes)).toEqual(response);
      }),
      { numRuns: 500 },
    );
  });

  it("write ChatServiceSubscribeResponse byte for byte as toBinary does", () => {
    fc.assert(
      fc.property(subscribeEvent, (event) => {
        const response = create(ChatServiceSubscribeResponseSchema, { event });
        expect(encodeChatSubscribeResponse(response)).toEqual(toBinary(ChatServiceSubscribeResponseSchema, response));
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
  });

  it("encode a stored message once for its answer and its room event", () => {
    const message = create(ChatMessageSchema, { id: "m1", room: "lobby", seq: 1n, sender: "ada", body: "hello" });
    const first = encodedChatMessage(message);
    encodeSendBatchesResponse(create(SendBatchesResponseSchema, { answers: [{ streamSeq: 1n, result: { case: "message", value: message } }] }));
    encodeChatSubscribeResponse(create(ChatServiceSubscribeResponseSchema, { event: { case: "messages", value: { messages: [message] } } }));
    expect(encodedChatMessage(message)).toBe(first);
  });
});
