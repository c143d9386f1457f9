import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import type { ClientFrameSchema, ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import type { ParleyClientError } from "./client-error.js";

/** The request part of a client frame (`send`, `subscribe`, `history`, ...). */
export type FrameRequest = NonNullable<MessageInitShape<typeof ClientFrameSchema>["request"]>;

/**
 * What a room or inbox handle needs of the client's connection. ParleyClient
 * implements it; the handles depend on this interface rather than on the
 * client itself, so the client and its handles do not import each other.
 */
export interface FrameChannel {
  /** Sends a message; resolves with the stored message on the server's ack. */
  send(room: string, body: string, clientMsgId?: string): Promise<ChatMessage>;
  /** Sends a request frame; resolves with the answering frame (re-sent after reconnects). */
  request(request: FrameRequest): Promise<ServerFrame>;
  /**
   * Sends a frame whose answers are events (subscriptions), if connected; an
   * error frame answering it goes to `onError`. Returns the frame's request
   * id (undefined when not connected: the frame was not sent).
   */
  fire(request: FrameRequest, onError?: (error: ParleyClientError) => void): string | undefined;
  isOpen(): boolean;
}
