import type { SpanContext } from "@opentelemetry/api";

/**
 * Which span committed an item (a stored message or notification), so that
 * the span delivering it to a subscriber can link back to it. Weak: an item
 * the hub has dropped takes its entry with it.
 */
const origins = new WeakMap<object, SpanContext>();

export function rememberOrigin(item: object, spanContext: SpanContext): void {
  origins.set(item, spanContext);
}

export function originOf(item: object): SpanContext | undefined {
  return origins.get(item);
}
