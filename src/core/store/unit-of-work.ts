import { DriverException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { classifyDatabaseError, fromDatabaseError } from "./database-errors.js";
import { DatabaseAvailability } from "./database-availability.js";
import { backoffDelay, type BackoffPolicy, ParleyError, sleep } from "../../wire/index.js";
import { inSpan, type LogContext, type Logger, parleyMetrics, recordRetry } from "../../runtime/index.js";
import type { Orm } from "./orm.js";
import type { Attributes, Span } from "@opentelemetry/api";

export interface UnitOfWorkOptions {
  /** What the work is, for logs: "chat.send-batch", "chat.list". */
  readonly label: string;
  /** Context for log lines and errors (rpc, room, user, ...). */
  readonly context?: LogContext;
  /** Attempts in all, the first included (default 4). */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffPolicy;
  /** Extra failures worth retrying whole, beyond the transient database ones. */
  readonly retryIf?: (error: unknown) => boolean;
}

const RETRY_BACKOFF: BackoffPolicy = { initialMs: 20, maxMs: 1_000, multiplier: 2 };

/**
 * Runs request work in its own MikroORM unit of work: a forked
 * EntityManager and one transaction, committed whole or rolled back whole.
 * Transient failures (connection lost, serialization failure, deadlock) are
 * retried with bounded, jittered backoff; the final failure is a ParleyError
 * with its category and the context, for the caller's boundary to log once.
 */
export class UnitOfWork {
  constructor(
    private readonly orm: Orm,
    private readonly logger: Logger,
    /** Whether the database answers, as the writers see it, and how long a write waits for it. */
    readonly availability: DatabaseAvailability = new DatabaseAvailability(),
  ) {
    availability.probeWith(() => this.orm.em.fork().getConnection().execute("select 1"));
  }

  /** Work that writes: one transaction per attempt. */
  transaction<T>(options: UnitOfWorkOptions, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.#traced("db.transaction", options, (em) => em.transactional((tx) => work(tx)));
  }

  /**
   * Work that is one SQL statement: PostgreSQL runs a statement atomically
   * in its own transaction, so wrapping it in BEGIN/COMMIT would only add two
   * round trips. The caller must not do anything after the statement that
   * could fail and need it undone.
   */
  statement<T>(options: UnitOfWorkOptions, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.#traced("db.statement", options, work);
  }

  /** Work that only reads: a fork without an explicit transaction. */
  read<T>(options: UnitOfWorkOptions, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.#traced("db.read", options, work);
  }

  /** One span per unit of work; its database queries are its children, retries its events. */
  #traced<T>(kind: string, options: UnitOfWorkOptions, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return inSpan(
      `${kind} ${options.label}`,
      { lazyAttributes: () => ({ "parley.unit": options.label, ...spanAttributes(options.context) }) },
      (span) => this.#attempt(options, work, span),
      (error) => ParleyError.from(error),
    );
  }

  async #attempt<T>(options: UnitOfWorkOptions, work: (em: EntityManager) => Promise<T>, span: Span): Promise<T> {
    const maxAttempts = options.maxAttempts ?? 4;
    for (let attempt = 1; ; attempt++) {
      // A fresh fork per attempt: nothing from a failed attempt leaks into the next.
      const em = this.orm.em.fork({ clear: true, useContext: false });
      span.setAttribute("parley.attempt", attempt);
      try {
        return await work(em);
      } catch (error) {
        const failure = toParleyError(error).withContext({ ...options.context, unit: options.label, attempt });
        const retry = attempt < maxAttempts && (isTransient(error) || options.retryIf?.(error) === true);
        if (!retry) throw failure;
        recordRetry(span, attempt, failure);
        parleyMetrics().retries.add(1, { component: "core", category: failure.categoryName });
        this.logger.warn(
          { category: failure.categoryName, ...options.context, unit: options.label, attempt, err: error },
          `${options.label}: transient failure, retrying`,
        );
        await sleep(backoffDelay(attempt, options.backoff ?? RETRY_BACKOFF));
      }
    }
  }
}

function isTransient(error: unknown): boolean {
  return isDatabaseError(error) && classifyDatabaseError(error).transient;
}

/**
 * Database failures get a database category; anything else that escapes the
 * work (a bug, a misuse of MikroORM such as the global EntityManager outside
 * a transaction) is INTERNAL, unless the work threw a ParleyError of its own.
 */
function toParleyError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  return isDatabaseError(error) ? fromDatabaseError(error) : ParleyError.from(error);
}

function isDatabaseError(error: unknown): boolean {
  if (error instanceof DriverException) return true;
  const failure = classifyDatabaseError(error);
  return failure.code !== undefined || failure.transient;
}

function spanAttributes(context: LogContext | undefined): Attributes {
  const attributes: Attributes = {};
  for (const [key, value] of Object.entries(context ?? {})) {
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") attributes[`parley.${key}`] = value;
  }
  return attributes;
}
