// Whether the database answers, as core's writers see it, and how long a
// write may wait for it to come back.
import { performance } from "node:perf_hooks";

/** How long a write waits for an unreachable database before it is refused, by default (ms). */
const DEFAULT_OUTAGE_HORIZON_MS = 30_000;
/** Writes one committer holds while the database is away, by default; more are refused at once. */
const DEFAULT_MAX_HELD = 50_000;

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

  /** A writer could not reach the database. */
  down(): void {
    if (this.#downSince !== undefined) return;
    this.#downSince = performance.now();
    for (const listener of this.#listeners) listener(false);
  }

  /** A writer committed. */
  up(): void {
    if (this.#downSince === undefined) return;
    this.#downSince = undefined;
    for (const listener of this.#listeners) listener(true);
  }

  /** Calls `listener` on every change; the returned function stops that. */
  onChange(listener: (available: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }
}
