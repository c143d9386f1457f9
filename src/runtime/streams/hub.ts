/** Anything delivered in per-topic seq order (chat messages, notifications). */
export interface Sequenced {
  readonly seq: bigint;
}

/**
 * What a subscription receives: items in the order they were published, or
 * `resync` when it may have missed some (its queue overflowed, or the
 * cross-instance listener reconnected) and must catch up from the database.
 */
export type TopicEvent<T> = { readonly kind: "items"; readonly items: readonly T[] } | { readonly kind: "resync" };

/**
 * One subscriber's bounded view of a topic. The follower is told of changes
 * through a listener, called synchronously, and takes what is queued with
 * `take()`: a live follower that can pass items on synchronously (the bridge
 * writing to sockets) costs no promise per event.
 */
export class Subscription<T extends Sequenced> {
  /**
   * What waits to be taken. Never mutated: a delivery to an empty queue
   * becomes the queue (the same array for every subscriber of the topic),
   * a later one a new array.
   */
  #queue: readonly T[] = [];
  #resync = false;
  #closed = false;
  #closeReason: Error | undefined;
  #listener: (() => void) | undefined;

  constructor(
    private readonly capacity: number,
    private readonly onClose: (subscription: Subscription<T>) => void,
  ) {}

  /** Called by the hub. Overflow drops the queue: the database has it all. */
  deliver(items: readonly T[]): void {
    if (this.#closed) return;
    if (this.#resync || this.#queue.length + items.length > this.capacity) {
      this.#queue = [];
      this.#resync = true;
    } else {
      this.#queue = this.#queue.length === 0 ? items : [...this.#queue, ...items];
    }
    this.#listener?.();
  }

  markResync(): void {
    if (this.#closed) return;
    this.#queue = [];
    this.#resync = true;
    this.#listener?.();
  }

  /** The event waiting now, if there is one; undefined when nothing is queued or once closed. */
  take(): TopicEvent<T> | undefined {
    if (this.#closed) return undefined;
    if (this.#resync) {
      this.#resync = false;
      return { kind: "resync" };
    }
    if (this.#queue.length === 0) return undefined;
    const items = this.#queue;
    this.#queue = [];
    return { kind: "items", items };
  }

  /**
   * Sets the one function called, synchronously, whenever something is
   * queued or the subscription closes (undefined: nobody is listening; what
   * arrives meanwhile waits in the queue).
   */
  listen(listener: (() => void) | undefined): void {
    this.#listener = listener;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Why the hub closed the subscription (server shutdown); undefined when the follower closed it. */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  close(reason?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    this.#queue = [];
    this.onClose(this);
    this.#listener?.();
  }
}

/**
 * In-process fan-out: committed items are published to a topic (a room, an
 * inbox) and copied into each subscriber's bounded queue. Memory is bounded
 * per subscriber; a slow one is told to resync instead of growing.
 */
export class FanoutHub<T extends Sequenced> {
  readonly #topics = new Map<string, Set<Subscription<T>>>();
  /** Covered topics (see cover()): the highest seq published to each since. */
  readonly #published = new Map<string, bigint>();

  constructor(private readonly capacity = 1024) {}

  subscribe(topic: string): Subscription<T> {
    let subscribers = this.#topics.get(topic);
    if (!subscribers) {
      subscribers = new Set();
      this.#topics.set(topic, subscribers);
    }
    const subscription = new Subscription<T>(this.capacity, (closed) => {
      const set = this.#topics.get(topic);
      set?.delete(closed);
      if (set?.size === 0) this.#topics.delete(topic);
    });
    subscribers.add(subscription);
    return subscription;
  }

  /** Hands `items` to every subscriber of `topic`; they keep the array itself, so it must not change afterwards. */
  publish(topic: string, items: readonly T[]): void {
    const last = items.at(-1);
    const published = this.#published.get(topic);
    if (published !== undefined && last !== undefined && last.seq > published) this.#published.set(topic, last.seq);
    const subscribers = this.#topics.get(topic);
    if (!subscribers || items.length === 0) return;
    for (const subscription of subscribers) subscription.deliver(items);
  }

  /** Tells the topic's subscribers to catch up from the database. */
  resync(topic: string): void {
    for (const subscription of this.#topics.get(topic) ?? []) subscription.markResync();
  }

  /** Tells every subscriber to catch up (after missed notifications). */
  resyncAll(): void {
    for (const topic of this.#topics.keys()) this.resync(topic);
  }

  /** Ends every subscription with `reason` (shutdown: followers resubscribe elsewhere). */
  closeAll(reason: Error): void {
    for (const subscribers of [...this.#topics.values()]) {
      for (const subscription of [...subscribers]) subscription.close(reason);
    }
  }

  hasSubscribers(topic: string): boolean {
    return this.#topics.has(topic);
  }

  /**
   * The publisher of `topic` promises to publish, in seq order, every item
   * after `afterSeq` from now on, until uncover(): a follower already at or
   * past everything published since has nothing to read from the database
   * (see covers()). The bridge's shared room feed makes this promise once
   * its core stream has caught up; a hub nobody covers is read as before.
   */
  cover(topic: string, afterSeq: bigint): void {
    const published = this.#published.get(topic);
    if (published === undefined || afterSeq > published) this.#published.set(topic, afterSeq);
  }

  /** The promise of cover() no longer holds (the feed broke or closed). */
  uncover(topic: string): void {
    this.#published.delete(topic);
  }

  /**
   * Whether a subscriber of `topic` that has passed everything up to
   * `last` will get every later item from the hub: the topic is covered
   * and nothing after `last` has been published yet (what is published
   * from now on reaches subscriptions already open).
   */
  covers(topic: string, last: bigint): boolean {
    const published = this.#published.get(topic);
    return published !== undefined && last >= published;
  }

}
