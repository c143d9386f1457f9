// A connection's unary calls to core: made with the user's own token, within
// the limit of un-answered requests and the user's places at core, retried
// with backoff while core is unavailable, and abandoned (not cancelled) when
// the connection closes.
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { backoffDelay, ParleyError, PEER_RETRY_BACKOFF, sleep } from "../../wire/index.js";
import type { CallOptions, Logger, Semaphore } from "../../runtime/index.js";
import type { Credential } from "./credential.js";

const CALL_ATTEMPTS = 5;
const CALL_TIMEOUT_MS = 10_000;

/** See the comment at the top of this file. */
export class CoreCalls {
  readonly #credential: Credential;
  readonly #maxInflight: number;
  readonly #log: Logger;
  /** The user's places at core, shared with their other connections and their follows' authorizations. */
  readonly #places: Semaphore;
  /**
   * One controller per call in flight, aborted when the connection closes.
   * Not one shared signal: every call would add an abort listener to it.
   */
  readonly #inflight = new Set<AbortController>();
  #closed = false;

  constructor(credential: Credential, maxInflightRequests: number, places: Semaphore, log: Logger) {
    this.#credential = credential;
    this.#maxInflight = maxInflightRequests;
    this.#places = places;
    this.#log = log;
  }

  /** The current token (a refresh replaces it). */
  #headers(): Readonly<Record<string, string>> {
    return { authorization: `Bearer ${this.#credential.token}` };
  }

  /**
   * Options for a unary call of a follow (its GetRoom): the user's token and
   * the call deadline, and no signal. A short unary call is not cancelled
   * when its caller stops wanting the answer: core's handler runs to the
   * end anyway, so cancelling saves core nothing, costs an RST_STREAM, and
   * would give the user's place at core back while core still works for
   * them — a client subscribing and unsubscribing over and over would have
   * any number of calls running there. The caller waits for the answer (in
   * its place) and drops it.
   */
  options(): CallOptions {
    return { headers: this.#headers(), timeoutMs: CALL_TIMEOUT_MS };
  }

  /**
   * Options for a read the bridge makes as itself (its relay identity), for
   * a connection already authorized: the log reads of a room follow, whose
   * every event is then checked against the user's standing. Not cancelled,
   * as options() says.
   */
  relayOptions(): CallOptions {
    return { timeoutMs: CALL_TIMEOUT_MS };
  }

  /**
   * Options for a subscription stream that `signal` cancels: no deadline. A
   * deadline would end a quiet stream with DEADLINE_EXCEEDED every
   * CALL_TIMEOUT_MS and make it resume for nothing.
   */
  streamOptions(signal: AbortSignal): CallOptions {
    return { headers: this.#headers(), signal };
  }

  /**
   * A unary core call for a request, within the per-connection limit of
   * un-answered ones (a client cannot queue unbounded work at core);
   * UNAVAILABLE/TIMEOUT are retried with backoff. When the connection
   * closes the caller is answered at once, but the call is not cancelled
   * (see options()): it keeps the user's place at core until core answers.
   */
  async call<T>(name: string, call: (options: CallOptions) => Promise<T>): Promise<T> {
    if (this.#inflight.size >= this.#maxInflight) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${this.#maxInflight} requests awaiting an answer`, { retryAfterMs: 100 });
    }
    const controller = new AbortController();
    this.#inflight.add(controller);
    try {
      for (let attempt = 1; ; attempt++) {
        // A place per attempt, not across the backoff: a user's requests
        // queue here, not at core, once they have max_core_calls_per_user there.
        const release = await this.#places.acquire();
        let failure: ParleyError;
        let made: Promise<T> | undefined;
        try {
          if (this.#closed) throw new ParleyError(ErrorCategory.UNAVAILABLE, `${name}: the connection closed before the call was made`);
          // Per attempt: a retry after a token refresh carries the new token.
          made = call(this.options());
          // The place goes back when core has answered, whoever still waits for it.
          made.then(release, release);
          return await abandonable(made, controller.signal);
        } catch (error) {
          failure = ParleyError.from(error);
        } finally {
          if (made === undefined) release();
        }
        // Nobody is left to answer: the cancellation (or the outage) is no failure of ours.
        if (this.#closed) throw new ParleyError(ErrorCategory.UNAVAILABLE, `${name}: the connection closed before core answered`, { cause: failure, context: { expected: true } });
        const transient = failure.category === ErrorCategory.UNAVAILABLE || failure.category === ErrorCategory.TIMEOUT;
        if (!transient || attempt >= CALL_ATTEMPTS) throw failure;
        this.#log.warn({ category: failure.categoryName, call: name, attempt }, "core call failed; retrying");
        await sleep(backoffDelay(attempt, PEER_RETRY_BACKOFF));
      }
    } finally {
      this.#inflight.delete(controller);
    }
  }

  /** Answers every call in flight at once (they run on at core); no call is retried after this. */
  close(): void {
    this.#closed = true;
    for (const controller of this.#inflight) controller.abort();
    this.#inflight.clear();
  }
}

/** Settles as `work` does, or rejects at once when `signal` aborts (`work` runs on). */
function abandonable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const abandon = () => {
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", abandon, { once: true });
    work.then(resolve, reject).finally(() => {
      signal.removeEventListener("abort", abandon);
    });
  });
}
