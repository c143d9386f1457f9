import { sleep, validationError } from "../../wire/index.js";
import type { FanoutHub, Sequenced } from "./hub.js";

const RECHECK_MS = 20;

export interface FollowOptions<T extends Sequenced> {
  readonly hub: FanoutHub<T>;
  readonly topic: string;
  /** Replay everything after this seq; undefined means live only. */
  readonly afterSeq: bigint | undefined;
  /** Reads up to `limit` stored items with seq > afterSeq, ascending. */
  readonly readAfter: (afterSeq: bigint, limit: number) => Promise<readonly T[]>;
  /** The topic's current head (for live-only subscriptions). */
  readonly readHead: () => Promise<bigint>;
  /**
   * Passes one item on. May return a promise (a stream with backpressure),
   * which is awaited before the next item; a synchronous sender (the bridge
   * writing to a socket) costs no promise per item.
   */
  readonly send: (item: T) => void | Promise<void>;
  /** Sent once, when the replay has caught up with the database. */
  readonly caughtUp: (headSeq: bigint) => Promise<void>;
  readonly signal: AbortSignal;
  /** Rows per replay query (default 500). */
  readonly pageSize?: number;
}

/** Why the synchronous live phase handed control back to the follow loop. */
type LiveExit<T> =
  | { readonly kind: "ended" }
  | { readonly kind: "resync" }
  | { readonly kind: "failed"; readonly error: unknown }
  /** `send(item)` returned a promise; `rest` are the items taken after it. */
  | { readonly kind: "sending"; readonly sent: Promise<void>; readonly item: T; readonly rest: readonly T[] }
  /** An item beyond last + 1; `items` starts with it. */
  | { readonly kind: "gap"; readonly items: readonly T[] };

/**
 * Replay, then live, with no gap and no duplicate at the seam: the
 * subscription to the hub is opened before the first database read, and
 * every item, replayed or live, is passed on only if its seq is exactly
 * last + 1. A live item beyond that (a gap: missed, dropped or not yet seen)
 * sends the follower back to the database; one at or below it is a
 * duplicate and is skipped. Ordering comes from seq, never from timing.
 *
 * Live items are passed on from the hub's own call while the sender is
 * synchronous; anything that needs waiting (a send with backpressure, a
 * resync, a gap) goes through the async loop.
 */
export async function follow<T extends Sequenced>(options: FollowOptions<T>): Promise<void> {
  const pageSize = options.pageSize ?? 500;
  const subscription = options.hub.subscribe(options.topic);
  const stop = () => {
    subscription.close();
  };
  options.signal.addEventListener("abort", stop, { once: true });
  if (options.signal.aborted) stop();
  try {
    let last = options.afterSeq ?? (await options.readHead());

    let checkedHead = options.afterSeq === undefined;
    /** Whether the hub will bring everything after `last` (see FanoutHub.cover): no read is needed. */
    const covered = async () => {
      if (!options.hub.covers(options.topic, last)) return false;
      if (!checkedHead) {
        // A resume point is still checked against the head before it is trusted.
        const head = await options.readHead();
        if (last > head) throw validationError("after_seq", `is beyond the head (${head})`);
        checkedHead = true;
      }
      // Looked at again after the wait: something may have been published meanwhile.
      return options.hub.covers(options.topic, last);
    };
    const catchUp = async () => {
      if (await covered()) return;
      for (;;) {
        const page = await options.readAfter(last, pageSize);
        if (page.length === 0 && !checkedHead) {
          // Nothing after the resume point: make sure it is not beyond the
          // head, which would silently skip everything up to it.
          checkedHead = true;
          const head = await options.readHead();
          if (last > head) throw validationError("after_seq", `is beyond the head (${head})`);
        }
        checkedHead = true;
        for (const item of page) {
          // Stored seqs are gapless; stop rather than skip if that ever breaks.
          if (item.seq !== last + 1n) return;
          const sent = options.send(item);
          if (sent) await sent;
          last = item.seq;
        }
        if (page.length < pageSize || options.signal.aborted) return;
      }
    };

    /**
     * Passes live items on while that needs no waiting: each item at
     * last + 1 goes out, older ones are skipped. Says why it stopped early,
     * if it did.
     */
    const passOnItems = (items: readonly T[]): LiveExit<T> | undefined => {
      for (let index = 0; index < items.length; index++) {
        const item = items[index];
        if (item === undefined || item.seq <= last) continue;
        if (item.seq !== last + 1n) return { kind: "gap", items: items.slice(index) };
        const sent = options.send(item);
        if (sent) return { kind: "sending", sent, item, rest: items.slice(index + 1) };
        last = item.seq;
      }
      return undefined;
    };

    /** Passes on what is queued; says why it stopped early, if it did. */
    const passOnQueued = (): LiveExit<T> | undefined => {
      for (let event = subscription.take(); event !== undefined; event = subscription.take()) {
        const why = event.kind === "resync" ? event : passOnItems(event.items);
        if (why) return why;
      }
      return subscription.closed ? { kind: "ended" } : undefined;
    };

    /** Passes items on as the hub delivers them, until something needs waiting. */
    const live = () =>
      new Promise<LiveExit<T>>((resolve) => {
        let draining = false;
        const drain = () => {
          // A send that makes the hub deliver again lands here: the running drain takes it.
          if (draining) return;
          draining = true;
          let why: LiveExit<T> | undefined;
          try {
            why = passOnQueued();
          } catch (error) {
            why = { kind: "failed", error };
          } finally {
            draining = false;
          }
          if (why) {
            subscription.listen(undefined);
            resolve(why);
          }
        };
        subscription.listen(drain);
        drain();
      });

    await catchUp();
    await options.caughtUp(last);

    /** Live items taken from the queue that wait for the loop (after a send or a gap). */
    let taken: readonly T[] = [];
    for (;;) {
      const why = passOnItems(taken) ?? (await live());
      taken = [];
      switch (why.kind) {
        case "ended":
          if (subscription.closeReason) throw subscription.closeReason;
          return;
        case "failed":
          throw why.error;
        case "resync":
          await catchUp();
          break;
        case "sending":
          await why.sent;
          last = why.item.seq;
          taken = why.rest;
          break;
        case "gap": {
          await catchUp();
          const [first] = why.items;
          if (first !== undefined && first.seq > last) {
            // Still ahead after reading the database, which should not happen
            // (items are published after commit): look again shortly.
            await sleep(RECHECK_MS, options.signal).catch(() => undefined);
            subscription.markResync();
          } else {
            taken = why.items;
          }
          break;
        }
      }
    }
  } finally {
    options.signal.removeEventListener("abort", stop);
    subscription.close();
  }
}
