import { create } from "@bufbuild/protobuf";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import { type ServerFrame, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import type { Notification } from "../../gen/parley/v1/notifications_pb.js";
import { encodeServerFrame, type FrameFormat, serverFrame } from "../wire/index.js";

/**
 * A pushed event (a message or notification frame, no request id), encoded
 * at most once per format however many connections receive it.
 */
export class EncodedEvent {
  /** The JSON text as UTF-8 bytes: ws would otherwise convert the string again for every receiver. */
  #json: Buffer | undefined;
  #binary: Uint8Array | undefined;
  /** Whole WebSocket frames (header and payload), by format. */
  #framedJson: Buffer | undefined;
  #framedBinary: Buffer | undefined;

  private constructor(
    readonly seq: bigint,
    readonly frame: ServerFrame,
  ) {}

  static message(message: ChatMessage): EncodedEvent {
    return new EncodedEvent(message.seq, create(ServerFrameSchema, { kind: { case: "message", value: message } }));
  }

  static notification(notification: Notification): EncodedEvent {
    return new EncodedEvent(notification.seq, create(ServerFrameSchema, { kind: { case: "notification", value: notification } }));
  }

  /**
   * The frame's bytes in `format` (UTF-8 JSON text for "json"); throws a
   * SERIALIZATION ParleyError if it cannot be encoded.
   */
  encoded(format: FrameFormat): Uint8Array {
    if (format === "json") return (this.#json ??= Buffer.from(encodeServerFrame(this.frame, "json") as string, "utf8"));
    return (this.#binary ??= encodeServerFrame(this.frame, "binary") as Uint8Array);
  }

  /** The whole WebSocket frame carrying `encoded(format)`; throws as `encoded` does. */
  framed(format: FrameFormat): Buffer {
    if (format === "json") return (this.#framedJson ??= serverFrame(this.encoded("json"), false));
    return (this.#framedBinary ??= serverFrame(this.encoded("binary"), true));
  }
}
