import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import pg from "pg";
import type { Logger } from "../../runtime/index.js";
import { backoffDelay, type BackoffPolicy } from "../../wire/index.js";

export interface PgListenerOptions {
  readonly databaseUrl: string;
  readonly channels: readonly string[];
  readonly logger: Logger;
  /** A notification arrived (in commit order). */
  readonly onNotification: (channel: string, payload: string) => void;
  /**
   * The connection was re-established after a drop: notifications sent
   * meanwhile are lost, so followers must catch up from the database.
   */
  readonly onReconnected: () => void;
  readonly backoff?: BackoffPolicy;
  /** How often the listener notifies itself through its own connection (default 1 s)... */
  readonly heartbeatIntervalMs?: number;
  /** ...and how long without hearing itself makes the connection count as stalled (default 3 s). */
  readonly heartbeatTimeoutMs?: number;
}

const RECONNECT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 5_000, multiplier: 1.6 };
const HEARTBEAT_INTERVAL_MS = 1_000;
const HEARTBEAT_TIMEOUT_MS = 3_000;
/** TCP keepalive, the second line behind the heartbeat: the OS default waits two hours. */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/**
 * A dedicated PostgreSQL connection that LISTENs on parley's channels and
 * reconnects (with backoff) whenever it drops. This is how core instances
 * learn about each other's commits without any extra service.
 *
 * A connection can also stall without dropping (a backend stopped, a
 * network path that swallows packets): nothing arrives and nothing fails.
 * So the listener notifies itself on a channel of its own every second,
 * through its own connection, and a connection that has not delivered its
 * own heartbeat for 3 s is cut and replaced — and followers resync, as
 * after any reconnect. Cross-instance delivery stops for at most that long.
 */
export class PgListener {
  #client: pg.Client | undefined;
  #stopped = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** When this listener last heard its own heartbeat (performance.now()). */
  #heardAt = 0;
  #connectedOnce = false;
  /** This listener's own heartbeat channel: nobody else notifies it. */
  readonly #heartbeatChannel = `parley_listener_${randomUUID().replaceAll("-", "")}`;

  constructor(private readonly options: PgListenerOptions) {}

  /** Connects and listens; resolves once listening (or rejects on the first failure). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  /** The backend pid of the listening connection (tests terminate it). */
  get backendPid(): number | undefined {
    return (this.#client as unknown as { processID?: number } | undefined)?.processID;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.databaseUrl, keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS });
    client.on("notification", (message) => {
      if (message.channel === this.#heartbeatChannel) this.#heardAt = performance.now();
      else this.options.onNotification(message.channel, message.payload ?? "");
    });
    client.on("error", (error) => {
      this.options.logger.warn({ category: "UNAVAILABLE", err: error }, "fan-out listener connection failed");
      this.#scheduleReconnect(client);
    });
    client.on("end", () => {
      this.#scheduleReconnect(client);
    });
    try {
      await client.connect();
      for (const channel of [...this.options.channels, this.#heartbeatChannel]) await client.query(`listen "${channel}"`);
    } catch (error) {
      // Connected but could not listen: do not leak the connection.
      client.removeAllListeners("end");
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#stopped) {
      await client.end();
      return;
    }
    this.#client = client;
    this.#attempt = 0;
    this.#watch(client);
    if (this.#connectedOnce) {
      this.options.logger.info({ channels: this.options.channels }, "fan-out listener reconnected; followers resync");
      this.options.onReconnected();
    }
    this.#connectedOnce = true;
  }

  /** Notifies itself every heartbeat interval; a connection that stopped delivering is cut and replaced. */
  #watch(client: pg.Client): void {
    const intervalMs = this.options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
    const timeoutMs = this.options.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS;
    this.#heardAt = performance.now();
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => {
      const silentMs = performance.now() - this.#heardAt;
      if (silentMs > timeoutMs) {
        this.options.logger.warn({ category: "UNAVAILABLE", silent_ms: Math.round(silentMs) }, "fan-out listener stalled: its own heartbeat did not come back; reconnecting");
        // end() would wait for a server that does not answer: the socket is cut.
        (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
        this.#scheduleReconnect(client);
        return;
      }
      client.query("select pg_notify($1, '')", [this.#heartbeatChannel]).catch(() => undefined);
    }, intervalMs);
    this.#heartbeat.unref();
  }

  #scheduleReconnect(failed: pg.Client): void {
    if (this.#stopped || this.#client !== failed) return;
    clearInterval(this.#heartbeat);
    this.#client = undefined;
    failed.removeAllListeners("notification");
    void failed.end().catch(() => undefined);
    const retry = () => {
      this.#attempt++;
      this.#timer = setTimeout(() => {
        this.#connect().catch((error: unknown) => {
          this.options.logger.warn({ category: "UNAVAILABLE", attempt: this.#attempt, err: error }, "fan-out listener reconnect failed");
          if (!this.#stopped) retry();
        });
      }, backoffDelay(this.#attempt, this.options.backoff ?? RECONNECT_BACKOFF));
    };
    retry();
  }
}
