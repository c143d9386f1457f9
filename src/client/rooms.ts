import type { ChatMessage, ListMessagesResponse, MarkReadResponse, MembershipChange, RoomEvent, RoomSettingsChange } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import type { ParleyClientError } from "./client-error.js";
import type { FrameChannel } from "./frame-channel.js";

export interface JoinOptions {
  /** Called when the server refuses to follow the room (bad room id, permission, limit). */
  readonly onError?: (error: ParleyClientError) => void;
  /** Replay every event after this seq first; unset means live only. */
  readonly afterSeq?: bigint;
  readonly onMessage?: (message: ChatMessage) => void;
  /** A user's membership changed (an invite, join, leave, kick, ban, unban or role change), in its place among the messages. */
  readonly onMembership?: (change: MembershipChange, event: RoomEvent) => void;
  /** The room was created, or its kind, name or topic changed, in its place among the messages. */
  readonly onSettings?: (change: RoomSettingsChange, event: RoomEvent) => void;
  /**
   * The server ended the follow: the user may no longer read the room
   * (kicked, banned, left a room that is not public, the room became
   * private). PERMISSION_DENIED with the reason; the event that caused it
   * was delivered just before. The handle is then `left`.
   */
  readonly onRevoked?: (error: ParleyClientError) => void;
  /** Called when the replay is done (and again after every resume). */
  readonly onCaughtUp?: (headSeq: bigint) => void;
}

/**
 * A followed room. Its log — messages, membership and settings changes —
 * arrives in seq order, each event once, across reconnects.
 */
export class RoomHandle {
  readonly #listeners = new Set<(message: ChatMessage) => void>();
  readonly #onCaughtUp: ((headSeq: bigint) => void) | undefined;
  readonly #onError: ((error: ParleyClientError) => void) | undefined;
  readonly #onMembership: JoinOptions["onMembership"];
  readonly #onSettings: JoinOptions["onSettings"];
  readonly #onRevoked: JoinOptions["onRevoked"];
  #lastSeq: bigint | undefined;
  #left = false;
  #revoked: ParleyClientError | undefined;
  /** The request id of the subscribe frame now following the room. */
  #subscription: string | undefined;

  constructor(
    private readonly client: FrameChannel,
    readonly room: string,
    options: JoinOptions,
  ) {
    this.#lastSeq = options.afterSeq;
    this.#onCaughtUp = options.onCaughtUp;
    this.#onError = options.onError;
    this.#onMembership = options.onMembership;
    this.#onSettings = options.onSettings;
    this.#onRevoked = options.onRevoked;
    if (options.onMessage) this.#listeners.add(options.onMessage);
  }

  /** True once `leave()` was called or the server ended the follow; joining the room again makes a new handle. */
  get left(): boolean {
    return this.#left;
  }

  /** Why the server ended the follow, once it has (see JoinOptions.onRevoked). */
  get revoked(): ParleyClientError | undefined {
    return this.#revoked;
  }

  /** The highest seq delivered so far, messages and other events alike (the resume point). */
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
    this.#subscription = this.client.fire({ case: "subscribe", value: { room: this.room, afterSeq: this.#lastSeq } }, this.#onError);
  }

  /** @internal Delivers a message unless it was delivered before (resume overlap, own ack). */
  deliver(message: ChatMessage): void {
    if (!this.#takes(message.seq)) return;
    for (const listener of this.#listeners) listener(message);
  }

  /** @internal Delivers a membership or settings change, in the same seq as the messages. */
  deliverEvent(event: RoomEvent): void {
    if (!this.#takes(event.seq)) return;
    const change = event.event;
    if (change.case === "membership") this.#onMembership?.(change.value, event);
    else if (change.case === "settings") this.#onSettings?.(change.value, event);
    else if (change.case === "message") for (const listener of this.#listeners) listener(change.value);
  }

  /** @internal The server ended the follow of `requestId`: if that is this handle's, nothing more comes, and it is not resumed. */
  revoke(requestId: string, error: ParleyClientError): void {
    // An earlier subscription's end (one this handle replaced) ends nothing.
    if (this.#left || requestId !== this.#subscription) return;
    this.#left = true;
    this.#revoked = error;
    this.#listeners.clear();
    this.#onRevoked?.(error);
  }

  /**
   * Whether the event at `seq` is the next one: earlier ones were delivered
   * already. The server delivers in order, so a gap means something went
   * wrong on the way: ask again from the last seq seen rather than skip.
   */
  #takes(seq: bigint): boolean {
    if (this.#left) return false;
    if (this.#lastSeq !== undefined && seq <= this.#lastSeq) return false;
    if (this.#lastSeq !== undefined && seq !== this.#lastSeq + 1n) {
      this.resubscribe();
      return false;
    }
    this.#lastSeq = seq;
    return true;
  }

  /** @internal */
  caughtUp(headSeq: bigint): void {
    this.#lastSeq ??= headSeq;
    this.#onCaughtUp?.(headSeq);
  }
}
