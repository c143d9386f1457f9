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
import { readChatMessage } from "./chat-message.js";
import { fastDecoder, GIVE_UP, LENGTH_DELIMITED, once, tagOf, VARINT, type WireCursor } from "./wire-cursor.js";

/**
 * Hand-written binary decoders for the ChatService messages that carry the
 * traffic: the bridge reads every stored message twice (its SendBatches
 * answer and its room's Subscribe event), core reads every send in a
 * SendBatches request. fromBinary's reflection was a tenth of the bridge's
 * busy time at 2,500 msgs/s.
 *
 * The messages are exactly fromBinary's (the same fields, `$typeName`s and
 * oneof shapes): test/wire/codecs/conformance.test.ts compares the two on
 * messages generated from the schema (and checks that the fast path decodes
 * them itself, so a field added to one of these types and not here fails
 * it); test/wire/codecs/chat-decoding.test.ts feeds mutated and random bytes.
 * ChatMessage's own reader is in chat-message.ts; registry.ts lists these.
 * Whatever the fast path does not expect — an unknown field, a field repeated
 * where fromBinary would merge, a string that is not valid UTF-8 or starts
 * with a byte order mark (TextDecoder drops it), an error answer, anything
 * malformed — makes it give up, and fromBinary decodes (or rejects) the whole
 * message instead.
 */

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

/** ChatServiceSubscribeResponse: oneof event { message = 1, caught_up = 2, messages = 3 (ChatMessageBatch: repeated messages = 1), room_event = 4 }; the rare caught_up and room_event give up. */
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

/** SendBatchesResponse, as the bridge reads core's answers. */
export const sendBatchesResponseDecoder = fastDecoder(SendBatchesResponseSchema, readSendBatchesResponse);

/** ChatServiceSubscribeResponse, as the bridge reads a room's events. */
export const chatSubscribeResponseDecoder = fastDecoder(ChatServiceSubscribeResponseSchema, readChatSubscribeResponse);

/** SendBatchesRequest, as core reads the bridge's sends. */
export const sendBatchesRequestDecoder = fastDecoder(SendBatchesRequestSchema, readSendBatchesRequest);
