// Which refused sends the client resends, and after how long
// (src/client/send-retry.ts): checked by its bounds, with the random
// source at both ends.
import { describe, expect, it } from "vitest";
import { ParleyClientError } from "../../src/client/client-error.js";
import { MAX_RETRY_AFTER_MS, MIN_RETRY_AFTER_MS, SEND_RETRY_BACKOFF, sendRetry } from "../../src/client/send-retry.js";

const error = (category: string, options: { retryable?: boolean; retryAfterMs?: number } = {}) => new ParleyClientError(category, "refused", options);
const lowest = () => 0;
const highest = () => 0.999_999;

describe("sendRetry", () => {
  it("resends RATE_LIMITED after retry_after, at least MIN_RETRY_AFTER_MS and at most MAX_RETRY_AFTER_MS, pacing by retry_after itself", () => {
    expect(sendRetry(error("RATE_LIMITED", { retryable: true, retryAfterMs: 180 }), 1)).toEqual({ kind: "resend", delayMs: 180, paceMs: 180 });
    expect(sendRetry(error("RATE_LIMITED", { retryable: true, retryAfterMs: 1 }), 1)).toEqual({ kind: "resend", delayMs: MIN_RETRY_AFTER_MS, paceMs: 1 });
    expect(sendRetry(error("RATE_LIMITED", { retryable: true, retryAfterMs: 3_600_000 }), 1)).toEqual({ kind: "resend", delayMs: MAX_RETRY_AFTER_MS, paceMs: MAX_RETRY_AFTER_MS });
  });

  it("without retry_after, RATE_LIMITED waits a backoff of at least MIN_RETRY_AFTER_MS", () => {
    expect(sendRetry(error("RATE_LIMITED", { retryable: true }), 1, SEND_RETRY_BACKOFF, lowest)).toEqual({ kind: "resend", delayMs: MIN_RETRY_AFTER_MS, paceMs: MIN_RETRY_AFTER_MS });
    const late = sendRetry(error("RATE_LIMITED", { retryable: true }), 20, SEND_RETRY_BACKOFF, highest);
    expect(late.kind === "resend" ? late.delayMs : 0).toBeCloseTo(SEND_RETRY_BACKOFF.maxMs, -1);
  });

  it("rejects a RATE_LIMITED the server marked not retryable", () => {
    expect(sendRetry(error("RATE_LIMITED", { retryable: false, retryAfterMs: 100 }), 1)).toEqual({ kind: "reject" });
  });

  it("resends UNAVAILABLE and TIMEOUT (even unmarked) and anything marked retryable with full jitter, growing per attempt up to the cap", () => {
    for (const refusal of [error("UNAVAILABLE"), error("TIMEOUT"), error("PERSISTENCE", { retryable: true }), error("DELIVERY", { retryable: true })]) {
      expect(sendRetry(refusal, 1, SEND_RETRY_BACKOFF, lowest)).toEqual({ kind: "resend", delayMs: 0, paceMs: undefined });
      const caps = [1, 2, 3, 30].map((attempt) => {
        const decision = sendRetry(refusal, attempt, SEND_RETRY_BACKOFF, highest);
        return decision.kind === "resend" ? Math.round(decision.delayMs) : -1;
      });
      expect(caps).toEqual([250, 400, 640, SEND_RETRY_BACKOFF.maxMs]);
    }
  });

  it("an UNAVAILABLE with retry_after waits that long, within the bounds", () => {
    expect(sendRetry(error("UNAVAILABLE", { retryable: true, retryAfterMs: 1_500 }), 4)).toEqual({ kind: "resend", delayMs: 1_500, paceMs: undefined });
    expect(sendRetry(error("UNAVAILABLE", { retryable: true, retryAfterMs: 0 }), 1)).toEqual({ kind: "resend", delayMs: MIN_RETRY_AFTER_MS, paceMs: undefined });
  });

  it("rejects everything not retryable: VALIDATION, PERMISSION_DENIED, UNAUTHENTICATED, INTERNAL, PERSISTENCE marked not retryable", () => {
    for (const category of ["VALIDATION", "PERMISSION_DENIED", "UNAUTHENTICATED", "INTERNAL", "PERSISTENCE", "SERIALIZATION", "ROUTING"]) {
      expect(sendRetry(error(category), 1)).toEqual({ kind: "reject" });
    }
  });
});
