/**
 * `npm run bench:paced`: the latency target's own condition, measured in
 * several windows — C clients over R rooms sending at a fixed total rate
 * (open loop, each client on its own clock) through the two-process
 * deployment (`parley core` + `parley bridge`), with no full-speed run
 * before it. One 10 s window holds one or two of this machine's stall
 * episodes, which decide its p99 (see BENCHMARKS.md), so one window says
 * little; several, side by side, say how much the tail moves.
 *
 * Reported per window: stored msgs/s, send→ack p50/p90/p99/max, and the CPU
 * of the bridge and core separately, PostgreSQL, this load generator and the
 * machine. It reports; it does not pass or fail.
 *
 * Environment: BENCH_PACED_RATE (msgs/s, default 2,500: half the target
 * rate), BENCH_WINDOWS (default 3), BENCH_SECONDS (per window, default 10),
 * C, R, W as for bench:e2e, BENCH_SERVERS=serve for `parley serve` instead,
 * and BENCH_SERVER_FLAGS (node/V8 flags for the servers, e.g. --cpu-prof).
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createTestDatabase } from "../../test/support/database.js";
import { processCpuMicros } from "./cpu.js";
import { cpuSnapshot } from "./e2e/cpu-share.js";
import { runPhase } from "./e2e/load.js";
import { seedRooms, type ServerChild, startParley, startSplit } from "./e2e/servers.js";
import { numberFromEnv } from "./env.js";
import { percentile } from "./latency.js";
import { STALL_MS, WalFlushWatch } from "./e2e/wal-flush-watch.js";
import { type RuntimeSample, runtimeWindow, sampleRuntime } from "./e2e/runtime-metrics.js";

/** A WAL flush held this long (four times the p99 target) decides a window's p99 on its own: every send of those 100 ms waits behind it. */
const LONG_STALL_MS = 100;

const fmt = (value: number, digits = 0) => value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** Per-process samples taken with each of runPhase's two CPU snapshots (the window's start and end). */
interface ProcessSample {
  readonly at: number;
  readonly micros: readonly (number | undefined)[];
  /** Each server's /metrics: its event-loop delay and scavenges. */
  readonly runtime: readonly (RuntimeSample | undefined)[];
}

/** Each process's CPU between two samples, in % of one core. */
function shares(from: ProcessSample, to: ProcessSample): number[] {
  const wallMicros = (to.at - from.at) * 1000;
  return to.micros.map((micros, i) => (100 * ((micros ?? 0) - (from.micros[i] ?? 0))) / wallMicros);
}

async function main(): Promise<void> {
  const clients = numberFromEnv("C", 100, 1, 5_000, { integer: true });
  const roomCount = numberFromEnv("R", 10, 1, clients, { integer: true });
  const window = numberFromEnv("W", 8, 1, 256, { integer: true });
  const rate = numberFromEnv("BENCH_PACED_RATE", 2_500, 10, 100_000);
  const windows = numberFromEnv("BENCH_WINDOWS", 3, 1, 20, { integer: true });
  const seconds = numberFromEnv("BENCH_SECONDS", 10, 1, 120, { integer: true });
  const oneProcess = process.env.BENCH_SERVERS === "serve";
  const hardStop = setTimeout(() => {
    process.stderr.write("bench:paced: hard time limit reached; stopping\n");
    process.exit(0);
  }, windows * (seconds + 20) * 1000 + 120_000);
  hardStop.unref();

  const secret = `bench-${randomBytes(24).toString("hex")}`;
  const tokens = await Promise.all(Array.from({ length: clients }, (_, i) => mintToken(secret, `bench-user-${i}`, { expiresInSeconds: 3600 })));
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? "cpu"}, Node ${process.version}`;
  process.stdout.write(
    `bench:paced  ${fmt(rate)} msgs/s offered, C=${clients} R=${roomCount} W=${window}, ${windows} windows of ${seconds} s (3 s warm-up each), ${oneProcess ? "parley serve" : "parley core + parley bridge"}  ${machine}\n\n`,
  );
  const db = await createTestDatabase();
  const servers: ServerChild[] = [];
  let walWatch: WalFlushWatch | undefined;
  try {
    let port: number;
    let labels: string[];
    if (oneProcess) {
      const serve = await startParley(db, secret);
      servers.push(serve);
      port = serve.port;
      labels = ["server"];
    } else {
      const split = await startSplit(db, secret);
      servers.push(split.bridge, split.core);
      port = split.bridge.port;
      labels = ["bridge", "core"];
    }
    const users = Array.from({ length: clients }, (_, i) => `bench-user-${i}`);
    const roomOf = (i: number) => `bench-room-${i % roomCount}`;
    await seedRooms(db, Array.from({ length: roomCount }, (_, i) => roomOf(i)), users, roomOf);
    walWatch = await WalFlushWatch.start(db);
    const pids = servers.map((server) => server.child.pid).filter((pid): pid is number => pid !== undefined);
    let samples: ProcessSample[] = [];
    const cpu = async () => {
      const [micros, runtime] = await Promise.all([
        Promise.all(pids.map((pid) => processCpuMicros(pid))),
        Promise.all(servers.map((server) => sampleRuntime(server.metricsUrl))),
      ]);
      samples.push({ at: performance.now(), micros, runtime });
      return cpuSnapshot(pids, db);
    };
    process.stdout.write(
      `| window | stored msgs/s | ack p50 ms | p90 ms | p99 ms | max ms | ${labels.map((label) => `${label} CPU %`).join(" | ")} | PostgreSQL CPU % | load gen CPU % | machine CPU % | longest WAL flush wait ms | WAL stalls ≥ ${STALL_MS} ms | ${labels.map((label) => `${label} longest event-loop delay ms | ${label} scavenges (over 10 ms)`).join(" | ")} |\n`,
    );
    process.stdout.write(`|---:|---:|---:|---:|---:|---:|${labels.map(() => "---:|").join("")}---:|---:|---:|---:|---:|${labels.map(() => "---:|---:|").join("")}\n`);
    const p99s: number[] = [];
    /** Each window's p99, by whether the disk held a WAL flush for LONG_STALL_MS or more in it. */
    const byDisk = { calm: [] as number[], stalled: [] as number[] };
    for (let index = 1; index <= windows; index++) {
      samples = [];
      const result = await runPhase({
        label: `window ${index}`,
        port,
        pathOf: (i) => `/ws/chat/${roomOf(i)}`,
        tokens,
        readyPrefix: '{"caughtUp"',
        window,
        warmupMs: 3_000,
        measureMs: seconds * 1000,
        ratePerClient: rate / clients,
        cpu,
      });
      const [first, last] = samples;
      const perProcess = first !== undefined && last !== undefined ? shares(first, last) : [];
      const pauses = servers.map((_, i) => {
        const during = runtimeWindow(first?.runtime[i], last?.runtime[i]);
        return during === undefined ? "– | –" : `${fmt(during.loopDelayMaxMs)} | ${during.scavenges} (${during.scavengesOver10Ms})`;
      });
      const latencies = result.latenciesMs;
      const p99 = percentile(latencies, 99);
      p99s.push(p99);
      const wal = walWatch.summary(result.measuredFrom, result.measuredTo);
      (wal.longestMs >= LONG_STALL_MS ? byDisk.stalled : byDisk.calm).push(p99);
      process.stdout.write(
        `| ${index} | ${fmt(result.stored / result.seconds)} | ${fmt(percentile(latencies, 50), 1)} | ${fmt(percentile(latencies, 90), 1)} | ${fmt(p99, 1)} | ${fmt(latencies.at(-1) ?? 0, 1)} | ${perProcess.map((share) => fmt(share)).join(" | ")} | ${fmt(result.cpu.postgres)} | ${fmt(result.cpu.load)} | ${fmt(result.cpu.machine)} | ${fmt(wal.longestMs)} | ${wal.stalls} | ${pauses.join(" | ")} |\n`,
      );
      for (const [category, count] of result.errors) process.stdout.write(`  window ${index}: ${count} × ${category}\n`);
    }
    const sorted = [...p99s].sort((a, b) => a - b);
    process.stdout.write(
      `\np99 over the windows: lowest ${fmt(sorted[0] ?? 0, 1)} ms, median ${fmt(sorted[Math.floor((sorted.length - 1) / 2)] ?? 0, 1)} ms, highest ${fmt(sorted.at(-1) ?? 0, 1)} ms (target at 2,500 msgs/s: ≤ 25 ms)\n`,
    );
    const range = (values: number[]) =>
      values.length === 0 ? "none" : `${values.length}, p99 ${fmt(Math.min(...values), 1)}–${fmt(Math.max(...values), 1)} ms`;
    process.stdout.write(`windows whose longest WAL flush wait was under ${LONG_STALL_MS} ms: ${range(byDisk.calm)}; the others: ${range(byDisk.stalled)}\n`);
    process.stdout.write("CPU % is of one core over the measured window (200% is this whole machine).\n");
    process.stdout.write("Event-loop delay and scavenges: each server's own /metrics (OpenTelemetry's Node runtime metrics), scraped at the window's start and end.\n");
    process.stdout.write(`${walWatch.legend()}\n`);
  } finally {
    await walWatch?.stop();
    for (const server of servers) await server.stop();
    await db.drop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:paced failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
