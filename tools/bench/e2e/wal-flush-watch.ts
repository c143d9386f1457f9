/**
 * How long PostgreSQL waits on its disk to make a commit durable, as the
 * benchmarks' tail depends on it: a send is acknowledged only once its
 * commit's WAL is flushed, so a flush the disk holds for 100 ms holds every
 * send of those 100 ms, and then the backlog behind them.
 *
 * A separate connection (to the server's maintenance database, so that its
 * own work is not counted as the benchmark database's) samples
 * pg_stat_activity every 20 ms and follows each backend of the benchmark
 * database while it waits on a WAL write or flush (its own fdatasync, or
 * another backend's it queues behind). A wait belongs to one statement (the
 * backend's pid and its query_start): two samples that see the same backend
 * waiting for two different commits are two waits, not one long one. A wait
 * is reported from the sample that first saw it to the first that no longer
 * did, so to within one sampling interval; most waits shorter than one go
 * unseen. That is enough for what this is for: the stalls of 100 ms and more
 * that decide a p99.
 * Sampling more often costs more than it tells: every 5 ms, the sampling
 * took about a tenth of a core in each of PostgreSQL and the load generator.
 */
import pg from "pg";
import { sleep } from "../../../src/wire/backoff.js";
import { TEST_SERVER_URL, type TestDatabase } from "../../../test/support/database.js";

/** One WAL wait seen: when it started (process.hrtime.bigint()) and how long it lasted. */
export interface WalWait {
  readonly from: bigint;
  readonly ms: number;
}

export interface WalWaitSummary {
  /** The longest wait that overlapped the window, in ms (0 when none was seen). */
  readonly longestMs: number;
  /** Waits of at least STALL_MS that overlapped the window. */
  readonly stalls: number;
}

/** A wait this long is a stall: twice the 25 ms p99 target. */
export const STALL_MS = 50;

/** How often pg_stat_activity is sampled. */
const SAMPLE_EVERY_MS = 20;

const WAL_WAIT_EVENTS = ["WALSync", "WALWrite", "WALInitSync", "WALInitWrite"];

export class WalFlushWatch {
  readonly #waits: WalWait[] = [];
  /** Statements ("pid query_start") waiting at the last sample, since when. */
  readonly #open = new Map<string, bigint>();
  readonly #stop = new AbortController();
  #failure: string | undefined;
  readonly #loop: Promise<void>;

  private constructor(
    private readonly client: pg.Client,
    private readonly database: string,
    private readonly intervalMs: number,
    refusal: string | undefined,
  ) {
    this.#failure = refusal;
    this.#loop = refusal === undefined ? this.#run() : Promise.resolve();
  }

  static async start(db: TestDatabase, intervalMs = SAMPLE_EVERY_MS): Promise<WalFlushWatch> {
    const client = new pg.Client({ connectionString: TEST_SERVER_URL });
    await client.connect();
    // Other sessions' wait events are visible only to superusers and pg_read_all_stats.
    const { rows } = await client.query<{ allowed: boolean }>(
      "select rolsuper or pg_has_role(current_user, 'pg_read_all_stats', 'member') as allowed from pg_roles where rolname = current_user",
    );
    const refusal = rows[0]?.allowed === true ? undefined : "this role cannot see other sessions' wait events (needs pg_read_all_stats)";
    return new WalFlushWatch(client, db.name, intervalMs, refusal);
  }

  /** The report's line on what the WAL columns mean, and why sampling stopped early if it did (rather than showing zeros). */
  legend(): string {
    const failed = this.#failure === undefined ? "" : ` Sampling stopped early: ${this.#failure}`;
    return `WAL flush waits: the benchmark database's backends waiting on a WAL write or fsync, sampled every ${this.intervalMs} ms; a send is acked after its commit is durable, so a stall holds every send behind it.${failed}`;
  }

  /** The waits that overlapped [from, to] (process.hrtime.bigint() times). */
  summary(from: bigint, to: bigint): WalWaitSummary {
    let longestMs = 0;
    let stalls = 0;
    const now = process.hrtime.bigint();
    const stillWaiting = [...this.#open.values()].map((since) => ({ from: since, ms: Number(now - since) / 1e6 }));
    for (const wait of [...this.#waits, ...stillWaiting]) {
      const end = wait.from + BigInt(Math.round(wait.ms * 1e6));
      if (end < from || wait.from > to) continue;
      longestMs = Math.max(longestMs, wait.ms);
      if (wait.ms >= STALL_MS) stalls++;
    }
    return { longestMs, stalls };
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.client.end().catch(() => undefined);
  }

  async #run(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        await this.#sample();
      } catch (error) {
        this.#failure = error instanceof Error ? error.message : String(error);
        return;
      }
      await sleep(this.intervalMs, this.#stop.signal).catch(() => undefined);
    }
  }

  async #sample(): Promise<void> {
    // A named (prepared) statement: planned once, not at every sample.
    const { rows } = await this.client.query<{ statement: string }>({
      name: "parley-bench-wal-waits",
      text: "select pid || ' ' || query_start as statement from pg_stat_activity where datname = $1 and wait_event = any($2::text[])",
      values: [this.database, WAL_WAIT_EVENTS],
    });
    const now = process.hrtime.bigint();
    const waiting = new Set(rows.map((row) => row.statement));
    for (const statement of waiting) if (!this.#open.has(statement)) this.#open.set(statement, now);
    for (const [statement, since] of this.#open) {
      if (waiting.has(statement)) continue;
      this.#open.delete(statement);
      this.#waits.push({ from: since, ms: Number(now - since) / 1e6 });
    }
  }
}
