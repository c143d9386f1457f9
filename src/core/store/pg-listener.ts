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
}

const RECONNECT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 5_000, multiplier: 1.6 };

/**
 * A dedicated PostgreSQL connection that LISTENs on parley's channels and
 * reconnects (with backoff) whenever it drops. This is how core instances
 * learn about each other's commits without any extra service.
 */
export class PgListener {
  #client: pg.Client | undefined;
  #stopped = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #connectedOnce = false;

  constructor(private readonly options: PgListenerOptions) {}

  /** Connects and listens; resolves once listening (or rejects on the first failure). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  /** The backend pid of the listening connection (tests terminate it). */
  get backendPid(): number | undefined {
    return (this.#client as unknown as { processID?: number } | undefined)?.processID;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.databaseUrl, keepAlive: true });
    client.on("notification", (message) => {
      this.options.onNotification(message.channel, message.payload ?? "");
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
      for (const channel of this.options.channels) await client.query(`listen "${channel}"`);
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
    if (this.#connectedOnce) {
      this.options.logger.info({ channels: this.options.channels }, "fan-out listener reconnected; followers resync");
      this.options.onReconnected();
    }
    this.#connectedOnce = true;
  }

  #scheduleReconnect(failed: pg.Client): void {
    if (this.#stopped || this.#client !== failed) return;
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
