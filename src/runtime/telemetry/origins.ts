import { type SpanContext, TraceFlags } from "@opentelemetry/api";

/**
 * Which span committed an item (a stored message or notification), so that
 * the span delivering it to a subscriber can link back to it. Weak: an item
 * the hub has dropped takes its entry with it.
 */
const origins = new WeakMap<object, SpanContext>();

/**
 * Only sampled origins are remembered: a link from an unsampled delivery span
 * is never recorded, and the map's entries cost the garbage collector (they
 * are cleared only by full collections, whose pauses set the latency tail).
 */
export function rememberOrigin(item: object, spanContext: SpanContext): void {
  if ((spanContext.traceFlags & TraceFlags.SAMPLED) === 0) return;
  origins.set(item, spanContext);
}

export function originOf(item: object): SpanContext | undefined {
  return origins.get(item);
}
