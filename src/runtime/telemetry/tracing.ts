import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { ParleyError } from "../../wire/index.js";
import { parleyMetrics } from "./metrics.js";

/** parley's tracer; a no-op until telemetry is started. */
export function tracer(): Tracer {
  return trace.getTracer("parley");
}

/** The attribute every failed span carries: the ErrorCategory name. */
const ERROR_CATEGORY = "error.category";

/**
 * Marks a span failed: status ERROR, the exception recorded, and
 * `error.category` — the same category as on the WS error frame, the gRPC
 * status detail and the log line.
 */
export function failSpan(span: Span, error: ParleyError): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  span.recordException(error);
  span.setAttribute(ERROR_CATEGORY, error.categoryName);
}

/** A retry as an event on the span that retries, with the category that caused it. */
export function recordRetry(span: Span, attempt: number, cause: ParleyError): void {
  span.addEvent("retry", { attempt, [ERROR_CATEGORY]: cause.categoryName, "exception.message": cause.message });
}

/**
 * The W3C traceparent naming `spanContext` ("" when it is invalid), written
 * directly rather than through a propagator and a context (the bridge stamps
 * one on every send it forwards).
 */
export function traceparentOfSpan(spanContext: SpanContext): string {
  if (!trace.isSpanContextValid(spanContext)) return "";
  return `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** Injects the active context into a header map (gRPC metadata, HTTP headers). */
export function injectHeaders(headers: Record<string, string>, ctx: Context = context.active()): Record<string, string> {
  propagation.inject(ctx, headers);
  return headers;
}

/** A context whose parent is the span named by a traceparent (or the active one if it is empty/invalid). */
export function contextFromTraceparent(traceparent: string, base: Context = context.active()): Context {
  if (traceparent === "") return base;
  return propagation.extract(base, { traceparent });
}

/** A context from request headers. */
export function contextFromHeaders(header: (name: string) => string | undefined, base: Context = context.active()): Context {
  return propagation.extract(base, { traceparent: header("traceparent") ?? "", tracestate: header("tracestate") ?? "" }, {
    get: (carrier, key) => {
      const value = carrier[key as "traceparent" | "tracestate"];
      return value === "" ? undefined : value;
    },
    keys: (carrier) => Object.keys(carrier),
  });
}

/** The current trace id, or "" (for error details and log lines). */
export function currentTraceId(): string {
  const span = trace.getActiveSpan();
  const id = span?.spanContext().traceId ?? "";
  return /^0+$/.test(id) ? "" : id;
}

/** A link to another span's context (valid contexts only). */
export function linkTo(spanContext: SpanContext | undefined): Link[] {
  return spanContext !== undefined && trace.isSpanContextValid(spanContext) ? [{ context: spanContext }] : [];
}

/**
 * Sets attributes built only for a span that records them: on hot paths
 * (an item, a delivery: thousands a second) unsampled spans then cost no
 * attribute objects. Samplers see the span without them, which the
 * standard ones (always_on/off, ratio, parent-based) do not look at.
 */
export function setAttributesIfRecording(span: Span, attributes: (() => Attributes) | undefined): void {
  if (attributes !== undefined && span.isRecording()) span.setAttributes(attributes());
}

/**
 * Runs `work` inside a new active span; a thrown error marks the span failed
 * (via `categorize`) and is rethrown. The span always ends.
 */
export async function inSpan<T>(
  name: string,
  options: SpanOptions & { parent?: Context; lazyAttributes?: () => Attributes },
  work: (span: Span) => Promise<T>,
  categorize: (error: unknown) => ParleyError,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer().startSpan(name, options, parent);
  setAttributesIfRecording(span, options.lazyAttributes);
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (error) {
    failSpan(span, categorize(error));
    throw error;
  } finally {
    span.end();
  }
}

/**
 * A subscriber delivery: a span linked to the span that committed the item
 * (another trace), counted in the fan-out deliveries metric. A `send` that
 * completes at once (returns nothing) is traced without a promise, and so
 * is its delivery: the follower passes the next item on in the same turn.
 */
export function traceDelivery(
  kind: string,
  topic: string,
  item: { readonly seq: bigint },
  origin: SpanContext | undefined,
  send: () => void | Promise<void>,
): void | Promise<void> {
  const span = tracer().startSpan(`fanout.deliver ${kind}`, { kind: SpanKind.PRODUCER });
  if (span.isRecording()) {
    span.setAttributes({ "parley.topic": topic, "parley.seq": item.seq.toString() });
    span.addLinks(linkTo(origin));
  }
  let sent: void | Promise<void>;
  try {
    sent = send();
  } catch (error) {
    endFailedDelivery(span, error);
    throw error;
  }
  if (sent === undefined) {
    endDelivery(kind, span);
    return;
  }
  return sent.then(
    () => {
      endDelivery(kind, span);
    },
    (error: unknown) => {
      endFailedDelivery(span, error);
      throw error;
    },
  );
}

function endDelivery(kind: string, span: Span): void {
  parleyMetrics().fanoutDeliveries.add(kind);
  span.end();
}

function endFailedDelivery(span: Span, error: unknown): void {
  failSpan(span, ParleyError.from(error));
  span.end();
}
