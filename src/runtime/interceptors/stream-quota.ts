import type { DescMethod } from "@bufbuild/protobuf";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../wire/index.js";
import { ROOMS_RELAY_SCOPE } from "../auth/tokens.js";
import type { ServerInterceptor } from "../grpc/call-context.js";
import { CALLER } from "./auth.js";

/** How many long-lived calls one caller may hold open at once on one server process. */
export interface StreamQuotaLimits {
  /** Streaming calls of any kind (server-streaming and bidirectional), subscriptions included. */
  readonly maxStreamsPerCaller: number;
  /** The subset that follows a log (the methods passed as `subscriptions`). */
  readonly maxSubscriptionsPerCaller: number;
}

/**
 * 64 subscriptions: a service following 64 rooms or inboxes as one user
 * through one core is past any need we know of, and a browser user costs
 * core one (inbox) subscription per bridge connection that follows it —
 * their rooms are followed by the bridge, as a relay. 128 streams leaves
 * as many again for send streams. At the ≈ 66 KiB a stream costs, a
 * caller at both caps holds ≈ 8 MiB, where one client held 5,000 streams.
 */
export const DEFAULT_STREAM_QUOTA: StreamQuotaLimits = { maxStreamsPerCaller: 128, maxSubscriptionsPerCaller: 64 };

/**
 * How soon a refused caller may try again. A slot frees when one of the
 * caller's own streams ends (or, for a vanished peer, when keepalive reaps
 * its connection), which the server cannot predict: a second is a pause,
 * not a promise.
 */
const RETRY_AFTER_MS = 1_000;

/** The environment variables that set the limits, named in every refusal. */
const STREAMS_VARIABLE = "PARLEY_GRPC_MAX_STREAMS_PER_CALLER";
const SUBSCRIPTIONS_VARIABLE = "PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER";

interface Held {
  streams: number;
  subscriptions: number;
}

/**
 * Caps the streaming calls each verified caller (CALLER, so it runs after
 * the auth interceptor) holds open at once; `subscriptions` are counted
 * against both caps. A call past a cap is refused before its handler runs,
 * RATE_LIMITED with a retry delay and a message naming the limit and its
 * variable. Its slot is freed when the call ends however it ends: its
 * handler returns or throws, the client cancels, the deadline passes, the
 * connection drops (grpc-js cancels the call, which aborts its signal).
 * Unary calls are not counted: they end by themselves.
 *
 * Relays (ROOMS_RELAY_SCOPE: the bridge) are exempt. A relay follows one
 * room per room its users follow and carries every user's sends, so its
 * count is the sum of many users' and a per-user number would cut them all
 * off at once; each user's share is capped where the relay serves them,
 * and a relay's connections are bounded by the server's concurrent-stream
 * limit per HTTP/2 connection.
 *
 * Counts are per server process: a caller may hold as many on each core.
 */
export function streamQuotaInterceptor(limits: StreamQuotaLimits, subscriptions: ReadonlySet<DescMethod>): ServerInterceptor {
  const held = new Map<string, Held>();

  const acquire = (user: string, subscription: boolean): (() => void) => {
    const current = held.get(user) ?? { streams: 0, subscriptions: 0 };
    if (subscription && current.subscriptions >= limits.maxSubscriptionsPerCaller) {
      throw refusal(`${user} has ${current.subscriptions} subscriptions open on this server, the most one caller may hold (${SUBSCRIPTIONS_VARIABLE}); end one before opening another`, user, limits.maxSubscriptionsPerCaller);
    }
    if (current.streams >= limits.maxStreamsPerCaller) {
      throw refusal(`${user} has ${current.streams} streaming calls open on this server, the most one caller may hold (${STREAMS_VARIABLE}); end one before opening another`, user, limits.maxStreamsPerCaller);
    }
    current.streams += 1;
    if (subscription) current.subscriptions += 1;
    held.set(user, current);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      current.streams -= 1;
      if (subscription) current.subscriptions -= 1;
      // No entry outlives its last stream: the map holds active callers only.
      if (current.streams === 0) held.delete(user);
    };
  };

  return (next) => async (context) => {
    const caller = context.values.find(CALLER);
    if (context.method.methodKind === "unary" || caller === undefined || caller.scopes.has(ROOMS_RELAY_SCOPE)) {
      await next(context);
      return;
    }
    const release = acquire(caller.user, subscriptions.has(context.method));
    // Freed at the first sign of the end: a cancelled call's handler may
    // take a moment to unwind, and the caller's next stream need not wait.
    context.signal.addEventListener("abort", release, { once: true });
    if (context.signal.aborted) release();
    try {
      await next(context);
    } finally {
      context.signal.removeEventListener("abort", release);
      release();
    }
  };
}

function refusal(message: string, user: string, limit: number): ParleyError {
  return new ParleyError(ErrorCategory.RATE_LIMITED, message, { retryAfterMs: RETRY_AFTER_MS, context: { user, limit } });
}
