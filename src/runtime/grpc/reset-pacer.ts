import { TokenBucket } from "../limits/token-bucket.js";

/**
 * How fast one HTTP/2 session may cancel its streams. A cancelled call is an
 * RST_STREAM frame, and servers end a session that sends them too fast (the
 * "rapid reset" defence: nghttp2, under Node's http2 and so under grpc-js,
 * allows a burst of 1,000 then 33 a second, and then closes the session with
 * INTERNAL_ERROR — every call on it fails). These defaults stay well inside.
 */
export interface ResetBudget {
  readonly ratePerSecond: number;
  readonly burst: number;
}

const DEFAULT_RESET_BUDGET: ResetBudget = { ratePerSecond: 25, burst: 500 };

/** Something that can be cancelled: a grpc-js call. */
export interface Cancellable {
  cancel(): void;
}

/** A call waiting for its cancellation, and whether it ended meanwhile (then it costs no reset). */
interface Waiting {
  readonly call: Cancellable;
  readonly ended: () => boolean;
}

/**
 * Paces the cancellations of one HTTP/2 session: within the budget a call is
 * cancelled at once; past it, the cancellation waits its turn (oldest
 * first) and the call stays open on the server until then — its messages
 * unread, held by HTTP/2 flow control — which costs the server a stream for
 * a while instead of costing every caller the session. Whatever a client of
 * the bridge does (subscribe, unsubscribe, over and over), the session's
 * resets stay under what the server accepts.
 */
export class ResetPacer {
  readonly #bucket: TokenBucket;
  readonly #waiting: Waiting[] = [];
  #timer: NodeJS.Timeout | undefined;
  #saturated = false;
  /** Flushed: the session is closing, cancellations go at once. */
  #closed = false;

  constructor(
    budget: ResetBudget = DEFAULT_RESET_BUDGET,
    /** Told once each time the budget runs out, after having had room again. */
    private readonly onSaturated: (waiting: number) => void = () => undefined,
  ) {
    this.#bucket = new TokenBucket(budget.ratePerSecond, budget.burst);
  }

  /**
   * Cancels `call` now if the budget allows, or as soon as it does; a call
   * that `ended` by itself in the meantime (the server finished it, the
   * session was lost) is dropped from the queue without taking a reset.
   */
  cancel(call: Cancellable, ended: () => boolean = () => false): void {
    if (this.#closed || (this.#waiting.length === 0 && this.#bucket.take())) {
      call.cancel();
      return;
    }
    this.#waiting.push({ call, ended });
    if (!this.#saturated) {
      this.#saturated = true;
      this.onSaturated(this.#waiting.length);
    }
    this.#schedule();
  }

  /** Cancellations waiting for the budget. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Cancels everything waiting at once: the session is closing anyway. */
  flush(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const { call } of this.#waiting.splice(0)) call.cancel();
    this.#saturated = false;
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      let next = this.#waiting[0];
      while (next !== undefined && (next.ended() || this.#bucket.take())) {
        this.#waiting.shift();
        if (!next.ended()) next.call.cancel();
        next = this.#waiting[0];
      }
      if (this.#waiting.length > 0) this.#schedule();
      else this.#saturated = false;
    }, Math.max(1, this.#bucket.msUntil()));
    this.#timer.unref();
  }
}
