/** Counts of named outcomes ("4029", "RATE_LIMITED", "HTTP 429"), written most frequent first. */
export class Tally {
  readonly #counts = new Map<string, number>();

  add(name: string, count = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + count);
  }

  get(name: string): number {
    return this.#counts.get(name) ?? 0;
  }

  get total(): number {
    let sum = 0;
    for (const count of this.#counts.values()) sum += count;
    return sum;
  }

  get size(): number {
    return this.#counts.size;
  }

  /** "4029 ×3, 1006 ×1", or `empty` when nothing was counted. */
  describe(empty = "none"): string {
    if (this.#counts.size === 0) return empty;
    return [...this.#counts]
      .sort((a, b) => b[1] - a[1])
      .map(([name, count]) => `${name} ×${count.toLocaleString("en-US")}`)
      .join(", ");
  }
}
