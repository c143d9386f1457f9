import type { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { FanoutHub, followResumably, type Logger, type ServiceClient } from "../../runtime/index.js";
import { EncodedEvent } from "../encoded-event.js";

interface Feed {
  readonly controller: AbortController;
  followers: number;
  /** Set while the feed has no follower: it closes when this fires. */
  linger: NodeJS.Timeout | undefined;
}

/** How long a feed stays open after its last follower left, by default (ms). */
const DEFAULT_FEED_LINGER_MS = 10_000;
/** Most feeds kept open without a follower; past it, the one idle longest closes. */
const MAX_LINGERING_FEEDS = 1_024;

/**
 * One core subscription per room, however many of the bridge's connections
 * follow it: the room's live log (messages, membership and settings changes,
 * in one seq) goes into a hub, each event encoded once (EncodedEvent), and
 * every connection follows the hub from its own position (see follow.ts; a
 * connection's replay and any gap are read through ListRoomEvents with that
 * connection's own token, and who may receive what is checked per
 * connection, in follows.ts). If the core stream breaks, the feed
 * resubscribes from the last seq it saw and tells followers to check for gaps.
 *
 * A feed stays open for a while after its last follower leaves: a client
 * that subscribes and unsubscribes over and over (or many that come and go)
 * must not map one-to-one onto core streams opened and cancelled, which
 * HTTP/2's rapid-reset protection answers by closing the whole session —
 * every room's feed and every user's sends with it.
 */
export class RoomFeeds {
  readonly hub = new FanoutHub<EncodedEvent>(4096);
  readonly #feeds = new Map<string, Feed>();
  /** Rooms whose feed has no follower, the longest idle first (Map order). */
  readonly #lingering = new Map<string, Feed>();
  readonly #lingerMs: number;
  #opened = 0;
  #closed = false;

  constructor(
    /** The client a room's feed subscribes with: the room's own core session. */
    private readonly chatFor: (room: string) => ServiceClient<typeof ChatService>,
    private readonly logger: Logger,
    options: { lingerMs?: number } = {},
  ) {
    this.#lingerMs = options.lingerMs ?? DEFAULT_FEED_LINGER_MS;
  }

  /** Registers a follower of `room`; the returned function unregisters it. After close(), nothing opens. */
  join(room: string): () => void {
    if (this.#closed) return () => undefined;
    let existing = this.#feeds.get(room);
    if (!existing) {
      existing = { controller: new AbortController(), followers: 0, linger: undefined };
      this.#feeds.set(room, existing);
      this.#opened++;
      this.#run(room, existing);
    }
    const feed = existing;
    if (feed.linger !== undefined) {
      clearTimeout(feed.linger);
      feed.linger = undefined;
      this.#lingering.delete(room);
    }
    feed.followers++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      feed.followers--;
      if (feed.followers === 0) this.#idle(room, feed);
    };
  }

  /** The last follower left: close later, unless one comes back first. */
  #idle(room: string, feed: Feed): void {
    if (this.#lingerMs <= 0) {
      this.#closeFeed(room, feed);
      return;
    }
    feed.linger = setTimeout(() => {
      this.#closeFeed(room, feed);
    }, this.#lingerMs);
    feed.linger.unref();
    this.#lingering.set(room, feed);
    if (this.#lingering.size > MAX_LINGERING_FEEDS) {
      const [oldestRoom, oldest] = this.#lingering.entries().next().value ?? [];
      if (oldestRoom !== undefined && oldest !== undefined) this.#closeFeed(oldestRoom, oldest);
    }
  }

  #closeFeed(room: string, feed: Feed): void {
    clearTimeout(feed.linger);
    feed.linger = undefined;
    this.#lingering.delete(room);
    feed.controller.abort();
    if (this.#feeds.get(room) === feed) {
      this.#feeds.delete(room);
      this.hub.uncover(room);
    }
  }

  /** Core subscriptions opened since start (for metrics and tests). */
  get opened(): number {
    return this.#opened;
  }

  /** Rooms with a core subscription open (for metrics and tests). */
  get roomCount(): number {
    return this.#feeds.size;
  }

  close(): void {
    this.#closed = true;
    for (const [room, feed] of [...this.#feeds]) this.#closeFeed(room, feed);
  }

  #run(room: string, feed: Feed): void {
    const { signal } = feed.controller;
    void followResumably({
      afterSeq: undefined,
      signal,
      // The feed is shared: whatever broke it, it keeps trying.
      retryable: () => true,
      onEnd: "resume",
      open: async (position) => {
        // Batched: a commit's messages for the room arrive as one event.
        const request = position.last === undefined ? { room, batched: true } : { room, afterSeq: position.last, batched: true };
        for await (const { event } of this.chatFor(room).subscribe(request, { signal })) {
          if (event.case === "message") {
            position.passed(event.value);
            this.hub.publish(room, [EncodedEvent.message(event.value)]);
          } else if (event.case === "messages") {
            const last = event.value.messages.at(-1);
            if (last === undefined) continue;
            position.passed(last);
            this.hub.publish(room, event.value.messages.map((message) => EncodedEvent.message(message)));
          } else if (event.case === "roomEvent") {
            // Membership and settings changes are rare: one event, one plain encode.
            position.passed(event.value);
            this.hub.publish(room, [EncodedEvent.roomEvent(event.value)]);
          } else if (event.case === "caughtUp") {
            const first = position.last === undefined;
            position.caughtUp(event.value.headSeq);
            // From here on the feed brings everything after its position:
            // a follower already there reads nothing from core (see
            // FanoutHub.cover), as long as the feed stays up.
            // (Not once the feed is closed: nobody would keep the promise.)
            if (position.last !== undefined && !signal.aborted) this.hub.cover(room, position.last);
            // Followers that read the database before this feed's head was
            // taken may have missed what came between: let them check.
            if (first) this.hub.resync(room);
          }
        }
      },
      interrupted: (cause, attempt) => {
        // Until it has caught up again, followers read what they need themselves.
        this.hub.uncover(room);
        if (cause) this.logger.warn({ category: cause.categoryName, room, attempt }, "room feed from core broken; resubscribing");
        // Followers may have missed something while the feed was down.
        this.hub.resync(room);
      },
    });
  }
}
