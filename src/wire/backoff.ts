/** Exponential backoff with full jitter; a pure function of the attempt. */
export interface BackoffPolicy {
  /** Delay cap for the first retry, in ms. */
  readonly initialMs: number;
  /** Largest delay cap, in ms. */
  readonly maxMs: number;
  /** Growth of the cap per attempt (grpc-js uses 1.6). */
  readonly multiplier: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 5_000, multiplier: 1.6 };

/**
 * Retrying a peer that is expected back within seconds (the bridge's calls,
 * send stream and follows to core across a core restart): short at first and
 * capped low, because a caller that waits long is a user who sees nothing.
 * The one policy for that purpose.
 */
export const PEER_RETRY_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 2_000, multiplier: 1.6 };

/**
 * The delay before retry number `attempt` (1 for the first retry): uniformly
 * random in [0, min(maxMs, initialMs * multiplier^(attempt-1))] ("full
 * jitter"), so that many clients failing together do not retry together.
 * `random` is injectable so tests can check the bounds.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  return random() * backoffCap(attempt, policy);
}

/** The upper bound of backoffDelay for this attempt. */
export function backoffCap(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const exponent = Math.max(0, attempt - 1);
  return Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** exponent);
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
