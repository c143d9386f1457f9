import { type Counter, type Histogram, type Meter, metrics, type UpDownCounter } from "@opentelemetry/api";

/**
 * A counter for per-frame hot paths, split by one attribute ("kind").
 * Counting is a plain addition to an in-memory total; the meter reads the
 * totals when it collects (an observable counter). A regular counter hashes
 * its attributes on every add, which at tens of thousands of frames a second
 * was a visible share of the bridge's CPU.
 */
export interface KindCounter {
  add(kind: string): void;
}

function kindCounter(meter: Meter, name: string, description: string): KindCounter {
  const totals = new Map<string, number>();
  meter.createObservableCounter(name, { description }).addCallback((result) => {
    for (const [kind, total] of totals) result.observe(total, { kind });
  });
  return {
    add(kind) {
      totals.set(kind, (totals.get(kind) ?? 0) + 1);
    },
  };
}

/**
 * parley's instruments. Created lazily from the global meter provider, so
 * they are no-ops until telemetry is started, and real afterwards.
 * Prometheus names: dots become underscores, counters get `_total`.
 */
export interface ParleyMetrics {
  readonly connectionsOpen: UpDownCounter;
  readonly framesIn: KindCounter;
  readonly framesOut: KindCounter;
  readonly messagesStored: Counter;
  readonly notificationsStored: Counter;
  readonly fanoutDeliveries: KindCounter;
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
    framesIn: kindCounter(meter, "parley.frames.in", "Client frames received, by kind"),
    framesOut: kindCounter(meter, "parley.frames.out", "Server frames sent, by kind"),
    messagesStored: meter.createCounter("parley.messages.stored", { description: "Chat messages committed" }),
    notificationsStored: meter.createCounter("parley.notifications.stored", { description: "Notifications committed (one per recipient)" }),
    fanoutDeliveries: kindCounter(meter, "parley.fanout.deliveries", "Events delivered to subscribers"),
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
