/**
 * Values by key, each until a deadline (the identities of verified tokens:
 * never past the token's expiry, never longer than `ttlMs`), at most
 * `maxEntries` of them: the oldest entry goes first (Maps iterate in
 * insertion order).
 */
export class ExpiringCache<V> {
  readonly #entries = new Map<string, { readonly value: V; readonly until: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value of `key` while its deadline has not passed; undefined otherwise. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() < entry.until) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  /** Remembers `value` for `key` for the TTL, or until `untilMs` when that is sooner. */
  set(key: string, value: V, untilMs = Infinity): void {
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, until: Math.min(this.now() + this.ttlMs, untilMs) });
  }
}
