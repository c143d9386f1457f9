// How long a user closed for their rate (4029) is told to stay away, and
// whether they are still inside that time: a client that comes straight
// back to do it again pays more each time.
import { performance } from "node:perf_hooks";

/** A 4029 close is forgiven after this long without another (ms). */
export const STRIKE_MEMORY_MS = 60_000;
/** The longest a user is told to stay away (ms). */
export const MAX_AWAY_MS = 60_000;

/**
 * One user's 4029 closes. Each close tells the user to stay away for its
 * own reconnect_after, doubled for every earlier close not yet forgiven (one
 * is forgiven per STRIKE_MEMORY_MS without a new one), up to MAX_AWAY_MS;
 * their upgrades are refused until then. A persistent abuser reconnecting as
 * soon as allowed is let in ~6 times a minute instead of ~30, and each
 * reconnect is a burst of work for the bridge and core that every other user
 * feels; a client that was closed once by mistake comes back after the
 * usual second.
 */
export class AbuseStrikes {
  #strikes = 0;
  #lastAt = 0;
  #awayUntil = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Records a 4029 close whose own reconnect_after is `baseMs`; returns the reconnect_after to send. */
  strike(baseMs: number): number {
    const now = this.now();
    this.#strikes = this.#unforgiven(now) + 1;
    this.#lastAt = now;
    const awayMs = Math.min(MAX_AWAY_MS, Math.max(baseMs, baseMs * 2 ** (this.#strikes - 1)));
    this.#awayUntil = Math.max(this.#awayUntil, now + awayMs);
    return Math.ceil(Math.max(awayMs, this.#awayUntil - now));
  }

  /** How long the user must still stay away (whole ms); 0 when they may connect. */
  awayMs(): number {
    return Math.ceil(Math.max(0, this.#awayUntil - this.now()));
  }

  /** How long this record still matters (ms): until the user may connect and every close is forgiven. */
  keepMs(): number {
    const now = this.now();
    const unforgiven = this.#unforgiven(now);
    return unforgiven === 0 ? this.awayMs() : Math.max(this.awayMs(), this.#lastAt + unforgiven * STRIKE_MEMORY_MS - now);
  }

  #unforgiven(now: number): number {
    if (this.#strikes === 0) return 0;
    return Math.max(0, this.#strikes - Math.floor((now - this.#lastAt) / STRIKE_MEMORY_MS));
  }
}
