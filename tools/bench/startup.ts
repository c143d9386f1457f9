/**
 * `npm run bench:startup`: how long `parley core`, `parley bridge` and
 * `parley serve` take from the process's spawn to the log line that says it
 * serves (core: "core serving"; bridge and serve: "bridge serving"), against
 * a running PostgreSQL (a fresh, migrated database), side by side with the
 * same command run from the TypeScript sources through tsx (what
 * bin/parley.js did before it ran built JavaScript). Each is started
 * BENCH_RUNS times (default 7), one at a time, on a quiet machine; it prints
 * median, fastest and slowest. It measures and reports; it does not pass or
 * fail.
 */
import { execFileSync, spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { mintToken, ROOMS_RELAY_SCOPE } from "../../src/runtime/auth/tokens.js";
import { createTestDatabase } from "../../test/support/database.js";
import { numberFromEnv } from "./env.js";

const RUNS = numberFromEnv("BENCH_RUNS", 7, 1, 100, { integer: true });
const SECRET = "bench-startup-secret-long-enough-for-hs256";
const RELAY = "bench-startup-relay";

interface Launch {
  readonly label: string;
  /** node arguments: the entry point and the command. */
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** The log line that means "serving". */
  readonly ready: string;
}

/** Spawns, waits for the ready line, kills; the ms from spawn to the line. */
function timeOnce(launch: Launch): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [...launch.args], { env: launch.env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${launch.label}: no "${launch.ready}" within 30 s\n${stderr}`));
    }, 30_000);
    createInterface({ input: child.stdout }).on("line", (text) => {
      if (!text.includes(`"msg":"${launch.ready}"`)) return;
      const ms = performance.now() - started;
      clearTimeout(timer);
      child.once("exit", () => {
        resolve(ms);
      });
      child.kill("SIGKILL");
    });
    child.once("exit", (code) => {
      if (code !== null) {
        clearTimeout(timer);
        reject(new Error(`${launch.label} exited with ${code} before serving\n${stderr}`));
      }
    });
  });
}

async function measure(launch: Launch): Promise<string> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) times.push(await timeOnce(launch));
  times.sort((a, b) => a - b);
  const ms = (value: number | undefined) => `${Math.round(value ?? Number.NaN)}`;
  return `| ${launch.label} | ${ms(times[Math.floor(times.length / 2)])} | ${ms(times[0])} | ${ms(times.at(-1))} |`;
}

const db = await createTestDatabase();
try {
  // Built before any timing: the first start after a change would build.
  const built = execFileSync(process.execPath, ["scripts/build.mjs"], { encoding: "utf8" }).trim();
  const relayToken = await mintToken(SECRET, RELAY, { scopes: [ROOMS_RELAY_SCOPE], expiresInSeconds: 3600 });
  const base: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url, PARLEY_JWT_SECRET: SECRET, PARLEY_RELAY_SUBJECTS: RELAY, PARLEY_LOG_LEVEL: "info", PARLEY_GRPC_ADDR: "127.0.0.1:0", PARLEY_HTTP_ADDR: "127.0.0.1:0" };
  // Migrated once, before any timing: the starts below migrate nothing.
  await timeOnce({ label: "migrate", args: ["bin/parley.js", "core"], env: { ...base, PARLEY_MIGRATE: "1" }, ready: "core serving" });
  // A core for the bridges to reach (the bridge's own start is timed, not core's).
  const core = spawn(process.execPath, ["bin/parley.js", "core"], { env: { ...base, PARLEY_GRPC_ADDR: "127.0.0.1:0" }, stdio: ["ignore", "pipe", "inherit"] });
  const coreAddress = await new Promise<string>((resolve) => {
    createInterface({ input: core.stdout }).on("line", (text) => {
      const match = /"msg":"core serving"/.test(text) ? /"grpc":"([^"]+)"/.exec(text) : null;
      if (match?.[1] !== undefined) resolve(match[1]);
    });
  });
  const bridgeEnv = { ...base, PARLEY_CORE_ADDR: coreAddress, PARLEY_BRIDGE_TOKEN: relayToken };
  const tsx = ["--import", "tsx", "src/cli.ts"];
  const launches: Launch[] = [
    { label: "parley core (built)", args: ["bin/parley.js", "core"], env: base, ready: "core serving" },
    { label: "parley core (tsx)", args: [...tsx, "core"], env: base, ready: "core serving" },
    { label: "parley bridge (built)", args: ["bin/parley.js", "bridge"], env: bridgeEnv, ready: "bridge serving" },
    { label: "parley bridge (tsx)", args: [...tsx, "bridge"], env: bridgeEnv, ready: "bridge serving" },
    { label: "parley serve (built)", args: ["bin/parley.js", "serve"], env: base, ready: "bridge serving" },
    { label: "parley serve (tsx)", args: [...tsx, "serve"], env: base, ready: "bridge serving" },
  ];
  const rows: string[] = [];
  for (const launch of launches) rows.push(await measure(launch));
  core.kill("SIGTERM");
  process.stdout.write(
    [
      `bench:startup  ${RUNS} starts each, spawn → "serving" log line, against PostgreSQL (database migrated before); ${built}`,
      "",
      "| command | median ms | fastest ms | slowest ms |",
      "|---|---:|---:|---:|",
      ...rows,
      "",
    ].join("\n"),
  );
} finally {
  await db.drop();
}
