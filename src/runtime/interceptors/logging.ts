import { CALLER } from "./auth.js";
import { ParleyError } from "../../wire/index.js";
import { type Logger, logError } from "../logger.js";
import { parleyMetrics } from "../telemetry/metrics.js";
import type { ServerInterceptor } from "../grpc/call-context.js";

/**
 * Logs every failed call exactly once, with its category and context (rpc,
 * user, peer, and whatever the error carries: room, client_msg_id, attempt).
 * Outermost interceptor, so authentication failures are logged too.
 */
export function loggingInterceptor(logger: Logger): ServerInterceptor {
  return (next) => async (context) => {
    try {
      await next(context);
    } catch (thrown) {
      const error = ParleyError.from(thrown);
      const fields = { rpc: context.path, user: context.values.find(CALLER)?.user, peer: context.peer };
      if (context.signal.aborted && error === context.signal.reason) {
        logger.info({ ...fields, category: error.categoryName }, `call ended: ${error.message}`);
      } else {
        logError(logger, error, fields);
        parleyMetrics().errors.add(1, { category: error.categoryName, component: "core" });
      }
      throw error;
    }
  };
}
