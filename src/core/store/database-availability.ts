// Whether the database answers, as core's writers see it, and how long a
// write may wait for it to come back.
import { performance } from "node:perf_hooks";

/** How long a write waits for an unreachable database before it is refused, by default (ms). */
const DEFAULT_OUTAGE_HORIZON_MS = 30_000;
/** Writes one committer holds while the database is away, by default; more are refused at once. */
const DEFAULT_MAX_HELD = 50_000;

/** How often a database marked down is asked whether it answers again (ms). */
const PROBE_INTERVAL_MS = 1_000;

export interface OutagePolicy {
  /** How long a write waits for an unreachable database before it is refused (ms). */
  readonly horizonMs: number;
  /** Writes one committer holds while the database is away; the next is refused at once. */
  readonly maxHeld: number;
}

/**
 * The group committers mark the database down when a batch fails for want
 * of a connection (after the unit of work's quick retries), and up at their
 * next commit. Core's health follows it (NOT_SERVING while down), so that
 * load balancers and a bridge's /readyz send no new clients here while the
 * writes already taken wait, held in order, for the database to return.
 */
export class DatabaseAvailability {
  readonly policy: OutagePolicy;
  #downSince: number | undefined;
  readonly #listeners = new Set<(available: boolean) => void>();
  /** Asks the database whether it answers; set by the unit of work. */
  #probe: (() => Promise<unknown>) | undefined;
  #probing: NodeJS.Timeout | undefined;

  constructor(policy: Partial<OutagePolicy> = {}) {
    this.policy = { horizonMs: policy.horizonMs ?? DEFAULT_OUTAGE_HORIZON_MS, maxHeld: policy.maxHeld ?? DEFAULT_MAX_HELD };
  }

  /** Whether the last word of any writer was that the database answers. */
  get available(): boolean {
    return this.#downSince === undefined;
  }

  /** How long the database has been away (ms); 0 while it answers. */
  downForMs(): number {
    return this.#downSince === undefined ? 0 : performance.now() - this.#downSince;
  }

  /**
   * How to ask the database whether it answers. While it is marked down,
   * this runs every PROBE_INTERVAL_MS: once the writes held have been
   * refused there may be none left to find that it is back, and a core
   * that stays NOT_SERVING gets no clients to write.
   */
  probeWith(probe: () => Promise<unknown>): void {
    this.#probe = probe;
  }

  /** A writer could not reach the database. */
  down(): void {
    if (this.#downSince !== undefined) return;
    this.#downSince = performance.now();
    for (const listener of this.#listeners) listener(false);
    this.#probeLater();
  }

  /** A writer committed, or the probe was answered. */
  up(): void {
    clearTimeout(this.#probing);
    this.#probing = undefined;
    if (this.#downSince === undefined) return;
    this.#downSince = undefined;
    for (const listener of this.#listeners) listener(true);
  }

  /** Stops probing (core stops). */
  close(): void {
    clearTimeout(this.#probing);
    this.#probe = undefined;
  }

  #probeLater(): void {
    const probe = this.#probe;
    if (probe === undefined || this.#probing !== undefined) return;
    this.#probing = setTimeout(() => {
      probe().then(
        () => {
          this.up();
        },
        () => {
          this.#probing = undefined;
          if (this.#downSince !== undefined) this.#probeLater();
        },
      );
    }, PROBE_INTERVAL_MS);
    this.#probing.unref();
  }

  /** Calls `listener` on every change; the returned function stops that. */
  onChange(listener: (available: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }
}
