import { SpanKind } from "@opentelemetry/api";
import { ParleyError } from "../../wire/index.js";
import type { ServerInterceptor } from "../grpc/call-context.js";
import { contextFromHeaders, inSpan } from "../telemetry/tracing.js";

/**
 * A server span per gRPC call, continuing the caller's trace from the
 * `traceparent` metadata. Outermost interceptor, so that the failure log
 * line and the error detail carry the same trace id as the span.
 */
export function tracingInterceptor(): ServerInterceptor {
  return (next) => async (callContext) => {
    const [service = "", method = ""] = callContext.path.slice(1).split("/");
    await inSpan(
      callContext.path.slice(1),
      {
        kind: SpanKind.SERVER,
        parent: contextFromHeaders((name) => callContext.header(name)),
        attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method, "net.peer.name": callContext.peer },
      },
      async (span) => {
        try {
          await next(callContext);
        } catch (error) {
          // Stamp the trace id on the error, for its ErrorDetail.
          throw ParleyError.from(error).withContext({ trace_id: span.spanContext().traceId });
        }
      },
      (error) => ParleyError.from(error),
    );
  };
}

