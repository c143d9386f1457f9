import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  ChatMessageSchema,
  ChatServiceSubscribeResponseSchema,
  SendBatchesRequestSchema,
  SendBatchesResponseSchema,
} from "../../../gen/parley/v1/chat_pb.js";
import { ClientFrameSchema, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { plainSendFrame } from "../frames/client-frame-json.js";
import { hotServerFrameJson } from "../frames/server-frame-json.js";
import { chatSubscribeResponseDecoder, sendBatchesRequestDecoder, sendBatchesResponseDecoder } from "./chat-decoding.js";
import { encodeChatSubscribeResponse, encodeSendBatchesRequest, encodeSendBatchesResponse } from "./chat-encoding.js";
import { asChatMessage, chatMessageJson, encodeChatMessage, readChatMessage } from "./chat-message.js";
import { fastDecoder } from "./wire-cursor.js";

/**
 * Every hand-written codec, by the type it reads or writes. Each one stands
 * in for protobuf-es on the hot path and must give exactly its answer;
 * test/wire/codecs/conformance.test.ts checks every entry here against
 * toBinary / fromBinary / toJsonString / fromJsonString on messages
 * generated from the schema, so a codec listed here is a codec tested.
 *
 * Users look a codec up once, when they build their serializer (see
 * runtime/grpc/codec.ts): nothing here is consulted per message.
 */
export interface HotCodec<D extends DescMessage = DescMessage> {
  readonly schema: D;
  /** Binary, exactly toBinary's bytes; takes init objects as well as messages. */
  readonly encode?: (message: MessageInitShape<D>) => Uint8Array;
  /** Binary, exactly fromBinary's message (or error). */
  readonly decode?: (bytes: Uint8Array) => MessageShape<D>;
  /** The decoder's fast path alone: undefined where it leaves the message to fromBinary. */
  readonly decodeFast?: (bytes: Uint8Array) => MessageShape<D> | undefined;
  /** proto3 JSON, exactly toJsonString's text; undefined where it leaves the message to toJsonString. */
  readonly toJson?: (message: MessageShape<D>) => string | undefined;
  /** proto3 JSON read, exactly fromJsonString's message; undefined where it leaves the text to fromJsonString. */
  readonly fromJson?: (text: string) => MessageShape<D> | undefined;
}

/** Erases an entry's message type for the map; `hotCodec` restores it by the schema. */
function entry<D extends DescMessage>(codec: HotCodec<D>): [string, HotCodec] {
  return [codec.schema.typeName, codec];
}

/** The hand-written codecs, by type name. */
export const HOT_CODECS: ReadonlyMap<string, HotCodec> = new Map([
  // Not a message of its own on any wire, but the one every hot envelope carries.
  entry({ schema: ChatMessageSchema, encode: (message) => encodeChatMessage(asChatMessage(message)), ...fastDecoder(ChatMessageSchema, readChatMessage), toJson: chatMessageJson }),
  entry({ schema: SendBatchesRequestSchema, encode: encodeSendBatchesRequest, ...sendBatchesRequestDecoder }),
  entry({ schema: SendBatchesResponseSchema, encode: encodeSendBatchesResponse, ...sendBatchesResponseDecoder }),
  entry({ schema: ChatServiceSubscribeResponseSchema, encode: encodeChatSubscribeResponse, ...chatSubscribeResponseDecoder }),
  entry({ schema: ServerFrameSchema, toJson: hotServerFrameJson }),
  entry({ schema: ClientFrameSchema, fromJson: plainSendFrame }),
]);

/** The hand-written codecs of `schema`'s type, if it has any. */
export function hotCodec<D extends DescMessage>(schema: D): HotCodec<D> | undefined {
  return HOT_CODECS.get(schema.typeName) as HotCodec<D> | undefined;
}
