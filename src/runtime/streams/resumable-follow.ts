// Following a sequenced stream across breaks: on failure, back off and resume
// from the last seq passed on. The one copy of that loop (room follows, inbox
// follows and the bridge's shared room feeds all use it).
import { backoffDelay, type BackoffPolicy, ParleyError, PEER_RETRY_BACKOFF, sleep } from "../../wire/index.js";
import type { Sequenced } from "./hub.js";

/**
 * Where a resumable follow stands. An attempt records here what it passes on;
 * the next attempt resumes after `last`.
 */
export class FollowPosition {
  /**
   * The seq of the last item passed on, or the head the stream caught up at
   * when nothing had been passed on; undefined while neither happened (the
   * next attempt then starts from "now").
   */
  last: bigint | undefined;
  /** The current attempt got somewhere: the backoff starts over after it. */
  #progressed = false;

  constructor(afterSeq: bigint | undefined) {
    this.last = afterSeq;
  }

  /** Whether `item` comes after everything passed on (a resumed stream may repeat its seam). */
  isNew(item: Sequenced): boolean {
    return this.last === undefined || item.seq > this.last;
  }

  /** Records that `item` was passed on. */
  passed(item: Sequenced): void {
    this.last = item.seq;
    this.#progressed = true;
  }

  /** The stream caught up at `headSeq`; a follow that has passed nothing on resumes from there. */
  caughtUp(headSeq: bigint): void {
    this.last ??= headSeq;
    this.#progressed = true;
  }

  /** Whether the attempt since the last call made progress. */
  takeProgress(): boolean {
    const progressed = this.#progressed;
    this.#progressed = false;
    return progressed;
  }
}

export interface ResumableFollowOptions {
  /** Resume point of the first attempt; undefined means from now. */
  readonly afterSeq: bigint | undefined;
  /** Ends the follow: the running attempt is expected to stop on it, and no other starts. */
  readonly signal: AbortSignal;
  /**
   * One attempt: follows the stream after `position.last`, recording in
   * `position` what it passes on. Resolves when the stream ends, rejects
   * when it breaks.
   */
  readonly open: (position: FollowPosition) => Promise<void>;
  /** What a stream that ends without failing means: the follow is "done", or it is re-opened ("resume"). */
  readonly onEnd: "done" | "resume";
  /** Failures worth resuming after (default: the error's own `retryable`); any other ends the follow. */
  readonly retryable?: (error: ParleyError) => boolean;
  /**
   * Told of every break before its backoff: the failure (undefined when the
   * stream just ended), the attempt about to be made (1 after progress) and
   * the delay before it.
   */
  readonly interrupted?: (error: ParleyError | undefined, attempt: number, delayMs: number) => void;
  readonly backoff?: BackoffPolicy;
}

/**
 * Follows a sequenced stream across breaks: each attempt resumes after the
 * last seq passed on, after a full-jitter backoff that grows with the
 * attempts in a row that made no progress. Resolves when the signal aborts
 * (or a stream ends, with `onEnd: "done"`); rejects with the first failure
 * that is not worth resuming after, as a ParleyError.
 */
export async function followResumably(options: ResumableFollowOptions): Promise<void> {
  const { signal } = options;
  const position = new FollowPosition(options.afterSeq);
  const retryable = options.retryable ?? ((error: ParleyError) => error.retryable);
  const backoff = options.backoff ?? PEER_RETRY_BACKOFF;
  // A function, not the property: the loop must see it change.
  const stopped = () => signal.aborted;
  for (let attempt = 0; !stopped(); ) {
    let failure: ParleyError | undefined;
    try {
      await options.open(position);
      if (options.onEnd === "done") return;
    } catch (error) {
      if (stopped()) return;
      failure = ParleyError.from(error);
      if (!retryable(failure)) throw failure;
    }
    if (stopped()) return;
    attempt = position.takeProgress() ? 1 : attempt + 1;
    const delay = backoffDelay(attempt, backoff);
    options.interrupted?.(failure, attempt, delay);
    await sleep(delay, signal).catch(() => undefined);
  }
}
