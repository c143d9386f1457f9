// What one user may do on this bridge, whatever number of connections they
// spread it over: how many connections, how many rooms followed, how fast
// they send and subscribe.
import { Semaphore, TokenBucket } from "../../runtime/index.js";
import type { AdmissionLimits } from "../limits.js";
import { AbuseStrikes } from "./abuse-strikes.js";
import { KeyedCounter } from "./keyed-counter.js";

/** One user's shared allowances, used by each of their connections. */
export interface UserBudget {
  /** Sends per second over all the user's connections. */
  readonly sends: TokenBucket;
  /** `subscribe` frames per second over all the user's connections. */
  readonly subscribes: TokenBucket;
  /** Places for the user's requests being worked on at core (max_core_calls_per_user). */
  readonly coreCalls: Semaphore;
  /** Rooms the user may follow at once over all their connections. */
  readonly maxSubscriptions: number;
  /** Holds one followed room; undefined at maxSubscriptions. The function gives it back (once). */
  holdSubscription(): (() => void) | undefined;
  /** The user's closes for their rate (4029), and how long they are to stay away. */
  readonly strikes: AbuseStrikes;
}

interface Entry {
  readonly budget: UserBudget;
  connections: number;
  /** Set while the user has no connection: the entry is forgotten when it fires. */
  forget: NodeJS.Timeout | undefined;
}

/**
 * The bridge's users' budgets. A user's entry outlives their last
 * connection until their buckets would have refilled and their closes for
 * their rate are forgiven: closing and reconnecting does not buy a fresh
 * burst, nor a clean record.
 */
export class UserBudgets {
  readonly #entries = new Map<string, Entry>();
  readonly #limits: AdmissionLimits;
  /** How long an unused bucket takes to refill (ms): an entry without connections is kept that long. */
  readonly #refillMs: number;

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
    this.#refillMs = Math.ceil(
      Math.max(limits.sendBurstPerUser / Math.max(limits.sendsPerSecondPerUser, 1e-9), limits.subscribeBurstPerUser / Math.max(limits.subscribesPerSecondPerUser, 1e-9)) * 1000,
    );
  }

  /** How long `user`, closed for their rate, must still stay away (ms); 0 when they may connect. */
  awayMs(user: string): number {
    return this.#entries.get(user)?.budget.strikes.awayMs() ?? 0;
  }

  /** A connection of `user` opens: their budget and the function that ends it (once); undefined at max_connections_per_user. */
  connect(user: string): { readonly budget: UserBudget; readonly release: () => void } | undefined {
    const entry = this.#entries.get(user) ?? this.#create(user);
    if (entry.connections >= this.#limits.maxConnectionsPerUser) {
      this.#idle(user, entry);
      return undefined;
    }
    entry.connections++;
    if (entry.forget !== undefined) {
      clearTimeout(entry.forget);
      entry.forget = undefined;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      entry.connections--;
      this.#idle(user, entry);
    };
    return { budget: entry.budget, release };
  }

  /** Forgets every entry (the bridge stops). */
  close(): void {
    for (const entry of this.#entries.values()) clearTimeout(entry.forget);
    this.#entries.clear();
  }

  #create(user: string): Entry {
    const limits = this.#limits;
    const subscriptions = new KeyedCounter<string>(limits.maxSubscriptionsPerUser);
    const budget: UserBudget = {
      sends: new TokenBucket(limits.sendsPerSecondPerUser, limits.sendBurstPerUser),
      subscribes: new TokenBucket(limits.subscribesPerSecondPerUser, limits.subscribeBurstPerUser),
      coreCalls: new Semaphore(limits.maxCoreCallsPerUser),
      maxSubscriptions: limits.maxSubscriptionsPerUser,
      holdSubscription: () => subscriptions.acquire(user),
      strikes: new AbuseStrikes(),
    };
    const entry: Entry = { budget, connections: 0, forget: undefined };
    this.#entries.set(user, entry);
    return entry;
  }

  #idle(user: string, entry: Entry): void {
    if (entry.connections > 0 || entry.forget !== undefined) return;
    entry.forget = setTimeout(() => {
      entry.forget = undefined;
      if (this.#entries.get(user) !== entry || entry.connections > 0) return;
      // A close for the rate while the timer ran: kept until it is forgiven.
      if (entry.budget.strikes.keepMs() > 0) this.#idle(user, entry);
      else this.#entries.delete(user);
    }, Math.max(this.#refillMs, entry.budget.strikes.keepMs()));
    entry.forget.unref();
  }
}
