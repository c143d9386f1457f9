import { performance } from "node:perf_hooks";
import type { EntityManager } from "@mikro-orm/postgresql";
import { type Context, context, type Span, type SpanContext, trace } from "@opentelemetry/api";
import { failSpan, linkTo, tracer } from "../../runtime/index.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { classifyDatabaseError } from "./database-errors.js";
import { backoffCap, type BackoffPolicy, type ErrorContext, ParleyError, sleep } from "../../wire/index.js";
import type { UnitOfWork } from "./unit-of-work.js";

/** The wait before trying an unreachable database again: 50 ms, doubling up to 1 s, so that a database that is back is found within a second. */
const OUTAGE_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 1_000, multiplier: 2 };
/** retry_after of a write refused because too many wait for the database already. */
const HELD_FULL_RETRY_AFTER_MS = 1_000;

/** A failure of the database as a whole (it could not be reached), not of the batch's data. */
function isOutage(failure: ParleyError): boolean {
  return failure.category === ErrorCategory.UNAVAILABLE && classifyDatabaseError(failure.cause ?? failure).transient;
}

/** One command's answer from a batch: its value, or its own error. */
export type ItemResult<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: ParleyError };

export interface GroupCommitSpec<C, R> {
  /** Names the unit of work in logs ("chat.send-batch"). */
  readonly label: string;
  /** Most commands per transaction (default 512). */
  readonly maxBatch?: number;
  /**
   * Most total weight per transaction, where a command weighs `weightOf`
   * (e.g. its rows); a command heavier than this still goes alone.
   */
  readonly maxWeight?: number;
  readonly weightOf?: (command: C) => number;
  /**
   * The batch is stored by a single statement (atomic by itself): commit
   * without BEGIN/COMMIT round trips. Only when nothing after the statement
   * can fail in a way that must undo it.
   */
  readonly singleStatement?: boolean;
  /** Stores a batch inside the transaction; one result per command, in order. */
  readonly store: (em: EntityManager, batch: readonly C[]) => Promise<ItemResult<R>[]>;
  /** Called after each commit with the successful results, in batch order. */
  readonly committed?: (results: readonly R[], origin: SpanContext) => void;
  /** Failures worth retrying the whole transaction for, beyond the transient ones. */
  readonly retryIf?: (error: unknown) => boolean;
  /** Log and error context of one command. */
  readonly contextOf: (command: C) => ErrorContext;
}

interface Pending<C, R> {
  readonly command: C;
  /** When the command is refused if the database has not taken it by then (performance.now() ms). */
  readonly deadline: number;
  /** The caller's trace context: the batch span continues the first, links the rest. */
  readonly context: Context;
  readonly resolve: (value: R) => void;
  readonly reject: (error: ParleyError) => void;
}

/**
 * Group commit: commands that arrive while a transaction is running are
 * stored together in the next one, so the per-transaction cost (~2 ms of
 * ORM work and round trips) is shared. Batches commit one after another, in
 * arrival order, so a caller's commands keep their order.
 *
 * Each command still gets its own answer: a batch that fails because of its
 * data (a constraint, a trigger) is split and retried in halves until the bad
 * command stands alone and fails with its own error. A database that cannot
 * be reached holds the queue (see #hold): the commands wait, in order, up to
 * the outage horizon, and core reports NOT_SERVING meanwhile.
 */
export class GroupCommitter<C, R> {
  readonly #queue: Pending<C, R>[] = [];
  readonly #maxBatch: number;
  #running: Promise<void> | undefined;
  /** Batches in a row that found the database unreachable (the backoff grows with them). */
  #outageAttempts = 0;
  /** Aborted by stopHolding(): what the database does not take at once is refused, and no wait runs on. */
  readonly #stopping = new AbortController();

  constructor(
    private readonly unitOfWork: UnitOfWork,
    private readonly spec: GroupCommitSpec<C, R>,
  ) {
    this.#maxBatch = spec.maxBatch ?? 512;
  }

  submit(command: C): Promise<R> {
    const { availability } = this.unitOfWork;
    if (!availability.available && this.#queue.length >= availability.policy.maxHeld) {
      return Promise.reject(
        new ParleyError(ErrorCategory.UNAVAILABLE, `${this.spec.label}: the database is unreachable and ${this.#queue.length} writes wait for it already; not stored`, {
          retryAfterMs: HELD_FULL_RETRY_AFTER_MS,
          context: this.spec.contextOf(command),
        }),
      );
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ command, deadline: performance.now() + availability.policy.horizonMs, context: context.active(), resolve, reject });
      this.#startDrain();
    });
  }

  /**
   * From now on nothing waits for an unreachable database: what is held is
   * refused (UNAVAILABLE) at the next failed attempt, which comes at once
   * (core is stopping; the callers resend elsewhere, with their keys).
   */
  stopHolding(): void {
    this.#stopping.abort();
  }

  #startDrain(): void {
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
      // Submitted between the drain's last look at the queue and now (from
      // a continuation of its last batch): nobody else would commit it.
      if (this.#queue.length > 0) this.#startDrain();
    });
  }

  /** Resolves when everything submitted so far has been answered. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    // Let the commands of the current tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#queue.length > 0) {
      await this.#commit(this.#queue.splice(0, this.#nextBatchSize()));
    }
  }

  #nextBatchSize(): number {
    const { maxWeight, weightOf } = this.spec;
    const limit = Math.min(this.#maxBatch, this.#queue.length);
    if (maxWeight === undefined || weightOf === undefined) return limit;
    let weight = 0;
    for (let count = 0; count < limit; count++) {
      const pending = this.#queue[count];
      if (pending === undefined) return count;
      weight += weightOf(pending.command);
      if (weight > maxWeight) return Math.max(1, count);
    }
    return limit;
  }

  async #commit(batch: Pending<C, R>[]): Promise<void> {
    // The batch span is a child of the first caller's span and links every
    // other caller's: one transaction serves many traces.
    const parent = batch[0]?.context ?? context.active();
    const span = tracer().startSpan(`group-commit ${this.spec.label}`, {}, parent);
    // A link per caller, only on a span that records them (added after
    // sampling: the standard samplers do not look at links).
    if (span.isRecording()) {
      span.setAttribute("parley.batch.size", batch.length);
      span.addLinks(batch.slice(1).flatMap((pending) => linkTo(trace.getSpanContext(pending.context))));
    }
    try {
      await context.with(trace.setSpan(parent, span), () => this.#commitTraced(batch, span));
    } finally {
      span.end();
    }
  }

  async #commitTraced(batch: Pending<C, R>[], span: Span): Promise<void> {
    let results: ItemResult<R>[];
    try {
      const run = this.spec.singleStatement === true ? this.unitOfWork.statement.bind(this.unitOfWork) : this.unitOfWork.transaction.bind(this.unitOfWork);
      results = await run(
        {
          label: this.spec.label,
          context: batch.length === 1 && batch[0] ? this.spec.contextOf(batch[0].command) : { batch_size: batch.length },
          retryIf: this.spec.retryIf,
        },
        (em) => this.spec.store(em, batch.map((pending) => pending.command)),
      );
    } catch (error) {
      const failure = ParleyError.from(error);
      failSpan(span, failure);
      if (isOutage(failure)) await this.#hold(batch, failure);
      else await this.#recover(batch, failure);
      return;
    }
    this.#outageAttempts = 0;
    this.unitOfWork.availability.up();
    const committed: R[] = [];
    batch.forEach((pending, index) => {
      const result = results[index];
      if (result === undefined) {
        pending.reject(new ParleyError(ErrorCategory.INTERNAL, `${this.spec.label}: no result for batch entry ${index}`));
      } else if (result.ok) {
        committed.push(result.value);
        pending.resolve(result.value);
      } else {
        pending.reject(result.error.withContext(this.spec.contextOf(pending.command)));
      }
    });
    span.setAttribute("parley.batch.committed", committed.length);
    if (committed.length > 0) this.spec.committed?.(committed, span.spanContext());
  }

  /**
   * The database could not be reached (the unit of work's quick retries are
   * spent): the batch goes back to the head of the queue, ahead of
   * everything submitted after it, and is tried again after a backoff
   * (50 ms growing to 1 s, so that a database back is found within a
   * second). Once the oldest held command has waited the whole horizon,
   * every held command is refused UNAVAILABLE together — the outage is too
   * long to hide, and refusing only the oldest would let a later one be
   * stored before the earlier one is resent. The refusal is retryable, and
   * the outcome is unknown if a COMMIT was under way when the connection
   * dropped: a resend with the same key is answered with what was stored,
   * or stored now.
   */
  async #hold(batch: Pending<C, R>[], failure: ParleyError): Promise<void> {
    const { availability } = this.unitOfWork;
    availability.down();
    this.#outageAttempts++;
    const now = performance.now();
    const oldest = batch[0];
    if (this.#stopping.signal.aborted || (oldest !== undefined && oldest.deadline <= now)) {
      const waited = oldest === undefined ? 0 : Math.round(availability.policy.horizonMs - (oldest.deadline - now));
      for (const pending of [...batch, ...this.#queue.splice(0)]) {
        pending.reject(
          new ParleyError(
            ErrorCategory.UNAVAILABLE,
            `${this.spec.label}: the database has been unreachable for ${waited} ms; resend with the same key (the outcome is unknown if the connection dropped during the commit)`,
            { cause: failure, context: this.spec.contextOf(pending.command) },
          ),
        );
      }
      return;
    }
    this.#queue.unshift(...batch);
    // Cut short by stopHolding(): the next attempt refuses what is held.
    await sleep(backoffCap(this.#outageAttempts, OUTAGE_BACKOFF), this.#stopping.signal).catch(() => undefined);
  }

  async #recover(batch: Pending<C, R>[], error: ParleyError): Promise<void> {
    // A transient failure (deadlock, serialization) was already retried whole
    // by the unit of work; splitting would only multiply the retries.
    const dataDependent =
      (error.category === ErrorCategory.PERSISTENCE || error.category === ErrorCategory.VALIDATION) &&
      !classifyDatabaseError(error.cause).transient;
    if (batch.length === 1 || !dataDependent) {
      for (const pending of batch) pending.reject(error.withContext(this.spec.contextOf(pending.command)));
      return;
    }
    const middle = Math.ceil(batch.length / 2);
    await this.#commit(batch.slice(0, middle));
    await this.#commit(batch.slice(middle));
  }
}
