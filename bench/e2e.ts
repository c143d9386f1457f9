/**
 * `npm run bench:e2e`: browsers' path end to end — WebSocket clients → bridge
 * → core → PostgreSQL → fan-out back to every client of the room — against a
 * raw `ws` broadcast server measured in the same run, on the same machine.
 *
 *   C clients (default 100) over R rooms (default 10), each sending as fast as
 *   a window of W (default 8) un-acknowledged sends allows, for BENCH_SECONDS
 *   (default 10) after a short warm-up. Reported: stored messages/s, deliveries/s
 *   (message frames received by all clients), send→ack latency p50/p99, and CPU
 *   of the server process, PostgreSQL and this load generator.
 *
 *   Runs: parley at full speed; parley again with rate-limited clients at half
 *   the rate it reached; the raw ws baseline (no persistence, no protobuf: an
 *   ack to the sender, the frame to the room's other clients). When a target is
 *   missed on saturated CPU (the machine's cores, or the server's one event loop:
 *   `parley serve` is one Node process), one more full-speed parley
 *   run under `--cpu-prof` says where the server's time goes.
 *
 * Servers run in child processes (`node bin/parley.js serve`; this file with
 * `raw-server` for the baseline); this process only generates load. Loopback
 * only, a fresh database dropped at the end, bounded in time. It reports; it
 * does not pass or fail (exit 0 unless it could not run at all).
 *
 * Environment: C, R, W, BENCH_SECONDS; BENCH_PROFILE=1 always profiles, =0 never;
 * BENCH_RUNS picks runs (comma-separated: serve, traced, split, raw; default all);
 * BENCH_SERVER_FLAGS adds node/V8 flags to the servers (e.g. --trace-gc).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { mintToken } from "../src/auth/tokens.js";
import { createTestDatabase, type TestDatabase } from "../test/support/database.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);

/** Targets from the design notes, for this 2-core machine. */
const TARGET = { storedPerSecond: 5_000, deliveriesPerSecond: 50_000, p99AtHalfRateMs: 25 } as const;

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return value;
}

// ---- the raw ws baseline (child process) --------------------------------------------

/** `bench/e2e.ts raw-server`: a minimal room broadcast over ws, reporting its port on stdout. */
async function rawServer(): Promise<void> {
  const rooms = new Map<string, Set<WebSocket>>();
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: 64 * 1024 });
  const welcome = Buffer.from('{"welcome":{}}');
  wss.on("connection", (socket, request) => {
    const room = new URL(request.url ?? "/", "http://raw").pathname.split("/").pop() ?? "";
    const members = rooms.get(room) ?? new Set<WebSocket>();
    rooms.set(room, members);
    members.add(socket);
    socket.on("close", () => members.delete(socket));
    socket.on("message", (data: RawData) => {
      const text = rawText(data);
      // The request id is all the ack needs; no JSON parse, no schema.
      const start = text.indexOf('"requestId":"') + 13;
      const requestId = text.slice(start, text.indexOf('"', start));
      socket.send(`{"requestId":"${requestId}","sendAck":{}}`);
      // Encoded once, like parley's EncodedEvent.
      const frame = Buffer.from(`{"message":${text}}`);
      for (const peer of members) if (peer !== socket && peer.readyState === WebSocket.OPEN) peer.send(frame, { binary: false });
    });
    socket.send(welcome, { binary: false });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const address = http.address();
  process.stdout.write(`${JSON.stringify({ msg: "raw serving", port: typeof address === "object" && address !== null ? address.port : 0 })}\n`);
  const stop = () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    http.close(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // Never outlive the benchmark.
  process.stdin.on("end", stop);
  process.stdin.resume();
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return data instanceof ArrayBuffer ? Buffer.from(data).toString("utf8") : data.toString("utf8");
}

// ---- server child processes -----------------------------------------------------------

interface ServerChild {
  readonly child: ChildProcess;
  readonly port: number;
  /** warn/error/fatal log lines seen, by message. */
  readonly problems: Map<string, number>;
  stop(): Promise<void>;
}

/** Spawns `args`, waits for the JSON log line `ready` picks the port from, keeps stdout drained. */
async function startChild(label: string, args: readonly string[], env: NodeJS.ProcessEnv, ready: (line: Record<string, unknown>) => number | undefined): Promise<ServerChild> {
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ["pipe", "pipe", "pipe"] });
  const problems = new Map<string, number>();
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => { resolve(); }));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${label} did not start within 60 s; stderr: ${stderr}`));
    }, 60_000);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited during start-up (${signal ?? String(code)}); stderr: ${stderr}`));
    });
    createInterface({ input: child.stdout }).on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return; // a banner, not a log line
      }
      if (line.level === "warn" || line.level === "error" || line.level === "fatal") {
        const key = `${line.level}: ${typeof line.msg === "string" ? line.msg.slice(0, 100) : "?"}`;
        problems.set(key, (problems.get(key) ?? 0) + 1);
      }
      const found = ready(line);
      if (found !== undefined) {
        clearTimeout(timer);
        resolve(found);
      }
    });
  });
  return {
    child,
    port,
    problems,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/**
 * V8 tuning for the servers, as deploy/README.md recommends for load: a larger
 * young generation means fewer scavenges and less promotion of the many
 * short-lived frames and messages.
 */
const SERVER_NODE_OPTIONS = "--max-semi-space-size=64";
/** BENCH_SERVER_FLAGS: more node/V8 flags for the servers, as arguments (some, like --trace-gc, are refused in NODE_OPTIONS). */
const SERVER_FLAGS = (process.env.BENCH_SERVER_FLAGS ?? "").split(" ").filter((flag) => flag !== "");

function startParley(db: TestDatabase, secret: string, nodeFlags: readonly string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Promise<ServerChild> {
  return startChild(
    "parley serve",
    [...SERVER_FLAGS, ...nodeFlags, "bin/parley.js", "serve"],
    {
      ...process.env,
      DATABASE_URL: db.url,
      PARLEY_GRPC_ADDR: "127.0.0.1:0",
      PARLEY_HTTP_ADDR: "127.0.0.1:0",
      PARLEY_JWT_SECRET: secret,
      PARLEY_MIGRATE: "1",
      PARLEY_LOG_LEVEL: "info",
      NODE_OPTIONS: SERVER_NODE_OPTIONS,
      ...extraEnv,
    },
    (line) => (line.msg === "bridge serving" && typeof line.http === "string" ? Number(line.http.slice(line.http.lastIndexOf(":") + 1)) : undefined),
  );
}

/**
 * `parley core` and `parley bridge` as two processes (the bridge reaching core
 * over gRPC), the deployment that lets the bridge and core each use a core.
 */
async function startSplit(db: TestDatabase, secret: string): Promise<{ core: ServerChild; bridge: ServerChild }> {
  const base = { ...process.env, PARLEY_JWT_SECRET: secret, PARLEY_LOG_LEVEL: "info", NODE_OPTIONS: SERVER_NODE_OPTIONS };
  const core = await startChild(
    "parley core",
    [...SERVER_FLAGS, "bin/parley.js", "core"],
    { ...base, DATABASE_URL: db.url, PARLEY_GRPC_ADDR: "127.0.0.1:0", PARLEY_MIGRATE: "1" },
    (line) => (line.msg === "core serving" && typeof line.grpc === "string" ? Number(line.grpc.slice(line.grpc.lastIndexOf(":") + 1)) : undefined),
  );
  const bridge = await startChild(
    "parley bridge",
    [...SERVER_FLAGS, "bin/parley.js", "bridge"],
    { ...base, PARLEY_CORE_ADDR: `127.0.0.1:${core.port}`, PARLEY_HTTP_ADDR: "127.0.0.1:0" },
    (line) => (line.msg === "bridge serving" && typeof line.http === "string" ? Number(line.http.slice(line.http.lastIndexOf(":") + 1)) : undefined),
  );
  return { core, bridge };
}

function startRaw(): Promise<ServerChild> {
  return startChild("raw ws server", ["--import", "tsx", THIS_FILE, "raw-server"], process.env, (line) =>
    line.msg === "raw serving" && typeof line.port === "number" ? line.port : undefined,
  );
}

// ---- CPU accounting -------------------------------------------------------------------

/** Linux reports process times in clock ticks of 1/100 s. */
const MS_PER_TICK = 10;

async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) * MS_PER_TICK;
  } catch {
    return undefined;
  }
}

function machineBusyMs(): number {
  return os.cpus().reduce((sum, cpu) => sum + cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq, 0);
}

/** CPU ms of the PostgreSQL backends serving `db` (and its WAL writer), by pid. */
async function postgresCpu(db: TestDatabase): Promise<Map<number, number>> {
  const rows = await db.sql<{ pid: number }>(
    `select pid from pg_stat_activity where (datname = current_database() and pid <> pg_backend_pid()) or backend_type in ('walwriter', 'checkpointer', 'background writer')`,
  );
  const out = new Map<number, number>();
  for (const { pid } of rows) {
    const ms = await processCpuMs(pid);
    if (ms !== undefined) out.set(pid, ms);
  }
  return out;
}

interface CpuSnapshot {
  readonly at: number;
  readonly server: number | undefined;
  readonly postgres: Map<number, number>;
  readonly load: number;
  readonly machine: number;
}

async function cpuSnapshot(serverPid: number | readonly (number | undefined)[] | undefined, db: TestDatabase): Promise<CpuSnapshot> {
  const usage = process.cpuUsage();
  const pids = serverPid === undefined ? [] : typeof serverPid === "number" ? [serverPid] : serverPid.filter((pid): pid is number => pid !== undefined);
  let server: number | undefined;
  for (const pid of pids) {
    const ms = await processCpuMs(pid);
    if (ms !== undefined) server = (server ?? 0) + ms;
  }
  return {
    at: performance.now(),
    server,
    postgres: await postgresCpu(db),
    load: (usage.user + usage.system) / 1000,
    machine: machineBusyMs(),
  };
}

/** Percent of one core, over the interval (200% = both cores of this machine). */
interface CpuShare {
  readonly server: number | undefined;
  readonly postgres: number;
  readonly load: number;
  readonly machine: number;
}

function cpuShare(before: CpuSnapshot, after: CpuSnapshot): CpuShare {
  const wall = after.at - before.at;
  const pct = (ms: number) => (100 * ms) / wall;
  let pg = 0;
  for (const [pid, end] of after.postgres) pg += end - (before.postgres.get(pid) ?? end);
  return {
    server: after.server === undefined || before.server === undefined ? undefined : pct(after.server - before.server),
    postgres: pct(pg),
    load: pct(after.load - before.load),
    machine: pct(after.machine - before.machine),
  };
}

// ---- the load generator ---------------------------------------------------------------

interface PhaseOptions {
  readonly label: string;
  readonly port: number;
  /** Path of client i's connection (its room). */
  readonly pathOf: (client: number) => string;
  /** Client i's token, in the query string. */
  readonly tokens: readonly string[];
  /** The first frame after which a client may send (parley: the room's caught_up). */
  readonly readyPrefix: string;
  readonly window: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Sends per second per client; undefined: as fast as the window allows. */
  readonly ratePerClient?: number;
  readonly cpu: () => Promise<CpuSnapshot>;
}

interface PhaseResult {
  readonly label: string;
  readonly seconds: number;
  readonly stored: number;
  /** Every send_ack of the phase, warm-up and drain included (for the row count check). */
  readonly ackedAll: number;
  readonly deliveries: number;
  readonly errors: Map<string, number>;
  readonly latenciesMs: Float64Array;
  /** Send→ack latencies of the warm-up, sorted (what the measured window leaves out). */
  readonly warmupLatenciesMs: Float64Array;
  /** Open-loop ticks that found the window full. */
  readonly windowFull: number;
  readonly closes: Map<number, number>;
  readonly cpu: CpuShare;
  readonly measuredFrom: bigint;
  readonly measuredTo: bigint;
  /** In every client_msg_id of the run ("e2e-<tag>-<client>-<seq>"). */
  readonly tag: string;
}

const MESSAGE_PREFIX = Buffer.from('{"message"');
const REQUEST_PREFIX = Buffer.from('{"requestId"');

/** Compares in place: the load generator sees every delivery, and a subarray per frame is garbage its GC pays for. */
function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Runs one phase: connects every client, sends for warm-up + measurement, and
 * counts only what happens inside the measurement window. Frames are sorted by
 * prefix; only answers are parsed, so the load generator stays cheap.
 */
async function runPhase(options: PhaseOptions): Promise<PhaseResult> {
  const tag = randomBytes(3).toString("hex");
  let measuring = false;
  let sending = true;
  let stored = 0;
  let ackedAll = 0;
  let deliveries = 0;
  let windowFull = 0;
  const errors = new Map<string, number>();
  const closes = new Map<number, number>();
  const latencies = new Samples();
  const warmupLatencies = new Samples();
  let warmingUp = true;
  let inflightTotal = 0;

  const sockets: WebSocket[] = [];
  const senders: (() => boolean)[] = [];
  await Promise.all(
    options.tokens.map(
      (token, index) =>
        new Promise<void>((resolve, reject) => {
          const socket = new WebSocket(`ws://127.0.0.1:${options.port}${options.pathOf(index)}?token=${token}`, { perMessageDeflate: false });
          sockets.push(socket);
          const sentAt = new Map<number, number>();
          let seq = 0;
          let inflight = 0;
          let ready = false;
          const send = (): boolean => {
            if (!sending || inflight >= options.window || socket.readyState !== WebSocket.OPEN) return false;
            seq++;
            inflight++;
            inflightTotal++;
            sentAt.set(seq, performance.now());
            socket.send(`{"requestId":"${seq}","send":{"seq":"${seq}","body":"bench message ${seq} from client ${index}","clientMsgId":"e2e-${tag}-${index}-${seq}"}}`);
            return true;
          };
          senders.push(send);
          socket.on("message", (data: RawData) => {
            const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
            if (startsWith(bytes, MESSAGE_PREFIX)) {
              if (measuring) deliveries++;
              return;
            }
            if (!ready) {
              if (bytes.toString("utf8", 0, options.readyPrefix.length) === options.readyPrefix) {
                ready = true;
                resolve();
              }
              return;
            }
            if (!startsWith(bytes, REQUEST_PREFIX)) return;
            const answer = JSON.parse(bytes.toString("utf8")) as { requestId?: string; sendAck?: unknown; error?: { category?: string } };
            const answered = Number(answer.requestId);
            const started = sentAt.get(answered);
            if (started === undefined) return;
            sentAt.delete(answered);
            inflight--;
            inflightTotal--;
            if (answer.sendAck !== undefined) {
              ackedAll++;
              if (measuring) {
                stored++;
                latencies.add(performance.now() - started);
              } else if (warmingUp) {
                warmupLatencies.add(performance.now() - started);
              }
            } else {
              const category = answer.error?.category ?? "unknown answer";
              errors.set(category, (errors.get(category) ?? 0) + 1);
            }
            if (options.ratePerClient === undefined) send();
          });
          socket.on("close", (code) => {
            closes.set(code, (closes.get(code) ?? 0) + 1);
            if (!ready) reject(new Error(`${options.label}: client ${index} closed (${code}) before it was ready`));
          });
          socket.on("error", (error) => {
            if (!ready) reject(error);
          });
        }),
    ),
  );

  /** Each paced client's pending timer. */
  const timers: NodeJS.Timeout[] = [];
  if (options.ratePerClient === undefined) {
    for (const send of senders) while (send());
  } else {
    // Open loop: each client sends on its own clock (random phase), the window still caps it.
    const periodMs = 1000 / options.ratePerClient;
    senders.forEach((send, index) => {
      let next = performance.now() + Math.random() * periodMs;
      const tick = () => {
        if (!sending) return;
        if (!send()) windowFull++;
        next += periodMs;
        timers[index] = setTimeout(tick, Math.max(0, next - performance.now()));
      };
      timers[index] = setTimeout(tick, next - performance.now());
    });
  }

  await sleep(options.warmupMs);
  const before = await options.cpu();
  const measuredFrom = process.hrtime.bigint();
  warmingUp = false;
  measuring = true;
  await sleep(options.measureMs);
  measuring = false;
  const measuredTo = process.hrtime.bigint();
  const after = await options.cpu();
  const seconds = Number(measuredTo - measuredFrom) / 1e9;
  sending = false;
  for (const timer of timers) clearTimeout(timer);
  // Let what is in flight be answered before the sockets go.
  const deadline = performance.now() + 10_000;
  while (inflightTotal > 0 && performance.now() < deadline) await sleep(20);
  for (const socket of sockets) socket.close(1000);
  await sleep(200);
  for (const socket of sockets) socket.terminate();
  closes.delete(1000);
  closes.delete(1005);
  return {
    label: options.label,
    seconds,
    stored,
    ackedAll,
    deliveries,
    errors,
    latenciesMs: latencies.sorted(),
    warmupLatenciesMs: warmupLatencies.sorted(),
    windowFull,
    closes,
    cpu: cpuShare(before, after),
    measuredFrom,
    measuredTo,
    tag,
  };
}

/** A growable list of numbers. */
class Samples {
  #values = new Float64Array(1 << 16);
  #count = 0;

  add(value: number): void {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#count++] = value;
  }

  sorted(): Float64Array {
    return this.#values.slice(0, this.#count).sort();
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- CPU profile summary ----------------------------------------------------------------

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const NODE_CORE = "node core";

/** The group a function belongs to by where its code lives; NODE_CORE is re-attributed to its caller. */
function groupOf(url: string, name: string): string {
  if (name === "(idle)") return "idle";
  if (name === "(root)") return NODE_CORE;
  if (name === "(garbage collector)") return "V8 garbage collector";
  if (name === "(program)" || (url === "" && name.startsWith("("))) return "V8 native, unattributed (program)";
  if (url === "node:async_hooks" || url === "node:internal/async_hooks") return "async_hooks (OpenTelemetry context propagation)";
  if (url.includes("/node_modules/ws/")) return "ws";
  if (url.includes("/node_modules/@bufbuild/protobuf/") || url.includes("/gen/")) return "protobuf encode/decode";
  if (url.includes("/node_modules/@grpc/") || url.includes("/node_modules/@js-sdsl/")) return "grpc-js";
  if (/\/node_modules\/(pg|pg-[a-z-]+|postgres-[a-z-]+|@mikro-orm\/[a-z-]+|knex|kysely|tarn|dataloader)\//.test(url)) return "pg/MikroORM";
  if (url.includes("/node_modules/@opentelemetry/") || url.includes("/src/telemetry/")) return "OpenTelemetry";
  if (/\/node_modules\/(pino[a-z-]*|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free)\//.test(url)) return "logging (pino)";
  if (url.includes("/node_modules/jose/")) return "auth (jose)";
  if (url.includes("/node_modules/")) return `other deps (${/\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? "?"})`;
  if (url.includes("/src/")) return "our code (src/)";
  return NODE_CORE;
}

interface ProfileSummary {
  readonly file: string;
  readonly busyMs: number;
  readonly idleMs: number;
  readonly windowed: boolean;
  /** group → [self ms with the node-core work it called, of which node core]. */
  readonly groups: [string, { ms: number; nodeCoreMs: number }][];
  readonly top: { name: string; where: string; group: string; ms: number }[];
}

/**
 * Self time by group and by function, over the samples inside [from, to]
 * (hrtime ns: V8 stamps samples with the same monotonic clock). Time spent
 * in node core (sockets, streams, http2, buffers, timers) is charged to the
 * nearest caller that is not node core: a ws send's writev counts for ws.
 */
async function summarizeProfile(directory: string, from: bigint, to: bigint): Promise<ProfileSummary> {
  const files = (await readdir(directory)).filter((name) => name.endsWith(".cpuprofile"));
  // tsx runs its loader on a worker thread, which writes a profile of its own: take the biggest (main thread).
  const sized = await Promise.all(files.map(async (name) => ({ name, size: (await stat(path.join(directory, name))).size })));
  const main = sized.sort((a, b) => b.size - a.size)[0];
  if (main === undefined) throw new Error(`no .cpuprofile in ${directory}`);
  const file = path.join(directory, main.name);
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const owners = new Map<number, string>();
  const ownerOf = (id: number): string => {
    const known = owners.get(id);
    if (known !== undefined) return known;
    const frame = byId.get(id)?.callFrame;
    let owner = frame === undefined ? NODE_CORE : groupOf(frame.url, frame.functionName);
    if (owner === NODE_CORE) {
      const parent = parentOf.get(id);
      owner = parent === undefined ? NODE_CORE : ownerOf(parent);
    }
    owners.set(id, owner);
    return owner;
  };

  const fromUs = Number(from / 1000n);
  const toUs = Number(to / 1000n);
  const stamps: number[] = [];
  let at = profile.startTime;
  for (const delta of profile.timeDeltas) stamps.push((at += delta));
  // Fall back to the whole profile if the clocks do not line up.
  const windowed = stamps.some((stamp) => stamp >= fromUs && stamp <= toUs);
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => {
    const stamp = stamps[index] ?? 0;
    if (windowed && (stamp < fromUs || stamp > toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index + 1] ?? 0));
  });

  const groups = new Map<string, { ms: number; nodeCoreMs: number }>();
  const functions = new Map<string, { name: string; where: string; group: string; ms: number }>();
  let busy = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    const ms = us / 1000;
    const own = groupOf(frame.url, frame.functionName);
    if (own === "idle") {
      idle += ms;
      continue;
    }
    busy += ms;
    const owner = ownerOf(id);
    const group = own === NODE_CORE ? (owner === NODE_CORE ? "node core, no JS caller (event loop, I/O callbacks)" : owner) : own;
    const entry = groups.get(group) ?? { ms: 0, nodeCoreMs: 0 };
    entry.ms += ms;
    if (own === NODE_CORE) entry.nodeCoreMs += ms;
    groups.set(group, entry);
    const file = frame.url.replace(/^file:\/\//, "").replace(REPO, "").replace(/^.*\/node_modules\//, "");
    // Modules loaded through tsx report line 1 for everything: the file is what is known.
    const where = file === "" ? "(native)" : frame.lineNumber > 0 ? `${file}:${frame.lineNumber + 1}` : file;
    const label = own !== NODE_CORE ? own : owner === NODE_CORE ? "node core, no JS caller" : `node core, for ${owner}`;
    const key = `${frame.functionName}@${where}@${label}`;
    const fn = functions.get(key) ?? { name: frame.functionName === "" ? "(anonymous)" : frame.functionName, where, group: label, ms: 0 };
    fn.ms += ms;
    functions.set(key, fn);
  }
  return {
    file,
    busyMs: busy,
    idleMs: idle,
    windowed,
    groups: [...groups].sort((a, b) => b[1].ms - a[1].ms),
    top: [...functions.values()].sort((a, b) => b.ms - a.ms).slice(0, 20),
  };
}

// ---- report ---------------------------------------------------------------------------

const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–");

function row(result: PhaseResult): string {
  const stored = result.stored / result.seconds;
  const deliveries = result.deliveries / result.seconds;
  const cpu = result.cpu;
  const other = cpu.machine - (cpu.server ?? 0) - cpu.postgres - cpu.load;
  return `| ${result.label} | ${fmt(stored)} | ${fmt(deliveries)} | ${fmt(result.stored === 0 ? Number.NaN : result.deliveries / result.stored, 1)} | ${fmt(percentile(result.latenciesMs, 50), 1)} | ${fmt(percentile(result.latenciesMs, 99), 1)} | ${cpu.server === undefined ? "–" : fmt(cpu.server)} | ${fmt(cpu.postgres)} | ${fmt(cpu.load)} | ${fmt(Math.max(0, other))} | ${fmt(cpu.machine)} |`;
}

function anomalies(result: PhaseResult): string[] {
  const out: string[] = [];
  if (result.errors.size > 0) out.push(`${result.label}: error answers ${JSON.stringify(Object.fromEntries(result.errors))}`);
  if (result.closes.size > 0) out.push(`${result.label}: unexpected closes ${JSON.stringify(Object.fromEntries(result.closes))}`);
  if (result.windowFull > 0) out.push(`${result.label}: ${result.windowFull} paced sends skipped because the window was full`);
  return out;
}

// ---- main -----------------------------------------------------------------------------

const RUNS = ["serve", "traced", "split", "raw"] as const;
type Run = (typeof RUNS)[number];

/** BENCH_RUNS: which runs to make (all by default), e.g. `split,raw` while tuning the two-process deployment. */
function runsFromEnv(): ReadonlySet<Run> {
  const raw = process.env.BENCH_RUNS;
  if (raw === undefined || raw.trim() === "") return new Set(RUNS);
  const picked = raw.split(",").map((name) => name.trim());
  const unknown = picked.filter((name) => !(RUNS as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`BENCH_RUNS: unknown run ${unknown.join(", ")} (known: ${RUNS.join(", ")})`);
  return new Set(picked as Run[]);
}

/** Per second over the measured window. */
function rate(result: PhaseResult, what: "stored" | "deliveries"): number {
  return result[what] / result.seconds;
}

/** "stored ≥ 5,000/s: 6,045 met; …" for a full-speed run and its half-rate run. */
function targetLine(fullSpeed: PhaseResult, halfRate: PhaseResult): string {
  const verdict = (met: boolean) => (met ? "met" : "MISSED");
  const stored = rate(fullSpeed, "stored");
  const deliveries = rate(fullSpeed, "deliveries");
  const p99 = percentile(halfRate.latenciesMs, 99);
  return [
    `stored ≥ ${fmt(TARGET.storedPerSecond)}/s: ${fmt(stored)} ${verdict(stored >= TARGET.storedPerSecond)}`,
    `deliveries ≥ ${fmt(TARGET.deliveriesPerSecond)}/s: ${fmt(deliveries)} ${verdict(deliveries >= TARGET.deliveriesPerSecond)}`,
    `p99 at half rate ≤ ${TARGET.p99AtHalfRateMs} ms: ${fmt(p99, 1)} ms ${verdict(p99 <= TARGET.p99AtHalfRateMs)}`,
  ].join("; ");
}

async function main(): Promise<void> {
  const clients = intFromEnv("C", 100, 1, 5_000);
  const roomCount = intFromEnv("R", 10, 1, clients);
  const window = intFromEnv("W", 8, 1, 256);
  const seconds = intFromEnv("BENCH_SECONDS", 10, 1, 300);
  const profileMode = process.env.BENCH_PROFILE;
  const runs = runsFromEnv();
  const measureMs = seconds * 1000;
  const warmupMs = Math.min(2_000, Math.max(500, measureMs / 5));
  // A paced run follows a full-speed one, whose after-effects (collecting its
  // garbage, re-optimizing for the lighter load) last about 3 s here: the
  // paced runs measure the steady state after a longer warm-up, and report
  // the warm-up's own p99 beside it.
  const pacedWarmupMs = Math.max(warmupMs, Math.min(5_000, measureMs / 2));
  const children: ChildProcess[] = [];
  // Nothing here may run away: a hard stop well after the slowest expected finish (up to 8 runs).
  const hardStop = setTimeout(() => {
    process.stderr.write("bench:e2e: hard time limit reached; stopping\n");
    for (const child of children) child.kill("SIGKILL");
    process.exit(0);
  }, 10 * (measureMs + pacedWarmupMs) + 240_000);
  hardStop.unref();

  const secret = `bench-${randomBytes(24).toString("hex")}`;
  const users = Array.from({ length: clients }, (_, i) => `bench-user-${i}`);
  const tokens = await Promise.all(users.map((user) => mintToken(secret, user, { expiresInSeconds: 3600 })));
  const roomOf = (i: number) => `bench-room-${i % roomCount}`;
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? "cpu"}, Node ${process.version}`;
  process.stdout.write(`bench:e2e  C=${clients} R=${roomCount} W=${window} BENCH_SECONDS=${seconds} (warm-up ${warmupMs} ms, ${pacedWarmupMs} ms for paced runs)  ${machine}\n`);
  // The figures are shares of one small machine: say so when something else is using it.
  const idleFrom = machineBusyMs();
  await sleep(1_000);
  const busyBefore = (100 * (machineBusyMs() - idleFrom)) / 1_000;
  process.stdout.write(
    `machine before the run: ${fmt(busyBefore)}% busy of ${100 * os.cpus().length}%${busyBefore > 20 ? " — other work is running (see the other CPU % column)" : ""}\n\n`,
  );

  const db = await createTestDatabase();
  const results: PhaseResult[] = [];
  const notes: string[] = [];
  let profile: ProfileSummary | undefined;
  let profileDir: string | undefined;
  try {
    // 1. parley at full speed, then at half that rate.
    const parleyPhase = { pathOf: (i: number) => `/ws/chat/${roomOf(i)}`, tokens, readyPrefix: '{"caughtUp"', window, warmupMs, measureMs };
    let full: PhaseResult | undefined;
    let half: PhaseResult | undefined;
    if (runs.has("serve")) {
      const parley = await startParley(db, secret);
      children.push(parley.child);
      const cpu = () => cpuSnapshot(parley.child.pid, db);
      full = await runPhase({ ...parleyPhase, port: parley.port, cpu, label: "parley (bridge → core → PostgreSQL → fan-out)" });
      results.push(full);
      const halfRate = full.stored / full.seconds / 2;
      half = await runPhase({ ...parleyPhase, port: parley.port, cpu, label: `parley at half rate (${fmt(halfRate)} msgs/s offered)`, ratePerClient: halfRate / clients, warmupMs: pacedWarmupMs });
      results.push(half);
      await parley.stop();
      for (const [problem, count] of parley.problems) notes.push(`parley log: ${count} × ${problem}`);
    }

    // 1b. The same at full speed with every span recorded (sampling 100 %, spans
    //     dropped instead of exported): what tracing costs. The runs above use the
    //     default — the SDK on, spans not sampled unless an exporter is configured.
    let traced: PhaseResult | undefined;
    if (runs.has("traced")) {
      const parley = await startParley(db, secret, [], { OTEL_TRACES_SAMPLER: "always_on" });
      children.push(parley.child);
      traced = await runPhase({ ...parleyPhase, port: parley.port, label: "parley, every span recorded (OTEL_TRACES_SAMPLER=always_on)", cpu: () => cpuSnapshot(parley.child.pid, db) });
      results.push(traced);
      await parley.stop();
    }

    // 1c. Bridge and core as separate processes (server CPU is the two together).
    let separate: PhaseResult | undefined;
    let separateHalf: PhaseResult | undefined;
    if (runs.has("split")) {
      const split = await startSplit(db, secret);
      children.push(split.core.child, split.bridge.child);
      const cpu = () => cpuSnapshot([split.bridge.child.pid, split.core.child.pid], db);
      separate = await runPhase({ ...parleyPhase, port: split.bridge.port, cpu, label: "parley, bridge and core as two processes" });
      results.push(separate);
      // Half the target rate (the target's own latency condition: p99 at half of 5,000/s).
      const separateHalfRate = TARGET.storedPerSecond / 2;
      separateHalf = await runPhase({
        ...parleyPhase,
        port: split.bridge.port,
        cpu,
        label: `parley as two processes at half the target rate (${fmt(separateHalfRate)} msgs/s offered)`,
        ratePerClient: separateHalfRate / clients,
        warmupMs: pacedWarmupMs,
      });
      results.push(separateHalf);
      await split.bridge.stop();
      await split.core.stop();
      for (const [problem, count] of [...split.core.problems, ...split.bridge.problems]) notes.push(`parley log (two processes): ${count} × ${problem}`);
    }

    // 2. The raw ws baseline, same clients, same window.
    let rawResult: PhaseResult | undefined;
    if (runs.has("raw")) {
      const raw = await startRaw();
      children.push(raw.child);
      rawResult = await runPhase({
        label: "raw ws broadcast (no persistence, no protobuf)",
        port: raw.port,
        pathOf: (i) => `/ws/chat/${roomOf(i)}`,
        tokens,
        readyPrefix: '{"welcome"',
        window,
        warmupMs,
        measureMs,
        cpu: () => cpuSnapshot(raw.child.pid, db),
      });
      results.push(rawResult);
      // The same at half the target rate: the latency floor of these clients and ws on this machine.
      const rawHalfRate = TARGET.storedPerSecond / 2;
      results.push(
        await runPhase({
          label: `raw ws broadcast at half the target rate (${fmt(rawHalfRate)} msgs/s offered)`,
          port: raw.port,
          pathOf: (i) => `/ws/chat/${roomOf(i)}`,
          tokens,
          readyPrefix: '{"welcome"',
          window,
          warmupMs: pacedWarmupMs,
          measureMs,
          ratePerClient: rawHalfRate / clients,
          cpu: () => cpuSnapshot(raw.child.pid, db),
        }),
      );
      await raw.stop();
    }

    // 3. Where parley's time goes, when it misses a target on saturated CPU: both cores, or
    //    the one core `parley serve` can use (bridge and core share one event loop).
    if (full !== undefined && half !== undefined) {
      const p99Half = percentile(half.latenciesMs, 99);
      const missed =
        rate(full, "stored") < TARGET.storedPerSecond || rate(full, "deliveries") < TARGET.deliveriesPerSecond || !(p99Half <= TARGET.p99AtHalfRateMs);
      const machineSaturated = full.cpu.machine >= 0.85 * 100 * os.cpus().length;
      const serverSaturated = (full.cpu.server ?? 0) >= 90;
      const saturated = machineSaturated || serverSaturated;
      if (missed && saturated) {
        notes.push(
          `targets missed with ${[machineSaturated ? `the machine at ${fmt(full.cpu.machine)}%` : "", serverSaturated ? `the server process at ${fmt(full.cpu.server ?? 0)}% of its one core` : ""].filter((part) => part !== "").join(" and ")}`,
        );
      }
      if (profileMode === "1" || (profileMode !== "0" && missed && saturated)) {
        profileDir = await mkdtemp(path.join(os.tmpdir(), "parley-e2e-cpuprof-"));
        const parley = await startParley(db, secret, ["--cpu-prof", `--cpu-prof-dir=${profileDir}`]);
        children.push(parley.child);
        const profiled = await runPhase({ ...parleyPhase, port: parley.port, label: "parley under --cpu-prof", cpu: () => cpuSnapshot(parley.child.pid, db) });
        await parley.stop();
        results.push(profiled);
        profile = await summarizeProfile(profileDir, profiled.measuredFrom, profiled.measuredTo);
      } else if (missed && !saturated) {
        notes.push(
          `targets missed without saturating CPU (machine ${fmt(full.cpu.machine)}% of ${100 * os.cpus().length}%, server ${fmt(full.cpu.server ?? 0)}%): no profile taken (BENCH_PROFILE=1 forces one)`,
        );
      }
    }

    // ---- report
    const out: string[] = [];
    out.push("| run | stored msgs/s | deliveries/s | deliveries/msg | ack p50 ms | ack p99 ms | server CPU % | PostgreSQL CPU % | load gen CPU % | other CPU % | machine CPU % |");
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const result of results) out.push(row(result));
    const ratio = (a: number, b: number) => (b === 0 ? "–" : `${fmt((100 * a) / b, 1)}%`);
    out.push("");
    if (full !== undefined && rawResult !== undefined) {
      out.push(
        `parley / raw ws: stored msgs/s ${ratio(rate(full, "stored"), rate(rawResult, "stored"))}, deliveries/s ${ratio(rate(full, "deliveries"), rate(rawResult, "deliveries"))}, ack p50 ${fmt(percentile(full.latenciesMs, 50) / percentile(rawResult.latenciesMs, 50), 1)}×, ack p99 ${fmt(percentile(full.latenciesMs, 99) / percentile(rawResult.latenciesMs, 99), 1)}×`,
      );
    }
    if (separate !== undefined) {
      const parts = [
        full === undefined ? "" : `bridge + core separately store ${ratio(rate(separate, "stored"), rate(full, "stored"))} of the one-process rate (deliveries ${ratio(rate(separate, "deliveries"), rate(full, "deliveries"))})`,
        rawResult === undefined ? "" : `of raw ws: stored ${ratio(rate(separate, "stored"), rate(rawResult, "stored"))}, deliveries ${ratio(rate(separate, "deliveries"), rate(rawResult, "deliveries"))}`,
      ].filter((part) => part !== "");
      if (parts.length > 0) out.push(`two processes: ${parts.join("; ")}`);
    }
    if (separate !== undefined && separateHalf !== undefined) out.push(`targets, two processes: ${targetLine(separate, separateHalf)}`);
    if (traced !== undefined && full !== undefined) {
      out.push(`tracing: with every span recorded parley stores ${ratio(rate(traced, "stored"), rate(full, "stored"))} of the untraced rate (deliveries ${ratio(rate(traced, "deliveries"), rate(full, "deliveries"))})`);
    }
    if (full !== undefined && half !== undefined) out.push(`targets, one process: ${targetLine(full, half)}`);
    out.push(
      `CPU % is of one core over the measured window (${os.cpus().length} cores: ${100 * os.cpus().length}% is everything); "other" is what the rest of the machine used meanwhile (kernel softirq, other processes).`,
    );
    for (const result of results) {
      if (result.warmupLatenciesMs.length > 0 && result.label.includes("half")) {
        notes.push(
          `${result.label}: during its ${fmt(pacedWarmupMs / 1000)} s warm-up (right after the full-speed run) ack p50 ${fmt(percentile(result.warmupLatenciesMs, 50), 1)} ms, p99 ${fmt(percentile(result.warmupLatenciesMs, 99), 1)} ms`,
        );
      }
      notes.push(...anomalies(result));
    }
    // Every acknowledged send of the parley runs is a stored row, and nothing else is.
    const parleyAcks = results.filter((result) => !result.label.startsWith("raw ws")).reduce((sum, result) => sum + result.ackedAll, 0);
    const [rows] = await db.sql<{ count: string }>(`select count(*)::text as count from chat_messages`);
    if (Number(rows?.count) !== parleyAcks) notes.push(`stored rows ${rows?.count ?? "?"} ≠ send_acks ${parleyAcks}`);
    else out.push(`check: ${fmt(parleyAcks)} send_acks over the parley runs = ${fmt(Number(rows?.count))} rows in chat_messages`);
    // A batch commits in one statement, whose now() is every row's created_at: distinct values count commits.
    for (const result of results) {
      if (result.label.startsWith("raw ws")) continue;
      const [batches] = await db.sql<{ messages: string; commits: string }>(
        `select count(*)::text as messages, count(distinct created_at)::text as commits from chat_messages where client_msg_id like $1`,
        [`e2e-${result.tag}-%`],
      );
      const messages = Number(batches?.messages ?? 0);
      const commits = Number(batches?.commits ?? 0);
      if (commits > 0) out.push(`commits, ${result.label}: ${fmt(commits)} for ${fmt(messages)} messages (${fmt(messages / commits, 1)} per commit)`);
    }
    if (notes.length > 0) out.push("", ...notes.map((note) => `note: ${note}`));
    if (profile !== undefined) {
      out.push("");
      out.push(`CPU profile of the parley server process (${profile.windowed ? "measured window only" : "whole process"}; ${fmt(profile.busyMs)} ms busy, ${fmt(profile.idleMs)} ms idle): ${profile.file}`);
      out.push("", "| group (node-core work charged to its caller) | self ms | share of busy | of which node core |", "|---|---:|---:|---:|");
      for (const [group, { ms, nodeCoreMs }] of profile.groups) {
        out.push(`| ${group} | ${fmt(ms)} | ${fmt((100 * ms) / profile.busyMs, 1)}% | ${fmt(nodeCoreMs)} |`);
      }
      out.push("", "| top self-time functions | where | group | self ms | share of busy |", "|---|---|---|---:|---:|");
      for (const entry of profile.top) out.push(`| ${entry.name} | ${entry.where} | ${entry.group} | ${fmt(entry.ms)} | ${fmt((100 * entry.ms) / profile.busyMs, 1)}% |`);
    }
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await db.drop();
    clearTimeout(hardStop);
  }
}

if (process.argv[2] === "raw-server") {
  await rawServer();
} else {
  try {
    await main();
    process.exit(0);
  } catch (error) {
    process.stderr.write(`bench:e2e failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  }
}
