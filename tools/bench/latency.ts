/** Latency samples in ms, uniformly sampled (reservoir) once `capacity` is reached. */
export class LatencySample {
  readonly #values: Float64Array;
  #seen = 0;

  constructor(capacity: number) {
    this.#values = new Float64Array(capacity);
  }

  add(ms: number): void {
    const capacity = this.#values.length;
    if (this.#seen < capacity) {
      this.#values[this.#seen] = ms;
    } else {
      const slot = Math.floor(Math.random() * (this.#seen + 1));
      if (slot < capacity) this.#values[slot] = ms;
    }
    this.#seen++;
  }

  /** The samples kept, ascending. */
  sorted(): Float64Array {
    return this.#values.slice(0, Math.min(this.#seen, this.#values.length)).sort();
  }

  /** Nearest-rank percentiles (0 < p ≤ 100); NaN when empty. */
  percentiles(...ps: number[]): number[] {
    const sorted = this.sorted();
    return ps.map((p) => percentile(sorted, p));
  }
}

/** Nearest-rank percentile (0 < p ≤ 100) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}
