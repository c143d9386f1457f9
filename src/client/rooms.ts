import type { ChatMessage, ListMessagesResponse, MarkReadResponse } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import type { ParleyClientError } from "./client-error.js";
import type { FrameChannel } from "./frame-channel.js";

export interface JoinOptions {
  /** Called when the server refuses to follow the room (bad room id, permission, limit). */
  readonly onError?: (error: ParleyClientError) => void;
  /** Replay every message after this seq first; unset means live only. */
  readonly afterSeq?: bigint;
  readonly onMessage?: (message: ChatMessage) => void;
  /** Called when the replay is done (and again after every resume). */
  readonly onCaughtUp?: (headSeq: bigint) => void;
}

/** A followed room. Messages arrive in seq order, each once, across reconnects. */
export class RoomHandle {
  readonly #listeners = new Set<(message: ChatMessage) => void>();
  readonly #onCaughtUp: ((headSeq: bigint) => void) | undefined;
  readonly #onError: ((error: ParleyClientError) => void) | undefined;
  #lastSeq: bigint | undefined;
  #left = false;

  constructor(
    private readonly client: FrameChannel,
    readonly room: string,
    options: JoinOptions,
  ) {
    this.#lastSeq = options.afterSeq;
    this.#onCaughtUp = options.onCaughtUp;
    this.#onError = options.onError;
    if (options.onMessage) this.#listeners.add(options.onMessage);
  }

  /** True once `leave()` was called; joining the room again makes a new handle. */
  get left(): boolean {
    return this.#left;
  }

  /** The highest seq delivered so far (the resume point). */
  get lastSeq(): bigint | undefined {
    return this.#lastSeq;
  }

  addListener(listener: (message: ChatMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sends a message to this room; see ParleyClient.send. */
  send(body: string, clientMsgId?: string): Promise<ChatMessage> {
    return this.client.send(this.room, body, clientMsgId);
  }

  /** A page of history: the newest first by default (BACKWARD from `beforeSeq`, 0 = newest). */
  async history(options: { beforeSeq?: bigint; afterSeq?: bigint; pageSize?: number } = {}): Promise<ListMessagesResponse> {
    const forward = options.afterSeq !== undefined;
    const frame = await this.client.request({
      case: "history",
      value: {
        room: this.room,
        direction: forward ? ListDirection.FORWARD : ListDirection.BACKWARD,
        cursorSeq: forward ? options.afterSeq : (options.beforeSeq ?? 0n),
        pageSize: options.pageSize ?? 50,
      },
    });
    if (frame.kind.case !== "history") throw new Error("unexpected answer to history");
    return frame.kind.value;
  }

  /** Stores the read position; resolves with the unread count. */
  async markRead(seq: bigint): Promise<MarkReadResponse> {
    const frame = await this.client.request({ case: "markRead", value: { room: this.room, seq } });
    if (frame.kind.case !== "markRead") throw new Error("unexpected answer to mark_read");
    return frame.kind.value;
  }

  /** Stops following the room. */
  leave(): void {
    this.#left = true;
    this.#listeners.clear();
    this.client.fire({ case: "unsubscribe", value: { room: this.room } });
  }

  /** @internal (Re)subscribes from the last seq seen. */
  resubscribe(): void {
    if (this.#left) return;
    this.client.fire({ case: "subscribe", value: { room: this.room, afterSeq: this.#lastSeq } }, this.#onError);
  }

  /** @internal Delivers a message unless it was delivered before (resume overlap, own ack). */
  deliver(message: ChatMessage): void {
    if (this.#left) return;
    if (this.#lastSeq !== undefined && message.seq <= this.#lastSeq) return;
    if (this.#lastSeq !== undefined && message.seq !== this.#lastSeq + 1n) {
      // The server delivers in order, so a gap means something went wrong
      // on the way: ask again from the last seq seen rather than skip.
      this.resubscribe();
      return;
    }
    this.#lastSeq = message.seq;
    for (const listener of this.#listeners) listener(message);
  }

  /** @internal */
  caughtUp(headSeq: bigint): void {
    this.#lastSeq ??= headSeq;
    this.#onCaughtUp?.(headSeq);
  }
}
