import { create, isMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  type ChatMessage,
  ChatMessageSchema,
  ChatServiceSubscribeResponseSchema,
  SendBatchesResponseSchema,
  type SendStreamResponseSchema,
} from "../../gen/parley/v1/chat_pb.js";
import { ErrorDetailSchema } from "../../gen/parley/v1/errors_pb.js";

/**
 * Core sends every stored message twice: in its SendBatches answer and in
 * its room's Subscribe event, thousands of times a second. These encoders
 * write those two responses with each ChatMessage's bytes encoded once and
 * reused, the envelope around them written field by field.
 *
 * The bytes are exactly toBinary's (an embedded message is its encoding,
 * length-delimited): test/chat-response-encoding.test.ts compares the two on
 * random responses and fails when a field is added to one of these types.
 * Anything else goes through toBinary.
 */

/** Each ChatMessage's encoding, for as long as the message object lives. */
const encodedMessages = new WeakMap<ChatMessage, Uint8Array>();

/** `message` encoded (once per message object; messages are not changed after they are stored). */
export function encodedChatMessage(message: ChatMessage): Uint8Array {
  let bytes = encodedMessages.get(message);
  if (bytes === undefined) {
    bytes = toBinary(ChatMessageSchema, message);
    encodedMessages.set(message, bytes);
  }
  return bytes;
}

/** A message as the service code hands it over: created, or an init object. */
function asMessage(message: MessageInitShape<typeof ChatMessageSchema>): ChatMessage {
  return isMessage(message, ChatMessageSchema) ? message : create(ChatMessageSchema, message);
}

function writeChatMessage(writer: BinaryWriter, fieldNo: number, message: MessageInitShape<typeof ChatMessageSchema>): void {
  writer.tag(fieldNo, WireType.LengthDelimited).bytes(encodedChatMessage(asMessage(message)));
}

/** SendStreamResponse: stream_seq = 1, oneof result { message = 2, error = 3 }, duplicate = 4. */
function writeSendStreamResponse(writer: BinaryWriter, answer: MessageInitShape<typeof SendStreamResponseSchema>): void {
  const streamSeq = answer.streamSeq ?? 0n;
  if (streamSeq !== 0n) writer.tag(1, WireType.Varint).int64(streamSeq);
  const result = answer.result;
  if (result?.case === "message") writeChatMessage(writer, 2, result.value);
  else if (result?.case === "error") writer.tag(3, WireType.LengthDelimited).bytes(toBinary(ErrorDetailSchema, create(ErrorDetailSchema, result.value)));
  if (answer.duplicate === true) writer.tag(4, WireType.Varint).bool(true);
}

/** SendBatchesResponse: repeated SendStreamResponse answers = 1. */
export function encodeSendBatchesResponse(response: MessageInitShape<typeof SendBatchesResponseSchema>): Uint8Array {
  const writer = new BinaryWriter();
  for (const answer of response.answers ?? []) {
    writer.tag(1, WireType.LengthDelimited).fork();
    writeSendStreamResponse(writer, answer);
    writer.join();
  }
  return writer.finish();
}

/**
 * ChatServiceSubscribeResponse: oneof event { message = 1, caught_up = 2,
 * messages = 3 (ChatMessageBatch: repeated ChatMessage messages = 1) }. The
 * rare caught_up goes through toBinary.
 */
export function encodeChatSubscribeResponse(response: MessageInitShape<typeof ChatServiceSubscribeResponseSchema>): Uint8Array {
  const event = response.event;
  if (event?.case === "message") {
    const writer = new BinaryWriter();
    writeChatMessage(writer, 1, event.value);
    return writer.finish();
  }
  if (event?.case === "messages") {
    const writer = new BinaryWriter();
    writer.tag(3, WireType.LengthDelimited).fork();
    for (const message of event.value.messages ?? []) writeChatMessage(writer, 1, message);
    writer.join();
    return writer.finish();
  }
  return toBinary(ChatServiceSubscribeResponseSchema, create(ChatServiceSubscribeResponseSchema, response));
}

/** The encoders above, by the type they write (the gRPC serializers look here first). */
export const RESPONSE_ENCODERS: ReadonlyMap<string, (message: never) => Uint8Array> = new Map<string, (message: never) => Uint8Array>([
  [SendBatchesResponseSchema.typeName, encodeSendBatchesResponse],
  [ChatServiceSubscribeResponseSchema.typeName, encodeChatSubscribeResponse],
]);
