import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EntityManager } from "@mikro-orm/postgresql";
import { WebhookDeliverySchema } from "../../../gen/parley/v1/notifications_pb.js";
import { backoffDelay, type BackoffPolicy, categoryName, ErrorCategory, ParleyError } from "../../wire/index.js";
import { failSpan, logError, type Logger, parleyMetrics, tracer } from "../../runtime/index.js";
import { context as otelContext, SpanKind, trace } from "@opentelemetry/api";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { NOTIFICATION_COLUMNS, notificationFromRow, type NotificationRow } from "./notification-row.js";
import {
  PARLEY_ATTEMPT_HEADER,
  PARLEY_DELIVERY_ID_HEADER,
  PARLEY_SIGNATURE_HEADER,
  signWebhook,
  type WebhookSecret,
} from "./webhook-signature.js";

export interface WebhookDispatcherOptions {
  readonly unitOfWork: UnitOfWork;
  readonly logger: Logger;
  /** PARLEY_WEBHOOK_URL (http or https). */
  readonly url: string;
  /** PARLEY_WEBHOOK_SECRET; several while rotating (see WebhookSecret). */
  readonly secret: WebhookSecret;
  /** How often to look for due deliveries when not kicked (default 500 ms). */
  readonly pollIntervalMs?: number;
  /** Per HTTP attempt, until the response status arrives (default 5000 ms). */
  readonly attemptTimeoutMs?: number;
  /** Attempts in one retry window, the first included (default 100)... */
  readonly maxAttempts?: number;
  /** ...and how long a window lasts (default 24 h): past either, the delivery fails (re-driven when the endpoint answers again). */
  readonly retryHorizonMs?: number;
  /**
   * How long a claimed delivery belongs to this dispatcher (default 30000 ms).
   * Must exceed attemptTimeoutMs: another instance takes it over after this.
   */
  readonly leaseMs?: number;
  /** Delay before retry n (default 1 s, doubling, capped at 1 h; full jitter). */
  readonly backoff?: BackoffPolicy;
  /** Most attempts in flight at once (default 16). */
  readonly batchSize?: number;
  /** How long stop() waits for in-flight attempts (default attemptTimeoutMs + 5000 ms). */
  readonly stopTimeoutMs?: number;
}

/**
 * Retries like Stripe's: quick at first, then about hourly, for a day. An
 * endpoint down for an afternoon gets every delivery when it comes back.
 */
export const DEFAULT_WEBHOOK_BACKOFF: BackoffPolicy = { initialMs: 1_000, maxMs: 3_600_000, multiplier: 2 };
const DEFAULT_WEBHOOK_MAX_ATTEMPTS = 100;
const DEFAULT_WEBHOOK_RETRY_HORIZON_MS = 24 * 3_600_000;

/** What one HTTP answer means for the delivery. */
export type WebhookVerdict = "delivered" | "retry" | "failed";

/**
 * HTTP status → verdict; the one place that decides retryability of an answer.
 * 3xx counts as failed: redirects are not followed, since a signed request
 * should not be re-sent somewhere the operator did not configure.
 */
export function webhookVerdictForStatus(status: number): WebhookVerdict {
  if (status >= 200 && status <= 299) return "delivered";
  if (status === 429 || status >= 500) return "retry";
  return "failed";
}

/** A claimed delivery with its notification, as the claim statement returns it. */
interface ClaimedRow extends NotificationRow {
  delivery_id: string;
  attempt: number;
  /** How long the current retry window has been open (ms). */
  window_ms: number;
  /** Attempts made before it. */
  retry_base: number;
}

/** What one attempt came to, before the budget decides retry or failed. */
interface AttemptResult {
  readonly startedAt: Date;
  readonly durationMs: number;
  readonly statusCode: number | undefined;
  readonly verdict: WebhookVerdict;
  /** TIMEOUT or DELIVERY; undefined when delivered. */
  readonly category: ErrorCategory | undefined;
  readonly error: string | undefined;
}

/**
 * Claims due deliveries and leases them in one statement. SKIP LOCKED lets
 * several core instances claim side by side without waiting or taking the
 * same row; an expired lease (a crashed instance) makes a row due again.
 * `due` is materialized so the LIMIT'ed, locked selection runs exactly once
 * (an `in (subquery)` may be re-scanned by some plans and lock other rows).
 * `attempts` goes up at the claim, so each claim has its own attempt number,
 * which later fences the outcome update against a takeover.
 */
const CLAIM_SQL = `
with due as materialized (
  select id from webhook_deliveries
   where status = 'pending' and next_attempt_at <= now()
     and (lease_until is null or lease_until < now())
   order by next_attempt_at
   limit ?
   for update skip locked
),
claimed as (
  update webhook_deliveries d
     set lease_until = now() + ?::double precision * interval '1 millisecond',
         attempts = d.attempts + 1,
         updated_at = now()
    from due where d.id = due.id
  returning d.id as delivery_id, d.attempts as attempt, d.notification_id, d.retry_from, d.retry_base
),
started as (
  insert into webhook_attempts (delivery_id, attempt, started_at, duration_ms, outcome)
  select delivery_id, attempt, now(), 0, 'in_flight' from claimed
  on conflict (delivery_id, attempt) do nothing
)
select c.delivery_id, c.attempt, c.retry_base,
       (extract(epoch from now() - c.retry_from) * 1000)::float8 as window_ms, ${NOTIFICATION_COLUMNS}
  from claimed c join notifications n on n.id = c.notification_id`;

// Each outcome writes the attempt row and moves the delivery in one statement
// (so in one transaction). `status = 'pending'` leaves a delivery cancelled
// meanwhile alone; `attempts = ?` (retry, failed) leaves alone one that
// another instance took over after our lease expired. A 2xx is recorded
// even then: the receiver has it, and re-sending it helps nobody.
const RECORD_ATTEMPT = `
with attempt as (
  insert into webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, outcome, error_category, error)
  values (?, ?, ?::timestamptz, ?, ?, ?, ?, ?)
  on conflict (delivery_id, attempt) do update
     set started_at = excluded.started_at, duration_ms = excluded.duration_ms, status_code = excluded.status_code,
         outcome = excluded.outcome, error_category = excluded.error_category, error = excluded.error
)`;

/**
 * Failed deliveries whose last attempt was not refused by the receiver (it
 * timed out, could not connect, or answered 429 or 5xx: the retry budget ran
 * out, not the receiver's patience) open a new retry window, due now.
 * `all` re-drives every failed one (an operator's decision).
 */
const REDRIVE_SQL = (all: boolean) => `
update webhook_deliveries d
   set status = 'pending', next_attempt_at = now(), retry_from = now(), retry_base = d.attempts,
       lease_until = null, updated_at = now()
 where d.status = 'failed'${
   all
     ? ""
     : `
   and not exists (
     select 1 from webhook_attempts a
      where a.delivery_id = d.id and a.attempt = d.attempts
        and a.status_code between 300 and 499 and a.status_code <> 429)`
 }
returning d.id`;

const MARK_DELIVERED_SQL = `${RECORD_ATTEMPT}
update webhook_deliveries set status = 'delivered', lease_until = null, last_error_category = null, updated_at = now()
 where id = ? and status = 'pending'
returning id`;

const MARK_RETRY_SQL = `${RECORD_ATTEMPT}
update webhook_deliveries
   set next_attempt_at = now() + ?::double precision * interval '1 millisecond',
       lease_until = null, last_error_category = ?, updated_at = now()
 where id = ? and status = 'pending' and attempts = ?
returning id`;

const MARK_FAILED_SQL = `${RECORD_ATTEMPT}
update webhook_deliveries set status = 'failed', lease_until = null, last_error_category = ?, updated_at = now()
 where id = ? and status = 'pending' and attempts = ?
returning id`;

const ERROR_TEXT_LIMIT = 500;
const USER_AGENT = "parley-webhooks/1";

/**
 * Delivers the webhook outbox (`webhook_deliveries`) to one endpoint. All
 * state is in the database, so pending work survives restarts and any number
 * of instances can run side by side; delivery is at-least-once (a receiver
 * drops repeats by delivery id). Every attempt is recorded in
 * `webhook_attempts` in the transaction that moves the delivery on.
 */
export class WebhookDispatcher {
  readonly #options: WebhookDispatcherOptions;
  readonly #logger: Logger;
  readonly #url: string;
  readonly #pollIntervalMs: number;
  readonly #attemptTimeoutMs: number;
  readonly #maxAttempts: number;
  readonly #retryHorizonMs: number;
  readonly #leaseMs: number;
  readonly #backoff: BackoffPolicy;
  readonly #batchSize: number;
  readonly #stopTimeoutMs: number;
  readonly #inFlight = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #kicked = false;
  #wake: (() => void) | undefined;
  /**
   * Deliveries may have failed for want of an answer since the endpoint
   * last took one (true at start: a previous run may have left some): the
   * next delivered attempt re-drives them.
   */
  #redriveDue = true;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: "webhooks" });
    this.#url = checkedUrl(options.url);
    this.#pollIntervalMs = positive("pollIntervalMs", options.pollIntervalMs ?? 500);
    this.#attemptTimeoutMs = positive("attemptTimeoutMs", options.attemptTimeoutMs ?? 5_000);
    this.#maxAttempts = positive("maxAttempts", options.maxAttempts ?? DEFAULT_WEBHOOK_MAX_ATTEMPTS);
    this.#retryHorizonMs = positive("retryHorizonMs", options.retryHorizonMs ?? DEFAULT_WEBHOOK_RETRY_HORIZON_MS);
    this.#leaseMs = positive("leaseMs", options.leaseMs ?? 30_000);
    this.#backoff = options.backoff ?? DEFAULT_WEBHOOK_BACKOFF;
    this.#batchSize = positive("batchSize", options.batchSize ?? 16);
    this.#stopTimeoutMs = positive("stopTimeoutMs", options.stopTimeoutMs ?? this.#attemptTimeoutMs + 5_000);
    // A lease shorter than an attempt would let another instance send the
    // same delivery while this one still waits for the answer.
    if (this.#leaseMs <= this.#attemptTimeoutMs) {
      throw new ParleyError(ErrorCategory.VALIDATION, "leaseMs must exceed attemptTimeoutMs", { field: "leaseMs" });
    }
  }

  /** Starts the loop. Once: later calls, and calls after stop(), do nothing. */
  start(): void {
    if (this.#loop !== undefined || this.#stopping) return;
    this.#loop = this.#run();
  }

  /** Looks for due deliveries now instead of at the next poll (e.g. right after scheduling one). */
  kick(): void {
    this.#kicked = true;
    this.#wake?.();
  }

  /**
   * Stops claiming and waits, at most stopTimeoutMs, for the attempts in
   * flight to be answered and recorded. An attempt still unrecorded then
   * keeps its lease, and any instance retries it once the lease expires.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const loop = this.#loop ?? Promise.resolve();
    const drained = loop.then(() => Promise.allSettled([...this.#inFlight]));
    if (!(await within(drained, this.#stopTimeoutMs))) {
      this.#logger.warn(
        { category: "TIMEOUT", in_flight: this.#inFlight.size, stop_timeout_ms: this.#stopTimeoutMs },
        "webhook dispatcher stopped with attempts in flight; they are retried after their lease expires",
      );
    }
  }

  async #run(): Promise<void> {
    let claimFailures = 0;
    while (!this.#stopping) {
      this.#kicked = false;
      const free = this.#batchSize - this.#inFlight.size;
      let claimed = 0;
      if (free > 0) {
        try {
          const rows = await this.#claim(free);
          claimed = rows.length;
          claimFailures = 0;
          for (const row of rows) this.#track(this.#attempt(row));
        } catch (error) {
          claimFailures++;
          logError(this.#logger, ParleyError.from(error), { failures: claimFailures }, "claiming webhook deliveries failed");
        }
      }
      // A full claim means more may be due: go again without waiting.
      if (free > 0 && claimed === free) continue;
      await this.#idle(this.#pollDelay(claimFailures));
    }
  }

  /** The poll interval; while the database fails, longer, instead of logging every poll. */
  #pollDelay(claimFailures: number): number {
    if (claimFailures === 0) return this.#pollIntervalMs;
    const policy = { initialMs: this.#pollIntervalMs, maxMs: 30_000, multiplier: 2 };
    return Math.max(this.#pollIntervalMs, backoffDelay(claimFailures, policy));
  }

  /** Resolves after `ms`, or at once when kicked or stopping. */
  #idle(ms: number): Promise<void> {
    if (this.#kicked || this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #track(attempt: Promise<void>): void {
    this.#inFlight.add(attempt);
    void attempt.finally(() => {
      const wasFull = this.#inFlight.size >= this.#batchSize;
      this.#inFlight.delete(attempt);
      // A slot opened: claim into it now rather than at the next poll.
      if (wasFull) this.kick();
    });
  }

  #claim(limit: number): Promise<ClaimedRow[]> {
    return this.#options.unitOfWork.transaction({ label: "webhooks.claim" }, (em) =>
      em.execute<ClaimedRow[]>(CLAIM_SQL, [limit, this.#leaseMs]),
    );
  }

  /** One attempt, start to record. Never rejects: failures are logged here. */
  async #attempt(row: ClaimedRow): Promise<void> {
    const context = { delivery_id: row.delivery_id, notification_id: row.id, recipient: row.recipient_id, attempt: row.attempt };
    // One span per attempt; the log lines written during it carry its trace id.
    const span = tracer().startSpan("webhook.attempt", {
      kind: SpanKind.CLIENT,
      attributes: { "parley.delivery_id": row.delivery_id, "parley.notification_id": row.id, "parley.attempt": row.attempt },
    });
    await otelContext.with(trace.setSpan(otelContext.active(), span), async () => {
      try {
        const result = await this.#send(row);
        if (result.statusCode !== undefined) span.setAttribute("http.response.status_code", result.statusCode);
        if (result.category !== undefined) failSpan(span, new ParleyError(result.category, result.error ?? "webhook attempt failed"));
        parleyMetrics().webhookAttempts.add(1, { outcome: result.verdict });
        await this.#record(row, result, context);
      } catch (error) {
        // Building the body or recording failed. The lease expires and the
        // delivery is tried again (possibly re-sending one the receiver has).
        failSpan(span, ParleyError.from(error));
        logError(this.#logger, ParleyError.from(error), context, "webhook attempt could not be recorded; retried after the lease expires");
      }
    });
    span.end();
  }

  async #send(row: ClaimedRow): Promise<AttemptResult> {
    const startedAt = new Date();
    const body = toJsonString(
      WebhookDeliverySchema,
      create(WebhookDeliverySchema, {
        deliveryId: row.delivery_id,
        attempt: row.attempt,
        sentAt: timestampFromDate(startedAt),
        notification: notificationFromRow(row),
      }),
    );
    const signature = signWebhook(this.#options.secret, body, Math.floor(startedAt.getTime() / 1000));
    const t0 = performance.now();
    const elapsed = () => Math.round(performance.now() - t0);
    try {
      const response = await fetch(this.#url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          [PARLEY_SIGNATURE_HEADER]: signature,
          [PARLEY_DELIVERY_ID_HEADER]: row.delivery_id,
          [PARLEY_ATTEMPT_HEADER]: String(row.attempt),
        },
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.#attemptTimeoutMs),
      });
      const durationMs = elapsed();
      // The status is the whole answer; dropping the body frees the connection.
      void response.body?.cancel().catch(() => undefined);
      const verdict = webhookVerdictForStatus(response.status);
      const failed = verdict !== "delivered";
      return {
        startedAt,
        durationMs,
        statusCode: response.status,
        verdict,
        category: failed ? ErrorCategory.DELIVERY : undefined,
        error: failed ? truncate(`HTTP ${response.status} ${response.statusText}`.trim()) : undefined,
      };
    } catch (error) {
      const timedOut = error instanceof Error && error.name === "TimeoutError";
      return {
        startedAt,
        durationMs: elapsed(),
        statusCode: undefined,
        verdict: "retry",
        category: timedOut ? ErrorCategory.TIMEOUT : ErrorCategory.DELIVERY,
        error: truncate(timedOut ? `no response within ${this.#attemptTimeoutMs} ms` : describeFetchError(error)),
      };
    }
  }

  async #record(row: ClaimedRow, result: AttemptResult, context: Record<string, string | number>): Promise<void> {
    const retryInMs = backoffDelay(row.attempt - row.retry_base, this.#backoff);
    // The budget — attempts and horizon of the retry window — turns a
    // retryable answer into a failure, re-driven when the endpoint answers again.
    const spent = row.attempt - row.retry_base >= this.#maxAttempts || row.window_ms + retryInMs > this.#retryHorizonMs;
    const outcome: WebhookVerdict = result.verdict === "retry" && spent ? "failed" : result.verdict;
    const attemptParams = [
      row.delivery_id,
      row.attempt,
      result.startedAt.toISOString(),
      result.durationMs,
      result.statusCode ?? null,
      outcome,
      result.category === undefined ? null : categoryName(result.category),
      result.error ?? null,
    ];
    const delivery = categoryName(ErrorCategory.DELIVERY);
    const updated = await this.#options.unitOfWork.transaction(
      { label: "webhooks.record", context },
      (em: EntityManager) => {
        switch (outcome) {
          case "delivered":
            return em.execute<{ id: string }[]>(MARK_DELIVERED_SQL, [...attemptParams, row.delivery_id]);
          case "retry":
            return em.execute<{ id: string }[]>(MARK_RETRY_SQL, [...attemptParams, retryInMs, delivery, row.delivery_id, row.attempt]);
          case "failed":
            return em.execute<{ id: string }[]>(MARK_FAILED_SQL, [...attemptParams, delivery, row.delivery_id, row.attempt]);
        }
      },
    );
    this.#log(outcome, result, { ...context, status_code: result.statusCode, duration_ms: result.durationMs }, retryInMs, updated.length > 0);
    if (outcome === "failed" && result.verdict === "retry") this.#redriveDue = true;
    if (outcome === "delivered" && this.#redriveDue) {
      this.#redriveDue = false;
      await this.#redriveAfterRecovery(context);
    }
  }

  /** The endpoint answered again: the deliveries that failed for want of an answer get a new retry window. */
  async #redriveAfterRecovery(context: Record<string, string | number>): Promise<void> {
    try {
      const count = await redriveWebhooks(this.#options.unitOfWork, { all: false });
      if (count > 0) {
        this.#logger.info({ ...context, redriven: count }, "webhook endpoint answers again; failed deliveries re-driven");
        this.kick();
      }
    } catch (error) {
      this.#redriveDue = true;
      logError(this.#logger, ParleyError.from(error), context, "re-driving failed webhook deliveries failed; tried again after the next delivery");
    }
  }

  #log(outcome: WebhookVerdict, result: AttemptResult, context: Record<string, string | number | undefined>, retryInMs: number, applied: boolean): void {
    if (!applied) {
      this.#logger.info({ ...context, outcome }, "webhook attempt recorded; the delivery was cancelled or taken over meanwhile and is left alone");
      return;
    }
    switch (outcome) {
      case "delivered":
        this.#logger.info(context, "webhook delivered");
        return;
      case "retry":
        this.#logger.warn(
          { category: categoryName(result.category ?? ErrorCategory.DELIVERY), ...context, retry_in_ms: Math.round(retryInMs), error: result.error },
          "webhook attempt failed; retrying",
        );
        return;
      case "failed":
        logError(
          this.#logger,
          new ParleyError(ErrorCategory.DELIVERY, `webhook delivery failed: ${result.error ?? "unknown error"}`, { retryable: false }),
          { ...context, attempt_category: result.category === undefined ? undefined : categoryName(result.category) },
        );
        return;
    }
  }
}

/**
 * Gives failed deliveries a new retry window, due now; returns how many.
 * Without `all`, only those whose last attempt got no answer, a 429 or a
 * 5xx (the dispatcher does this by itself when the endpoint answers again);
 * with it, every failed one (`parley webhooks redrive --all`).
 */
export async function redriveWebhooks(unitOfWork: UnitOfWork, options: { readonly all: boolean }): Promise<number> {
  const rows = await unitOfWork.transaction({ label: "webhooks.redrive" }, (em) => em.execute<{ id: string }[]>(REDRIVE_SQL(options.all)));
  return rows.length;
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    return await Promise.race([promise.then(() => true), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** fetch reports every network failure as "fetch failed"; the reason is in `cause`. */
function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${error.message}: ${typeof code === "string" ? `${code} ` : ""}${cause.message}`;
  }
  return error.message;
}

function truncate(text: string): string {
  return text.length <= ERROR_TEXT_LIMIT ? text : `${text.slice(0, ERROR_TEXT_LIMIT - 1)}…`;
}

function checkedUrl(url: string): string {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (parsed?.protocol !== "http:" && parsed?.protocol !== "https:") {
    throw new ParleyError(ErrorCategory.VALIDATION, `webhook url must be an http(s) URL, got ${JSON.stringify(url)}`, { field: "url" });
  }
  return parsed.toString();
}

function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new ParleyError(ErrorCategory.VALIDATION, `${field} must be a positive number, got ${value}`, { field });
  }
  return value;
}
