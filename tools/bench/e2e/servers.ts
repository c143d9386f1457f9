/** The server child processes bench:e2e measures, each started on port 0 and stopped gracefully. */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TestDatabase } from "../../../test/support/database.js";
import { mintToken, ROOMS_RELAY_SCOPE } from "../../../src/runtime/auth/tokens.js";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const RAW_SERVER = fileURLToPath(new URL("raw-server.ts", import.meta.url));

export interface ServerChild {
  readonly child: ChildProcess;
  readonly port: number;
  /** Its Prometheus /metrics, when it serves one. */
  readonly metricsUrl?: string;
  /** Core's gRPC address (host:port), when the process serves core. */
  readonly grpcAddress?: string;
  /** warn/error/fatal log lines seen, by message. */
  readonly problems: Map<string, number>;
  stop(): Promise<void>;
}

/** BENCH_SERVER_OUTPUT=<prefix>: a server's lines that are not JSON log lines go to <prefix>-<server>.log. */
const OTHER_OUTPUT = process.env.BENCH_SERVER_OUTPUT === "" ? undefined : process.env.BENCH_SERVER_OUTPUT;

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
        // A banner or V8's own output (--trace-gc): kept only when asked for, stamped with this process's clock.
        if (OTHER_OUTPUT !== undefined) appendFileSync(`${OTHER_OUTPUT}-${label.replace(/ /g, "_")}.log`, `${(performance.now() / 1000).toFixed(3)} ${text}\n`);
        return;
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
/**
 * The young generation starts at that size: otherwise the one scavenge that
 * grows it (50–70 ms on the benchmark machine, as its new pages are first
 * touched) lands at some moment under load instead of at start-up. An
 * argument, not NODE_OPTIONS, which refuses this flag.
 */
const SERVER_V8_ARGS = ["--min-semi-space-size=64"];
/** BENCH_SERVER_FLAGS: more node/V8 flags for the servers, as arguments (some, like --trace-gc, are refused in NODE_OPTIONS). */
const SERVER_FLAGS = [...SERVER_V8_ARGS, ...(process.env.BENCH_SERVER_FLAGS ?? "").split(" ").filter((flag) => flag !== "")];

/**
 * The load generator is thousands of clients behind one loopback address,
 * each sending as fast as it is let: the bridge's per-address and per-user
 * caps (which a real deployment keeps) would measure themselves, not the
 * pipe. bench:abuse measures them, and starts its servers with
 * `limits: "defaults"`.
 */
const LOAD_GENERATOR_LIMITS: NodeJS.ProcessEnv = {
  PARLEY_WS_MAX_CONNECTIONS_PER_ADDRESS: "10000000",
  PARLEY_HTTP_MAX_PENDING_PER_ADDRESS: "10000000",
  PARLEY_HTTP_MAX_PENDING_CONNECTIONS: "10000000",
  PARLEY_WS_SENDS_PER_SECOND_PER_USER: "10000000",
  PARLEY_WS_SEND_BURST_PER_USER: "10000000",
};

/** Which limits a benchmark's servers run with: raised for a load generator (the default), or the shipped ones. */
export type BenchLimits = "load-generator" | "defaults";

function limitsEnv(limits: BenchLimits): NodeJS.ProcessEnv {
  return limits === "load-generator" ? LOAD_GENERATOR_LIMITS : {};
}

export async function startParley(
  db: TestDatabase,
  secret: string,
  nodeFlags: readonly string[] = [],
  extraEnv: NodeJS.ProcessEnv = {},
  limits: BenchLimits = "load-generator",
): Promise<ServerChild> {
  let grpcAddress: string | undefined;
  const server = await startChild(
    "parley serve",
    [...SERVER_FLAGS, ...nodeFlags, "bin/parley.js", "serve"],
    {
      ...process.env,
      DATABASE_URL: db.url,
      PARLEY_GRPC_ADDR: "127.0.0.1:0",
      PARLEY_HTTP_ADDR: "127.0.0.1:0",
      PARLEY_JWT_SECRET: secret,
      PARLEY_MIGRATE: "1",
      // The load sends to rooms nobody created: rooms on first use.
      PARLEY_LOG_LEVEL: "info",
      NODE_OPTIONS: SERVER_NODE_OPTIONS,
      ...limitsEnv(limits),
      ...extraEnv,
    },
    (line) => {
      // Core starts first and announces its gRPC address before the bridge serves.
      if (line.msg === "core serving" && typeof line.grpc === "string") grpcAddress = line.grpc;
      return line.msg === "bridge serving" && typeof line.http === "string" ? Number(line.http.slice(line.http.lastIndexOf(":") + 1)) : undefined;
    },
  );
  // The bridge serves /metrics beside its WebSockets (for the whole process).
  return { ...server, metricsUrl: `http://127.0.0.1:${server.port}/metrics`, grpcAddress };
}

/**
 * `parley core` and `parley bridge` as two processes (the bridge reaching core
 * over gRPC), the deployment that lets the bridge and core each use a core.
 */
export async function startSplit(db: TestDatabase, secret: string, limits: BenchLimits = "load-generator"): Promise<{ core: ServerChild; bridge: ServerChild }> {
  const base = { ...process.env, PARLEY_LOG_LEVEL: "info", NODE_OPTIONS: SERVER_NODE_OPTIONS };
  // Core serves /metrics on a port of its own, announced after its gRPC port.
  let grpcPort: number | undefined;
  let coreMetricsUrl: string | undefined;
  const core = await startChild(
    "parley core",
    [...SERVER_FLAGS, "bin/parley.js", "core"],
    { ...base, PARLEY_JWT_SECRET: secret, PARLEY_RELAY_SUBJECTS: "parley-bridge-bench", DATABASE_URL: db.url, PARLEY_GRPC_ADDR: "127.0.0.1:0", PARLEY_METRICS_ADDR: "127.0.0.1:0", PARLEY_MIGRATE: "1" },
    (line) => {
      if (line.msg === "core serving" && typeof line.grpc === "string") grpcPort = Number(line.grpc.slice(line.grpc.lastIndexOf(":") + 1));
      if (line.msg === "metrics serving" && typeof line.metrics === "string") coreMetricsUrl = line.metrics;
      return coreMetricsUrl === undefined ? undefined : grpcPort;
    },
  );
  const bridge = await startChild(
    "parley bridge",
    [...SERVER_FLAGS, "bin/parley.js", "bridge"],
    // The bridge holds no key, only its own relay credential.
    { ...base, ...limitsEnv(limits), PARLEY_BRIDGE_TOKEN: await mintToken(secret, "parley-bridge-bench", { scopes: [ROOMS_RELAY_SCOPE], expiresInSeconds: 12 * 3600 }), PARLEY_CORE_ADDR: `127.0.0.1:${core.port}`, PARLEY_HTTP_ADDR: "127.0.0.1:0" },
    (line) => (line.msg === "bridge serving" && typeof line.http === "string" ? Number(line.http.slice(line.http.lastIndexOf(":") + 1)) : undefined),
  );
  return {
    core: { ...core, metricsUrl: coreMetricsUrl, grpcAddress: `127.0.0.1:${core.port}` },
    bridge: { ...bridge, metricsUrl: `http://127.0.0.1:${bridge.port}/metrics` },
  };
}

export function startRaw(): Promise<ServerChild> {
  return startChild("raw ws server", ["--import", "tsx", RAW_SERVER], process.env, (line) =>
    line.msg === "raw serving" && typeof line.port === "number" ? line.port : undefined,
  );
}

/**
 * The benchmark's rooms as production has them: public rooms that every
 * client has joined (as RoomService.Join would leave them), so that each
 * send passes the permission check of a real member, and no room is made on
 * first use. Idempotent: called after each server start (the first one
 * migrates the database).
 */
export async function seedRooms(db: TestDatabase, rooms: readonly string[], users: readonly string[], roomOfUser: (index: number) => string): Promise<void> {
  await db.sql(`insert into rooms (id, kind, created_by) select id, 1, 'bench' from unnest($1::text[]) as id on conflict (id) do nothing`, [rooms]);
  await db.sql(
    `insert into room_members (room_id, user_id, state, role) select r, u, 2, 2 from unnest($1::text[], $2::text[]) as t(r, u) on conflict (room_id, user_id) do nothing`,
    [users.map((_, index) => roomOfUser(index)), users],
  );
}
