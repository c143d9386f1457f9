import type { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import type { ParleyError } from "../../wire/errors/parley-error.js";
import { FanoutHub } from "../../runtime/streams/hub.js";
import type { ServiceClient } from "../../runtime/grpc/client.js";
import type { Logger } from "../../runtime/logger.js";
import { backoffDelay, type BackoffPolicy } from "../../wire/backoff.js";
import { EncodedEvent } from "../encoded-event.js";

const RESUBSCRIBE_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 2_000, multiplier: 1.6 };

interface Feed {
  readonly controller: AbortController;
  followers: number;
  lastSeq: bigint | undefined;
}

/**
 * One core subscription per room, however many of the bridge's connections
 * follow it: live messages go into a hub, each encoded once (EncodedEvent),
 * and every connection follows the hub from its own position (see follow.ts;
 * a connection's replay and any gap are read through ListMessages with that
 * connection's own token). If the core stream breaks, the feed resubscribes
 * from the last seq it saw and tells followers to check for gaps.
 */
export class RoomFeeds {
  readonly hub = new FanoutHub<EncodedEvent>(4096);
  readonly #feeds = new Map<string, Feed>();

  constructor(
    private readonly chat: ServiceClient<typeof ChatService>,
    private readonly logger: Logger,
  ) {}

  /** Registers a follower of `room`; the returned function unregisters it. */
  join(room: string): () => void {
    let existing = this.#feeds.get(room);
    if (!existing) {
      existing = { controller: new AbortController(), followers: 0, lastSeq: undefined };
      this.#feeds.set(room, existing);
      void this.#run(room, existing);
    }
    const feed = existing;
    feed.followers++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      feed.followers--;
      if (feed.followers === 0) {
        feed.controller.abort();
        this.#feeds.delete(room);
      }
    };
  }

  /** Rooms with a core subscription open (for metrics and tests). */
  get roomCount(): number {
    return this.#feeds.size;
  }

  close(): void {
    for (const feed of this.#feeds.values()) feed.controller.abort();
    this.#feeds.clear();
  }

  async #run(room: string, feed: Feed): Promise<void> {
    const { signal } = feed.controller;
    // A function, not the property: the loop must see it change.
    const stopped = () => signal.aborted;
    for (let attempt = 0; !stopped(); ) {
      try {
        // Batched: a commit's messages for the room arrive as one event.
        const request = feed.lastSeq === undefined ? { room, batched: true } : { room, afterSeq: feed.lastSeq, batched: true };
        for await (const { event } of this.chat.subscribe(request, { signal })) {
          attempt = 0;
          if (event.case === "message") {
            feed.lastSeq = event.value.seq;
            this.hub.publish(room, [EncodedEvent.message(event.value)]);
          } else if (event.case === "messages") {
            const last = event.value.messages.at(-1);
            if (last === undefined) continue;
            feed.lastSeq = last.seq;
            this.hub.publish(room, event.value.messages.map((message) => EncodedEvent.message(message)));
          } else if (event.case === "caughtUp" && feed.lastSeq === undefined) {
            feed.lastSeq = event.value.headSeq;
            // Followers that read the database before this feed's head was
            // taken may have missed what came between: let them check.
            this.hub.resync(room);
          }
        }
      } catch (error) {
        if (stopped()) return;
        const cause = error as ParleyError;
        attempt++;
        this.logger.warn({ category: cause.categoryName, room, attempt }, "room feed from core broken; resubscribing");
      }
      if (stopped()) return;
      // Followers may have missed something while the feed was down.
      this.hub.resync(room);
      await new Promise((resolve) => setTimeout(resolve, backoffDelay(Math.max(1, attempt), RESUBSCRIBE_BACKOFF)));
    }
  }
}
