import { CALLER } from "./auth.js";
import { ErrorCategory, ParleyError } from "../../wire/index.js";
import { type Logger, logError } from "../logger.js";
import { RefusalLogSampler } from "../refusal-log-sampler.js";
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
