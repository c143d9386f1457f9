/** A key's RATE_LIMITED refusals are logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 1_000;
/** Keys remembered; past it, the memory starts over (at worst one more line each). */
const MAX_SAMPLED_KEYS = 10_000;

/**
 * A client over a limit earns a refusal per request — hundreds or thousands
 * a second — and a log line each would cost the server more than the
 * refusal itself. Each key's (a caller's, a connection's) refusals are
 * logged at most once a second, the line counting those not logged since;
 * metrics and spans still count every one.
 */
export class RefusalLogSampler {
  readonly #keys = new Map<string, { at: number; unlogged: number }>();

  /** The number not logged since the last line when this refusal is to be logged; undefined when it is not. */
  take(key = ""): number | undefined {
    const now = performance.now();
    const seen = this.#keys.get(key);
    if (seen !== undefined && now - seen.at < REFUSAL_LOG_INTERVAL_MS) {
      seen.unlogged++;
      return undefined;
    }
    if (seen === undefined && this.#keys.size >= MAX_SAMPLED_KEYS) this.#keys.clear();
    this.#keys.set(key, { at: now, unlogged: 0 });
    return seen?.unlogged ?? 0;
  }
}
