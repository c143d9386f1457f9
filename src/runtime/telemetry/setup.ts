import type { IncomingMessage, ServerResponse } from "node:http";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { RuntimeNodeInstrumentation } from "@opentelemetry/instrumentation-runtime-node";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { AlwaysOffSampler, NoopSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { type MetricReader, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";

export interface TelemetryOptions {
  /** Default service name when OTEL_SERVICE_NAME is not set. */
  readonly serviceName?: string;
  /** Span processors to use instead of the environment's (tests: an in-memory exporter). */
  readonly spanProcessors?: SpanProcessor[];
  /** Extra metric readers (tests). */
  readonly metricReaders?: MetricReader[];
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export interface Telemetry {
  /** Serves the Prometheus text format (`/metrics`). */
  readonly metricsHandler: (request: IncomingMessage, response: ServerResponse) => void;
  /** Flushes and stops exporting. */
  shutdown(): Promise<void>;
}

let running: Telemetry | undefined;

/**
 * Sets up OpenTelemetry once per process, configured by the standard OTEL_*
 * variables: spans and metrics go to OTLP when an endpoint is set
 * (OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal ones, or OTEL_TRACES_EXPORTER),
 * and nowhere otherwise — but spans are still created, so that trace ids
 * reach log lines and error details. Metrics are always served at /metrics.
 *
 * Must run before @grpc/grpc-js and pg are loaded, so that the pg
 * instrumentation can patch the driver (bin/parley.js calls it first).
 */
export function startTelemetry(options: TelemetryOptions = {}): Telemetry {
  if (running) return running;
  const env = options.env ?? process.env;
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const exportsTraces =
    env.OTEL_TRACES_EXPORTER !== undefined || env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined;
  const exportsMetrics =
    env.OTEL_METRICS_EXPORTER !== undefined || env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT !== undefined;
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ?? options.serviceName ?? "parley",
    // Without an exporter the SDK would register no tracer at all; and spans
    // nobody exports need not be recorded: unsampled spans still carry ids
    // (for log lines, error details and propagation) at a fraction of the cost.
    spanProcessors: options.spanProcessors ?? (exportsTraces ? undefined : [new NoopSpanProcessor()]),
    // (OTEL_TRACES_SAMPLER, when set, still decides: always_on records every span.)
    sampler: options.spanProcessors === undefined && !exportsTraces && env.OTEL_TRACES_SAMPLER === undefined ? new AlwaysOffSampler() : undefined,
    metricReaders: [prometheus, ...(options.metricReaders ?? []), ...(exportsMetrics ? envMetricReaders() : [])],
    instrumentations: [
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
      // Event-loop delay and utilization, GC pauses, heap spaces: what a
      // latency tail on the servers' side is made of. The delay gauges cover
      // the time since the previous collection (a /metrics scrape, or an
      // OTLP export when one is configured: each collection restarts them).
      new RuntimeNodeInstrumentation({ monitoringPrecision: 5 }),
    ],
    autoDetectResources: false,
  });
  sdk.start();
  running = {
    metricsHandler: (request, response) => {
      prometheus.getMetricsRequestHandler(request, response);
    },
    shutdown: async () => {
      await sdk.shutdown();
      running = undefined;
    },
  };
  return running;
}

/** The running telemetry, if started. */
export function telemetry(): Telemetry | undefined {
  return running;
}

function envMetricReaders(): MetricReader[] {
  // NodeSDK builds OTLP readers from the environment only when given none;
  // since /metrics always needs the Prometheus reader, build the OTLP one
  // here (it reads its endpoint and headers from the same OTEL_* variables).
  return [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter() })];
}
