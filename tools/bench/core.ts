/**
 * `npm run bench:core`: stored messages per second through core, as a share
 * of what the same gRPC plumbing carries with a no-op service, measured in
 * one run with the same client code. See BENCHMARKS.md.
 *
 * Environment: BENCH_SECONDS (measured seconds per scenario, default 5),
 * BENCH_WARMUP_SECONDS (default 2), BENCH_MAX_MESSAGES (per scenario, default
 * 2,000,000), BENCH_CPU_PROF_DIR (run core with --cpu-prof, profile there),
 * BENCH_CORE_TELEMETRY=1 (start OpenTelemetry in core first, as `parley core`
 * does), PARLEY_TEST_DATABASE_URL (the PostgreSQL server, as for the tests).
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { mintToken, NOTIFICATIONS_SEND_SCOPE } from "../../src/runtime/auth/tokens.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { createTestDatabase, type TestDatabase } from "../../test/support/database.js";
import { backendDeltaMicros, machineBusyMs, postgresBackendMicros } from "./cpu.js";
import { numberFromEnv } from "./env.js";
import { type LoadOptions, type LoadResult, Recorder, streamLoad, unaryLoad } from "./load.js";
import { ServerProcess, type ServerKind } from "./server-process.js";
import { type FanoutResult, fanoutLoad } from "./notifications-load.js";

/** Recipients of each notification in the fan-out scenario (1 → 100). */
const FANOUT = 100;
/** Notification sends in flight in the fan-out scenario. */
const FANOUT_CONCURRENCY = 16;

type Scenario = "unary" | "stream" | "batches";

const SCENARIOS: readonly Scenario[] = ["unary", "stream", "batches"];
const SCENARIO_LABEL: Readonly<Record<Scenario, string>> = {
  unary: "SendMessage, 64 concurrent callers",
  stream: "SendStream, window 64",
  batches: "SendBatches, window 64",
};
/** Calls in flight (unary) and un-answered items in flight (stream). */
const CONCURRENCY = 64;
const ROOMS = Array.from({ length: 10 }, (_, i) => `bench-room-${i}`);
const UNARY_MIN_RATIO = 0.6;
const STREAM_MIN_RATE = 10_000;
/** CPU (in cores) used by the rest of the machine above which a measurement is flagged as disturbed. */
const BUSY_MACHINE = 0.15;
/** Deadline of one call; how long a stopped stream may take to answer its last items. */
const CALL_TIMEOUT_MS = 10_000;

const SECONDS = numberFromEnv("BENCH_SECONDS", 5, 1, 300);
const WARMUP_SECONDS = numberFromEnv("BENCH_WARMUP_SECONDS", 2, 0, 60);
const MAX_MESSAGES = numberFromEnv("BENCH_MAX_MESSAGES", 2_000_000, 1, 100_000_000);
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR;

interface Measurement {
  readonly scenario: Scenario;
  readonly target: ServerKind;
  readonly result: LoadResult;
  /**
   * CPU over the window, in cores (1 = one core busy all the time). `other`
   * is what the rest of the machine used: anything much above zero means
   * another workload disturbed the measurement.
   */
  readonly cpu: { readonly client: number; readonly server: number; readonly postgres: number; readonly other: number };
}

interface CpuSnapshot {
  readonly at: number;
  readonly clientMicros: number;
  readonly serverMicros: number;
  readonly postgresMicros: ReadonlyMap<number, number> | undefined;
  readonly machineBusyMs: number;
}

async function cpuSnapshot(server: ServerProcess, db: TestDatabase | undefined): Promise<CpuSnapshot> {
  const postgresMicros = db === undefined ? new Map<number, number>() : await postgresBackendMicros(db);
  const serverMicros = await server.cpuMicros();
  const client = process.cpuUsage();
  return { at: performance.now(), clientMicros: client.user + client.system, serverMicros, postgresMicros, machineBusyMs: await machineBusyMs() };
}

/** One scenario against one server: warm up, measure a fixed window, stop, drain. */
async function measure(
  server: ServerProcess,
  target: ServerKind,
  scenario: Scenario,
  token: string,
  runId: string,
  db: TestDatabase | undefined,
): Promise<Measurement> {
  const options: LoadOptions = {
    idPrefix: `${runId}-${target}-${scenario}`,
    rooms: ROOMS,
    concurrency: CONCURRENCY,
    maxMessages: MAX_MESSAGES,
    timeoutMs: CALL_TIMEOUT_MS,
  };
  const client = createClient(ChatService, server.address, { headers: () => ({ authorization: `Bearer ${token}` }) });
  try {
    const recorder = new Recorder(options);
    const load = scenario === "unary" ? unaryLoad(client, recorder, options) : streamLoad(client, recorder, options, scenario === "batches");
    await sleep(WARMUP_SECONDS * 1000);
    recorder.startWindow();
    const before = await cpuSnapshot(server, db);
    await sleep(SECONDS * 1000);
    recorder.endWindow();
    const after = await cpuSnapshot(server, db);
    recorder.stop();
    await load;
    const wallMs = after.at - before.at;
    const clientCpu = (after.clientMicros - before.clientMicros) / 1000 / wallMs;
    const serverCpu = (after.serverMicros - before.serverMicros) / 1000 / wallMs;
    const postgres =
      before.postgresMicros === undefined || after.postgresMicros === undefined
        ? Number.NaN
        : backendDeltaMicros(before.postgresMicros, after.postgresMicros) / 1000 / wallMs;
    const machine = (after.machineBusyMs - before.machineBusyMs) / wallMs;
    return {
      scenario,
      target,
      result: recorder.result(),
      cpu: { client: clientCpu, server: serverCpu, postgres, other: machine - clientCpu - serverCpu - (Number.isNaN(postgres) ? 0 : postgres) },
    };
  } finally {
    client.close();
  }
}

interface StoredCheck {
  readonly scenario: Scenario;
  readonly answered: number;
  readonly rows: number;
  readonly commits: number;
}

interface StoredRows {
  /** Rows stored and transactions that stored them, per scenario. */
  readonly counts: ReadonlyMap<Scenario, { readonly rows: number; readonly commits: number }>;
  readonly total: number;
  /** Rooms whose head_seq is not the count and the highest seq of their messages. */
  readonly gappyRooms: number;
}

/** What the database holds after the run, per scenario (by the clientMsgId prefix). */
async function storedRows(db: TestDatabase, runId: string): Promise<StoredRows> {
  const counts = new Map<Scenario, { rows: number; commits: number }>();
  for (const scenario of SCENARIOS) {
    // created_at defaults to now(), the transaction's start time: one distinct value per commit.
    const [row] = await db.sql<{ n: string; commits: string }>(
      "select count(*) as n, count(distinct created_at) as commits from chat_messages where client_msg_id like $1",
      [`${runId}-core-${scenario}-%`],
    );
    counts.set(scenario, { rows: Number(row?.n ?? 0), commits: Number(row?.commits ?? 0) });
  }
  const [all] = await db.sql<{ n: string }>("select count(*) as n from chat_messages");
  const [gaps] = await db.sql<{ n: string }>(
    `select count(*) as n from rooms r
      where r.head_seq <> (select count(*) from chat_messages m where m.room_id = r.id)
         or r.head_seq <> coalesce((select max(seq) from chat_messages m where m.room_id = r.id), 0)`,
  );
  return { counts, total: Number(all?.n ?? 0), gappyRooms: Number(gaps?.n ?? 0) };
}

const integer = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—");
const millis = (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : "—");
const percent = (cores: number) => (Number.isFinite(cores) ? `${Math.round(cores * 100)}%` : "—");

function rate(m: Measurement): number {
  return m.result.windowSeconds > 0 ? m.result.windowCount / m.result.windowSeconds : Number.NaN;
}

function table(measurements: readonly Measurement[]): string {
  const lines = [
    "| scenario | target | messages/s | p50 ms | p99 ms | core / no-op | goal | met | errors | CPU client | CPU server | CPU PostgreSQL | CPU other |",
    "|---|---|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|",
  ];
  for (const m of measurements) {
    const noop = measurements.find((other) => other.scenario === m.scenario && other.target === "noop");
    const ratio = m.target === "core" && noop !== undefined ? rate(m) / rate(noop) : Number.NaN;
    let goal = "";
    let met = "";
    if (m.target === "core") {
      goal = m.scenario === "unary" ? `≥ ${UNARY_MIN_RATIO.toFixed(2)} × no-op` : `≥ ${integer(STREAM_MIN_RATE)} stored/s`;
      met = (m.scenario === "unary" ? ratio >= UNARY_MIN_RATIO : rate(m) >= STREAM_MIN_RATE) ? "yes" : "**no**";
    }
    lines.push(
      `| ${SCENARIO_LABEL[m.scenario]} | ${m.target === "noop" ? "no-op" : "core"} | ${integer(rate(m))} | ${millis(m.result.p50Ms)} | ${millis(m.result.p99Ms)} | ${
        // Truncated, so that the shown ratio never rounds up past the goal.
        Number.isFinite(ratio) ? (Math.floor(ratio * 100) / 100).toFixed(2) : ""
      } | ${goal} | ${met} | ${m.result.errorCount} | ${percent(m.cpu.client)} | ${percent(m.cpu.server)} | ${m.target === "noop" ? "" : percent(m.cpu.postgres)} | ${percent(m.cpu.other)} |`,
    );
  }
  return lines.join("\n");
}

function fanoutTable(result: FanoutResult): string {
  const perSecond = (n: number) => (result.windowSeconds > 0 ? n / result.windowSeconds : Number.NaN);
  return [
    "| scenario | sends/s | notifications stored/s | p50 ms | p99 ms | errors |",
    "|---|--:|--:|--:|--:|--:|",
    `| SendNotification 1 → ${FANOUT}, ${FANOUT_CONCURRENCY} in flight | ${integer(perSecond(result.sends))} | ${integer(perSecond(result.notifications))} | ${millis(result.p50Ms)} | ${millis(result.p99Ms)} | ${result.errors} |`,
  ].join("\n");
}

async function main(): Promise<number> {
  const runId = `b${randomBytes(4).toString("hex")}`;
  const secret = randomBytes(32).toString("hex");
  const token = await mintToken(secret, "bench-user", { expiresInSeconds: 24 * 3600 });

  // Whatever happens (a crash, Ctrl-C, the watchdog), no child and no database is left behind.
  const servers: ServerProcess[] = [];
  const track = (server: ServerProcess) => {
    servers.push(server);
    return server;
  };
  let db: TestDatabase | undefined;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const server of servers) server.kill();
    await db?.drop().catch((error: unknown) => {
      process.stderr.write(`could not drop the benchmark database ${db?.name ?? ""}: ${String(error)}\n`);
    });
  };
  const abort = (code: number, why: string) => {
    process.stderr.write(`\n${why}: stopping\n`);
    void cleanup().finally(() => process.exit(code));
  };
  process.once("SIGINT", () => {
    abort(130, "interrupted");
  });
  process.once("SIGTERM", () => {
    abort(143, "terminated");
  });
  const budgetMs = (2 * SCENARIOS.length * (WARMUP_SECONDS + SECONDS) * 1000 + 4 * CALL_TIMEOUT_MS + 180_000) * 1.5;
  const watchdog = setTimeout(() => {
    abort(1, `the benchmark took longer than ${Math.round(budgetMs / 1000)} s`);
  }, budgetMs);

  try {
    db = await createTestDatabase();
    const [pgVersion] = await db.sql<{ server_version: string }>("show server_version");
    const cpus = os.cpus();
    process.stdout.write(
      [
        "parley bench:core",
        `date:        ${new Date().toISOString()}`,
        `node:        ${process.version} (${os.platform()} ${os.release()} ${os.arch()})`,
        `cpus:        ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown"} (available parallelism ${os.availableParallelism()})`,
        `postgresql:  ${pgVersion?.server_version ?? "unknown"} (same machine, as are the servers and the load generator)`,
        `core:        OpenTelemetry SDK ${process.env.BENCH_CORE_TELEMETRY === "1" ? "started first, as `parley core` does" : "not started (set BENCH_CORE_TELEMETRY=1 to start it, as `parley core` does)"}`,
        `measured:    ${SECONDS} s per scenario after ${WARMUP_SECONDS} s warm-up; ${CONCURRENCY} in flight; ${ROOMS.length} rooms; run ${runId}`,
        "",
      ].join("\n"),
    );

    // Both servers run for the whole benchmark (an idle one costs nothing), and each
    // scenario measures no-op then core back to back, so a ratio compares like with like.
    const targets = new Map<ServerKind, ServerProcess>();
    targets.set("noop", track(await ServerProcess.start({ kind: "noop" })));
    targets.set(
      "core",
      track(
        await ServerProcess.start({
          kind: "core",
          env: { BENCH_DATABASE_URL: db.url, BENCH_JWT_SECRET: secret },
          nodeFlags: CPU_PROF_DIR === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF_DIR}`],
        }),
      ),
    );
    const measurements: Measurement[] = [];
    for (const scenario of SCENARIOS) {
      for (const [target, server] of targets) {
        process.stdout.write(`measuring ${target} ${scenario} (${WARMUP_SECONDS} s warm-up + ${SECONDS} s) ...\n`);
        measurements.push(await measure(server, target, scenario, token, runId, target === "core" ? db : undefined));
      }
    }
    // Notifications: one send to 100 recipients, 16 in flight, against core only
    // (the no-op service has no NotificationService).
    process.stdout.write(`measuring core notifications 1 → ${FANOUT} (${WARMUP_SECONDS} s warm-up + ${SECONDS} s) ...\n`);
    const coreServer = targets.get("core");
    if (coreServer === undefined) throw new Error("core server missing");
    const serviceToken = await mintToken(secret, "bench-service", { scopes: [NOTIFICATIONS_SEND_SCOPE], expiresInSeconds: 24 * 3600 });
    const fanout = await fanoutLoad({
      address: coreServer.address,
      token: serviceToken,
      idPrefix: `${runId}-fanout`,
      fanout: FANOUT,
      concurrency: FANOUT_CONCURRENCY,
      warmupSeconds: WARMUP_SECONDS,
      seconds: SECONDS,
    });
    await Promise.all([...targets.values()].map((server) => server.stop()));
    const stored = await storedRows(db, runId);

    process.stdout.write(`\n${table(measurements)}\n\n`);
    process.stdout.write(
      `CPU: % of one core over the measured window (this machine has ${cpus.length}): the load generator, the server process, ` +
        `PostgreSQL (the database's backends and the WAL and checkpoint writers), and the rest of the machine ` +
        `(other work there disturbs the numbers).\n`,
    );
    process.stdout.write(`Latency: per call (SendMessage) or per item, from write to its answer (SendStream).\n\n`);
    process.stdout.write(`${fanoutTable(fanout)}\n\n`);
    const [notificationRows] = await db.sql<{ n: string }>("select count(*) as n from notifications");
    process.stdout.write(
      `stored check, notifications: ${integer(Number(notificationRows?.n ?? 0))} rows (warm-up and window together; ` +
        `the window's ${integer(fanout.notifications)} are among them)\n`,
    );

    let consistent = true;
    const checks: StoredCheck[] = measurements
      .filter((m) => m.target === "core")
      .map((m) => ({ scenario: m.scenario, answered: m.result.storedAnswers, ...(stored.counts.get(m.scenario) ?? { rows: 0, commits: 0 }) }));
    for (const check of checks) {
      const ok = check.rows === check.answered;
      consistent &&= ok;
      process.stdout.write(
        `stored check, core ${check.scenario}: ${integer(check.answered)} successful answers, ${integer(check.rows)} rows stored: ` +
          `${ok ? "equal" : "MISMATCH"} (${integer(check.commits)} commits, ${(check.rows / Math.max(1, check.commits)).toFixed(1)} messages per commit)\n`,
      );
    }
    const expectedTotal = checks.reduce((sum, check) => sum + check.rows, 0);
    if (stored.total !== expectedTotal) {
      consistent = false;
      process.stdout.write(`stored check: ${integer(stored.total)} rows in all, expected ${integer(expectedTotal)}: MISMATCH\n`);
    }
    process.stdout.write(`seq check: ${stored.gappyRooms === 0 ? `every room's seq is gapless (1..head_seq)` : `${stored.gappyRooms} rooms with gaps: MISMATCH`}\n`);
    consistent &&= stored.gappyRooms === 0;

    for (const m of measurements) {
      const r = m.result;
      const notes = [
        r.duplicates > 0 ? `${r.duplicates} duplicate answers` : "",
        r.unanswered > 0 ? `${r.unanswered} items never answered` : "",
        r.stoppedEarly === undefined ? "" : `stopped early: ${r.stoppedEarly}`,
        m.cpu.other > BUSY_MACHINE ? `other processes used ${percent(m.cpu.other)} of a core meanwhile: the machine was not quiet, this number is low` : "",
      ].filter((note) => note !== "");
      if (notes.length > 0) process.stdout.write(`${m.target} ${m.scenario}: ${notes.join("; ")}\n`);
      for (const [kind, count] of r.errors) process.stdout.write(`${m.target} ${m.scenario}: error ×${count}: ${kind}\n`);
    }
    if (CPU_PROF_DIR !== undefined) process.stdout.write(`core CPU profile written to ${CPU_PROF_DIR}\n`);
    // Timing never fails the benchmark; stored data that disagrees with the answers does.
    return consistent ? 0 : 1;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench:core failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
