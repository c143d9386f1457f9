import { create } from "@bufbuild/protobuf";
import type { ChatMessage, RoomEvent } from "../../gen/parley/v1/chat_pb.js";
import { type ServerFrame, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import type { Notification } from "../../gen/parley/v1/notifications_pb.js";
import { encodeServerFrame, type FrameFormat, serverFrame } from "../wire/index.js";

/** What a pushed event is, as frame metrics name it. */
type EventKind = "message" | "room_event" | "notification";

/**
 * A pushed event (a message, room event or notification frame, no request
 * id), encoded at most once per format however many connections receive it.
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
    readonly kind: EventKind,
    readonly frame: ServerFrame,
    /** The membership or settings change a `room_event` frame carries, for the receivers' access checks. */
    readonly roomEvent?: RoomEvent,
  ) {}

  static message(message: ChatMessage): EncodedEvent {
    return new EncodedEvent(message.seq, "message", create(ServerFrameSchema, { kind: { case: "message", value: message } }));
  }

  /** An entry of a room's log: a message goes out as a `message` frame, any other change as `room_event`. */
  static roomEvent(event: RoomEvent): EncodedEvent {
    if (event.event.case === "message") return EncodedEvent.message(event.event.value);
    return new EncodedEvent(event.seq, "room_event", create(ServerFrameSchema, { kind: { case: "roomEvent", value: event } }), event);
  }

  static notification(notification: Notification): EncodedEvent {
    return new EncodedEvent(notification.seq, "notification", create(ServerFrameSchema, { kind: { case: "notification", value: notification } }));
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
