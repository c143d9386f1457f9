import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import { ParleyError } from "../../errors/parley-error.js";
import { type Logger, logError } from "../../logging/logger.js";
import type { UnitOfWork } from "../db/unit-of-work.js";
import { FanoutHub } from "../fanout/hub.js";
import type { MessageStore, RoomAdvanced } from "./message-store.js";

/**
 * Delivers committed chat messages to this instance's subscribers: directly
 * for its own commits, and through PostgreSQL NOTIFY for other instances'
 * (the rows are read once per notification, then fanned out in memory).
 */
export class ChatFanout {
  readonly hub = new FanoutHub<ChatMessage>();
  #chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: MessageStore,
    private readonly unitOfWork: UnitOfWork,
    private readonly logger: Logger,
  ) {}

  /** This instance committed `messages` (grouped and ordered by room). */
  committed(messages: readonly ChatMessage[]): void {
    let start = 0;
    for (let i = 1; i <= messages.length; i++) {
      if (i === messages.length || messages[i]?.room !== messages[start]?.room) {
        const room = messages[start]?.room;
        if (room !== undefined) this.hub.publish(room, messages.slice(start, i));
        start = i;
      }
    }
  }

  /** A NOTIFY payload from CHAT_CHANNEL. Processed one at a time, in arrival (commit) order. */
  notified(payload: string): void {
    let advanced: RoomAdvanced;
    try {
      advanced = JSON.parse(payload) as RoomAdvanced;
    } catch (error) {
      this.logger.error({ category: "SERIALIZATION", payload, err: error }, "unreadable fan-out notification");
      return;
    }
    if (advanced.origin === this.store.origin || !this.hub.hasSubscribers(advanced.room)) return;
    this.#chain = this.#chain.then(() => this.#deliverRemote(advanced));
  }

  /** Notifications may have been missed: every follower re-reads the database. */
  resyncAll(): void {
    this.hub.resyncAll();
  }

  async #deliverRemote(advanced: RoomAdvanced): Promise<void> {
    try {
      const messages = await this.unitOfWork.read({ label: "chat.fanout-read", context: { room: advanced.room } }, (em) =>
        this.store.readRange(em, advanced.room, BigInt(advanced.from), BigInt(advanced.to)),
      );
      this.hub.publish(advanced.room, messages);
    } catch (error) {
      // The followers will find the rows themselves.
      logError(this.logger, ParleyError.from(error), { room: advanced.room }, "fan-out read failed; followers resync");
      this.hub.resync(advanced.room);
    }
  }
}
