import type { Identity } from "./tokens.js";

/**
 * Identities of tokens verified before, each until a deadline (never past
 * the token's expiry, never longer than `ttlMs`), at most `maxEntries` of
 * them: the oldest entry goes first (Maps iterate in insertion order).
 */
export class IdentityCache {
  readonly #entries = new Map<string, { readonly identity: Identity; readonly until: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The identity of `token` while its deadline has not passed; undefined otherwise. */
  get(token: string): Identity | undefined {
    const entry = this.#entries.get(token);
    if (entry === undefined) return undefined;
    if (this.now() < entry.until) return entry.identity;
    this.#entries.delete(token);
    return undefined;
  }

  /** Remembers `identity` for `token` for the TTL, or until `untilMs` when that is sooner. */
  set(token: string, identity: Identity, untilMs = Infinity): void {
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(token, { identity, until: Math.min(this.now() + this.ttlMs, untilMs) });
  }
}
