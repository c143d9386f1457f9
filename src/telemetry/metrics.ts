import { type Counter, type Histogram, metrics, type UpDownCounter } from "@opentelemetry/api";

/**
 * parley's instruments. Created lazily from the global meter provider, so
 * they are no-ops until telemetry is started, and real afterwards.
 * Prometheus names: dots become underscores, counters get `_total`.
 */
export interface ParleyMetrics {
  readonly connectionsOpen: UpDownCounter;
  readonly framesIn: Counter;
  readonly framesOut: Counter;
  readonly messagesStored: Counter;
  readonly notificationsStored: Counter;
  readonly fanoutDeliveries: Counter;
  readonly sendLatency: Histogram;
  readonly retries: Counter;
  readonly errors: Counter;
  readonly webhookAttempts: Counter;
}

let instruments: ParleyMetrics | undefined;

export function parleyMetrics(): ParleyMetrics {
  if (instruments) return instruments;
  const meter = metrics.getMeter("parley");
  instruments = {
    connectionsOpen: meter.createUpDownCounter("parley.connections.open", { description: "WebSocket connections open on the bridge" }),
    framesIn: meter.createCounter("parley.frames.in", { description: "Client frames received, by kind" }),
    framesOut: meter.createCounter("parley.frames.out", { description: "Server frames sent, by kind" }),
    messagesStored: meter.createCounter("parley.messages.stored", { description: "Chat messages committed" }),
    notificationsStored: meter.createCounter("parley.notifications.stored", { description: "Notifications committed (one per recipient)" }),
    fanoutDeliveries: meter.createCounter("parley.fanout.deliveries", { description: "Events delivered to subscribers" }),
    sendLatency: meter.createHistogram("parley.send.latency.seconds", {
      description: "Send frame received to acknowledgement sent, in seconds",
      unit: "s",
      advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] },
    }),
    retries: meter.createCounter("parley.retries", { description: "Retries, by component and the category that caused them" }),
    errors: meter.createCounter("parley.errors", { description: "Failures, by category and component" }),
    webhookAttempts: meter.createCounter("parley.webhook.attempts", { description: "Webhook delivery attempts, by outcome" }),
  };
  return instruments;
}
