import type { AckNotificationsResponse, ListNotificationsResponse, Notification } from "../../gen/parley/v1/notifications_pb.js";
import type { FrameChannel } from "./frame-channel.js";

/** The user's notification inbox: live notifications, history, unread count. */
export class NotificationsHandle {
  readonly #listeners = new Set<(notification: Notification) => void>();
  readonly #unreadListeners = new Set<(unread: bigint) => void>();
  #subscribed = false;
  #lastSeq: bigint | undefined;
  #unread = 0n;
  /** Seqs of unread notifications delivered live, for reconciling counts that cross them. */
  #liveUnread: bigint[] = [];

  constructor(private readonly client: FrameChannel) {}

  /** Unread notifications, as last reported by the server (plus live arrivals). */
  get unreadCount(): bigint {
    return this.#unread;
  }

  /**
   * Follows the inbox: `listener` gets every notification after `afterSeq`
   * (unset: live only), in seq order, exactly once, across reconnects.
   */
  subscribe(listener: (notification: Notification) => void, afterSeq?: bigint): () => void {
    this.#listeners.add(listener);
    if (!this.#subscribed) {
      this.#subscribed = true;
      this.#lastSeq = afterSeq;
      this.resubscribe();
      void this.refreshUnread().catch(() => undefined);
    }
    return () => this.#listeners.delete(listener);
  }

  onUnreadCount(listener: (unread: bigint) => void): () => void {
    this.#unreadListeners.add(listener);
    return () => this.#unreadListeners.delete(listener);
  }

  async list(options: { unreadOnly?: boolean; afterSeq?: bigint; pageSize?: number } = {}): Promise<ListNotificationsResponse> {
    const frame = await this.client.request({
      case: "listNotifications",
      value: { unreadOnly: options.unreadOnly ?? false, cursorSeq: options.afterSeq ?? 0n, pageSize: options.pageSize ?? 50 },
    });
    if (frame.kind.case !== "notifications") throw new Error("unexpected answer to list_notifications");
    const page = frame.kind.value;
    // The count was taken at head_seq; live arrivals beyond it are not in it.
    this.#liveUnread = this.#liveUnread.filter((seq) => seq > page.headSeq);
    this.#setUnread(page.unreadCount + BigInt(this.#liveUnread.length));
    return page;
  }

  /** Marks read every notification up to `upToSeq` and/or the given ids. */
  async ack(options: { upToSeq?: bigint; ids?: string[] }): Promise<AckNotificationsResponse> {
    const frame = await this.client.request({ case: "ackNotifications", value: { upToSeq: options.upToSeq ?? 0n, ids: options.ids ?? [] } });
    if (frame.kind.case !== "notificationsAcked") throw new Error("unexpected answer to ack_notifications");
    this.#liveUnread = [];
    this.#setUnread(frame.kind.value.unreadCount);
    return frame.kind.value;
  }

  async refreshUnread(): Promise<bigint> {
    return (await this.list({ pageSize: 1 })).unreadCount;
  }

  /** @internal */
  resubscribe(): void {
    if (!this.#subscribed) return;
    this.client.fire({ case: "subscribeNotifications", value: { afterSeq: this.#lastSeq } });
  }

  /** @internal */
  deliver(notification: Notification): void {
    if (this.#lastSeq !== undefined && notification.seq <= this.#lastSeq) return;
    this.#lastSeq = notification.seq;
    if (notification.readAt === undefined) {
      this.#liveUnread.push(notification.seq);
      this.#setUnread(this.#unread + 1n);
    }
    for (const listener of this.#listeners) listener(notification);
  }

  /** @internal */
  caughtUp(headSeq: bigint): void {
    this.#lastSeq ??= headSeq;
  }

  #setUnread(unread: bigint): void {
    this.#unread = unread;
    for (const listener of this.#unreadListeners) listener(unread);
  }
}
