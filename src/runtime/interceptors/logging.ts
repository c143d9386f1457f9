import { CALLER } from "./auth.js";
import { ErrorCategory, ParleyError } from "../../wire/index.js";
import { type Logger, logError } from "../logger.js";
import { parleyMetrics } from "../telemetry/metrics.js";
import type { ServerInterceptor } from "../grpc/call-context.js";

/**
 * Logs every failed call exactly once, with its category and context (rpc,
 * user, peer, and whatever the error carries: room, client_msg_id, attempt).
 * Outermost interceptor, so authentication failures are logged too.
 */
export function loggingInterceptor(logger: Logger): ServerInterceptor {
  const refusals = new RefusalLogSampler();
  return (next) => async (context) => {
    try {
      await next(context);
    } catch (thrown) {
      const error = ParleyError.from(thrown);
      const user = context.values.find(CALLER)?.user;
      const fields = { rpc: context.path, user, peer: context.peer };
      if (context.signal.aborted && error === context.signal.reason) {
        logger.info({ ...fields, category: error.categoryName }, `call ended: ${error.message}`);
      } else {
        parleyMetrics().errors.add(1, { category: error.categoryName, component: "core" });
        const unlogged = error.category === ErrorCategory.RATE_LIMITED ? refusals.take(user ?? context.peer) : 0;
        if (unlogged !== undefined) logError(logger, error, unlogged === 0 ? fields : { ...fields, unlogged });
      }
      throw error;
    }
  };
}

/** A caller's RATE_LIMITED refusals are logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 1_000;
/** Callers remembered; past it, the memory starts over (at worst one more line each). */
const MAX_SAMPLED_CALLERS = 10_000;

/**
 * One caller over a limit earns a refusal per call — thousands a second from
 * a client opening streams in a loop — and a log line each would cost core
 * more than the refusal itself. Each caller's RATE_LIMITED refusals are
 * logged at most once a second, the line counting those not logged since;
 * the error metric counts every one.
 */
class RefusalLogSampler {
  readonly #callers = new Map<string, { at: number; unlogged: number }>();

  /** The number not logged since the last line when this one is to be logged; undefined when it is not. */
  take(caller: string): number | undefined {
    const now = performance.now();
    const seen = this.#callers.get(caller);
    if (seen !== undefined && now - seen.at < REFUSAL_LOG_INTERVAL_MS) {
      seen.unlogged++;
      return undefined;
    }
    if (seen === undefined && this.#callers.size >= MAX_SAMPLED_CALLERS) this.#callers.clear();
    this.#callers.set(caller, { at: now, unlogged: 0 });
    return seen?.unlogged ?? 0;
  }
}
