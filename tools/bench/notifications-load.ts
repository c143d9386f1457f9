import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { createClient } from "../../src/runtime/grpc/client.js";

/** What a 1 → N fan-out notification run measured. */
export interface FanoutResult {
  readonly sends: number;
  readonly notifications: number;
  readonly windowSeconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

export interface FanoutOptions {
  readonly address: string;
  /** A token with the `notifications:send` scope. */
  readonly token: string;
  readonly idPrefix: string;
  /** Recipients per send. */
  readonly fanout: number;
  /** Sends in flight. */
  readonly concurrency: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
}

/**
 * SendNotification to `fanout` recipients each, `concurrency` in flight,
 * for a fixed window after a warm-up. Recipients rotate over a pool ten
 * times the fan-out, so inboxes keep growing like real ones.
 */
export async function fanoutLoad(options: FanoutOptions): Promise<FanoutResult> {
  const client = createClient(NotificationService, options.address, { headers: () => ({ authorization: `Bearer ${options.token}` }) });
  const pool = Array.from({ length: options.fanout * 10 }, (_, i) => `bench-user-${i}`);
  let counter = 0;
  let measuring = false;
  let stopped = false;
  let sends = 0;
  let errors = 0;
  const latencies: number[] = [];
  const worker = async () => {
    while (!stopped) {
      const n = counter++;
      const start = (n * options.fanout) % pool.length;
      const recipients = pool.slice(start, start + options.fanout);
      const began = performance.now();
      try {
        await client.sendNotification({
          recipients,
          kind: "bench.fanout",
          title: `notification ${n}`,
          body: "x".repeat(64),
          idempotencyKey: `${options.idPrefix}-${n}`,
        }, { timeoutMs: 10_000 });
        if (measuring) {
          sends++;
          latencies.push(performance.now() - began);
        }
      } catch {
        if (measuring) errors++;
      }
    }
  };
  try {
    const workers = Array.from({ length: options.concurrency }, () => worker());
    await sleep(options.warmupSeconds * 1000);
    measuring = true;
    const began = performance.now();
    await sleep(options.seconds * 1000);
    measuring = false;
    const windowSeconds = (performance.now() - began) / 1000;
    stopped = true;
    await Promise.all(workers);
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
    return { sends, notifications: sends * options.fanout, windowSeconds, p50Ms: at(0.5), p99Ms: at(0.99), errors };
  } finally {
    client.close();
  }
}
