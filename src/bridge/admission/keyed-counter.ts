/**
 * Counts what is held per key (connections per user, per address) against a
 * cap. A key's entry exists only while something is held, so the map is as
 * large as the set of keys in use, never as the set of keys ever seen.
 */
export class KeyedCounter<K> {
  readonly #counts = new Map<K, number>();

  constructor(private readonly max: number) {}

  /** Holds one unit of `key`; the returned function gives it back (once). Undefined at the cap. */
  acquire(key: K): (() => void) | undefined {
    const held = this.#counts.get(key) ?? 0;
    if (held >= this.max) return undefined;
    this.#counts.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (this.#counts.get(key) ?? 1) - 1;
      if (now <= 0) this.#counts.delete(key);
      else this.#counts.set(key, now);
    };
  }
}
