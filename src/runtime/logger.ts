import { isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, type DestinationStream, type Logger } from "pino";
import type { ParleyError } from "../wire/index.js";

export type { Logger };

/**
 * JSON lines on stdout, one per event. `category` is on every error line;
 * the rest of the context (rpc, room, user, connection, trace id) is bound by
 * the caller with `logger.child({...})` or passed to logError.
 */
export function createLogger(options: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.name ?? "parley" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
      // Every line written while a span is active carries its ids.
      mixin: () => {
        const span = trace.getActiveSpan()?.spanContext();
        return span !== undefined && isSpanContextValid(span) ? { trace_id: span.traceId, span_id: span.spanId } : {};
      },
    },
    options.destination,
  );
}

/** Context fields of an error's log line. */
export type LogContext = Readonly<Record<string, unknown>>;

/**
 * Writes the one log line of a failure: its category, its message, the
 * caller's context and the error's own context, with the cause for debugging.
 * Client mistakes (VALIDATION, UNAUTHENTICATED, ...) are `warn`, failures
 * marked `expected` in their context (a shutdown) `info`; the rest `error`.
 */
export function logError(logger: Logger, error: ParleyError, context: LogContext = {}, message?: string): void {
  const level = error.context.expected === true ? "info" : CLIENT_SIDE.has(error.categoryName) ? "warn" : "error";
  // A stack helps with failures of ours; for a client's bad request it is
  // noise, and the cause's message is enough.
  const err = level === "error" ? (error.cause instanceof Error ? error.cause : error) : undefined;
  const cause = err === undefined && error.cause instanceof Error ? error.cause.message : undefined;
  logger[level](
    {
      category: error.categoryName,
      ...context,
      ...stringifyBigints(error.context),
      ...(error.field === undefined ? {} : { field: error.field }),
      ...(err === undefined ? {} : { err }),
      ...(cause === undefined ? {} : { cause }),
    },
    message ?? error.message,
  );
}

const CLIENT_SIDE = new Set(["VALIDATION", "UNAUTHENTICATED", "PERMISSION_DENIED", "RATE_LIMITED", "ROUTING"]);

function stringifyBigints(context: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(context)) {
    if (value !== undefined) out[key] = typeof value === "bigint" ? value.toString() : value;
  }
  return out;
}
