import { validationError } from "../errors/parley-error.js";
import { sleep } from "../util/backoff.js";
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
  readonly send: (item: T) => Promise<void>;
  /** Sent once, when the replay has caught up with the database. */
  readonly caughtUp: (headSeq: bigint) => Promise<void>;
  readonly signal: AbortSignal;
  /** Rows per replay query (default 500). */
  readonly pageSize?: number;
}

/**
 * Replay, then live, with no gap and no duplicate at the seam: the
 * subscription to the hub is opened before the first database read, and
 * every item, replayed or live, is passed on only if its seq is exactly
 * last + 1. A live item beyond that (a gap: missed, dropped or not yet seen)
 * sends the follower back to the database; one at or below it is a
 * duplicate and is skipped. Ordering comes from seq, never from timing.
 */
export async function follow<T extends Sequenced>(options: FollowOptions<T>): Promise<void> {
  const pageSize = options.pageSize ?? 500;
  const subscription = options.hub.subscribe(options.topic);
  try {
    let last = options.afterSeq ?? (await options.readHead());

    let checkedHead = options.afterSeq === undefined;
    const catchUp = async () => {
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
          await options.send(item);
          last = item.seq;
        }
        if (page.length < pageSize || options.signal.aborted) return;
      }
    };

    await catchUp();
    await options.caughtUp(last);

    for (;;) {
      const event = await subscription.next(options.signal);
      if (event === undefined) return;
      if (event.kind === "resync") {
        await catchUp();
        continue;
      }
      for (const item of event.items) {
        if (item.seq <= last) continue;
        if (item.seq !== last + 1n) {
          await catchUp();
          if (item.seq <= last) continue;
          // Still ahead after reading the database, which should not happen
          // (items are published after commit): look again shortly.
          await sleep(RECHECK_MS, options.signal).catch(() => undefined);
          subscription.markResync();
          break;
        }
        await options.send(item);
        last = item.seq;
      }
    }
  } finally {
    subscription.close();
  }
}
