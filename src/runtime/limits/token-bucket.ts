/**
 * A token bucket: `ratePerSecond` sustained, `burst` at once. Refilled from
 * the clock when it is read, so an idle bucket costs nothing. Rate limits
 * live on hot paths (every frame, every send): a take is two reads of the
 * clock's value and some arithmetic, and a refusal says how long until the
 * next token (`retry_after`).
 */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#at = now();
  }

  /** Takes `count` tokens if there are that many; false (nothing taken) otherwise. */
  take(count = 1): boolean {
    this.#refill();
    if (this.#tokens < count) return false;
    this.#tokens -= count;
    return true;
  }

  /** Milliseconds until `count` tokens are there (0: now), for `retry_after`. */
  msUntil(count = 1): number {
    this.#refill();
    if (this.#tokens >= count) return 0;
    if (this.ratePerSecond <= 0) return Number.POSITIVE_INFINITY;
    return Math.ceil(((count - this.#tokens) / this.ratePerSecond) * 1000);
  }

  #refill(): void {
    const now = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.ratePerSecond);
    this.#at = now;
  }
}
