/**
 * How many lines of one kind may be logged at their own level per window;
 * the rest go to debug. Keeps a port scanner (or a misconfigured client
 * retrying in a loop) from flooding the logs, while the first lines of a
 * real problem are always seen.
 */
export class LogBudget {
  #windowStart = Number.NEGATIVE_INFINITY;
  #used = 0;

  constructor(
    readonly perWindow: number,
    readonly windowMs: number,
  ) {}

  /**
   * "log" within the budget, "last" for the last line of the budget (say
   * that more are demoted), "demote" beyond it until the window ends.
   */
  take(now = Date.now()): "log" | "last" | "demote" {
    if (now - this.#windowStart >= this.windowMs) {
      this.#windowStart = now;
      this.#used = 0;
    }
    this.#used += 1;
    if (this.#used < this.perWindow) return "log";
    return this.#used === this.perWindow ? "last" : "demote";
  }
}
