// Which refused sends the client resends, and after how long: a pure
// function of the error and the attempt, so its bounds can be checked
// without timers.
import { backoffDelay, type BackoffPolicy } from "../wire/index.js";
import type { ParleyClientError } from "./client-error.js";

/** Backoff of a send refused as UNAVAILABLE, TIMEOUT or otherwise retryable without a `retry_after`. */
export const SEND_RETRY_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 10_000, multiplier: 1.6 };

/** The least wait before resending after a `retry_after`: one of 0 or 1 ms would resend at once, again and again. */
export const MIN_RETRY_AFTER_MS = 100;

/** The most: a longer `retry_after` (a server's mistake, or an hour) is waited out this long at a time. */
export const MAX_RETRY_AFTER_MS = 30_000;

/** What becomes of a send the server refused. */
export type SendRetry =
  | { readonly kind: "reject" }
  /**
   * Resent after `delayMs`. `paceMs` is set when the user's rate was the
   * reason: the `retry_after` itself (at most MAX_RETRY_AFTER_MS), the
   * server's spacing of sends as far as it tells; the outbox then writes
   * one send at a time, no closer together than the largest seen.
   */
  | { readonly kind: "resend"; readonly delayMs: number; readonly paceMs: number | undefined };

/**
 * Decides a refused send's fate on its `attempt`-th refusal (1 for the
 * first). RATE_LIMITED is resent after `retry_after` (within
 * [MIN_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS]; without one, after the
 * backoff) unless the server marked it not retryable; an error marked
 * retryable, or UNAVAILABLE or TIMEOUT (the outcome is unknown: the same
 * client_msg_id learns it), is resent after its `retry_after` or a backoff
 * with full jitter. Everything else (VALIDATION, PERMISSION_DENIED, ...)
 * is rejected.
 */
export function sendRetry(error: ParleyClientError, attempt: number, backoff: BackoffPolicy = SEND_RETRY_BACKOFF, random: () => number = Math.random): SendRetry {
  const rateLimited = error.category === "RATE_LIMITED";
  const retryable = rateLimited ? error.retryable : error.retryable || error.category === "UNAVAILABLE" || error.category === "TIMEOUT";
  if (!retryable) return { kind: "reject" };
  const after = error.retryAfterMs;
  const delayMs = after === undefined ? backoffDelay(attempt, backoff, random) : Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, after));
  if (!rateLimited) return { kind: "resend", delayMs, paceMs: undefined };
  return { kind: "resend", delayMs: Math.max(MIN_RETRY_AFTER_MS, delayMs), paceMs: Math.min(MAX_RETRY_AFTER_MS, after ?? MIN_RETRY_AFTER_MS) };
}
