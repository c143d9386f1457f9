/**
 * `npm run bench:abuse`: what one user, one connection or one address can do
 * to everyone else (issue "Isolation"). Each scenario runs against a fresh
 * `parley serve` (or `parley core` + `parley bridge`) on loopback with a
 * fresh database: bystanders — ordinary users, one WebSocket each on their
 * own room — send at a steady rate throughout, and after a short warm-up an
 * attacker (a process of its own) attacks for BENCH_SECONDS:
 *
 *   baseline    no attack
 *   churn250    one connection cycling 64 subscribe / 64 unsubscribe frames at 250 frames/s
 *   churn750    the same at 750 frames/s
 *   senders     one user, 10 connections, each sending just under the per-connection frame rate
 *   flood       one connection writing frames as fast as its socket takes them
 *   idle        5,000 idle connections of one user from one address
 *   slowloris   1,000 upgrade requests whose headers never end
 *   grpc        one identity opening 5,000 concurrent Subscribe streams on core
 *
 * Reported per scenario: the bystanders' sends due in the window, how many
 * were not acknowledged (and why), their send→ack p50/p99/max, and what
 * happened to the attacker (connections refused at the upgrade, close codes
 * and when, RATE_LIMITED and other error answers), beside the baseline of
 * the same run. It measures and reports; it never fails on time (exit 0
 * unless it could not run at all). Every scenario stops by itself; its
 * processes, sockets and database are gone before the next one starts.
 *
 * Environment: BENCH_SECONDS (attack length, default 30); BENCH_ATTACKS
 * (comma-separated names above, default all; the baseline always runs);
 * BENCH_SERVERS=split for `parley core` + `parley bridge` (default
 * `parley serve`); BENCH_BYSTANDERS (default 5), BENCH_BYSTANDER_RATE
 * (sends/s each, default 20); BENCH_SENDER_CONNECTIONS (10),
 * BENCH_SENDER_RATE (sends/s per connection, default 95 % of the bridge's
 * default frame limit); BENCH_FLOOD_FRAME (send | ping, default send);
 * BENCH_IDLE_CONNECTIONS (5,000), BENCH_IDLE_CONCURRENCY (handshakes at a
 * time, 64); BENCH_SLOWLORIS (1,000), BENCH_SLOWLORIS_TRICKLE_MS (10,000);
 * BENCH_GRPC_STREAMS (5,000); BENCH_SERVER_FLAGS (node/V8 flags for the
 * servers, e.g. --cpu-prof). The servers inherit this environment, so any
 * PARLEY_* setting (limits among them) applies to them; the header lists
 * those set.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { sleep } from "../../src/wire/backoff.js";
import { createTestDatabase, type TestDatabase } from "../../test/support/database.js";
import type { AttackReport } from "./abuse/attack-plan.js";
import { AttackerProcess } from "./abuse/attacker-process.js";
import { type BystanderResult, Bystanders } from "./abuse/bystanders.js";
import { duration, fmt } from "./abuse/format.js";
import { CHURN_ROOMS, type Scenario, scenariosFromEnv } from "./abuse/scenarios.js";
import { machineBusyMs } from "./cpu.js";
import { warmUp } from "./abuse/warm-up.js";
import { seedRooms, type ServerChild, startParley, startSplit } from "./e2e/servers.js";
import { numberFromEnv } from "./env.js";
import { percentile } from "./latency.js";

/** Bystanders send this long before the attack starts (not measured). */
const WARMUP_MS = 2_000;
/** Between scenarios: the previous one's servers and database are gone; let the machine settle. */
const QUIET_GAP_MS = 2_000;
/** How long after its planned end the attacker's report may take (ending thousands of connections). */
const REPORT_GRACE_MS = 30_000;

const ATTACKER = "bench-attacker";
const ATTACK_ROOM = "abuse-attack";
const CHURN_ROOM_IDS = Array.from({ length: CHURN_ROOMS }, (_, i) => `abuse-churn-${i}`);
/** Rooms of the warm-up (warm-up.ts), apart from every room a scenario uses. */
const WARM_UP_ROOM_IDS = Array.from({ length: 16 }, (_, i) => `abuse-warm-up-${i}`);
const WARM_UP_USER = "bench-warm-up";

interface Settings {
  readonly seconds: number;
  readonly split: boolean;
  readonly secret: string;
  readonly bystanderRooms: readonly string[];
  readonly bystanderUsers: readonly string[];
  readonly bystanderTokens: readonly string[];
  readonly bystanderRate: number;
  readonly attackerToken: string;
  readonly warmUpToken: string;
}

interface ScenarioResult {
  readonly scenario: Scenario;
  readonly bystanders?: BystanderResult;
  readonly attack?: AttackReport;
  /** Why the scenario could not run. */
  readonly failure?: string;
  readonly notes: readonly string[];
}

/** What is running now, for the hard stop and Ctrl-C. */
const running = { servers: [] as ServerChild[], attacker: undefined as AttackerProcess | undefined, db: undefined as TestDatabase | undefined };

async function emergencyStop(why: string, exitCode = 0): Promise<never> {
  process.stderr.write(`bench:abuse: ${why}; stopping\n`);
  running.attacker?.kill();
  for (const server of running.servers) server.child.kill("SIGKILL");
  await running.db?.drop().catch(() => undefined);
  process.exit(exitCode);
}

async function startServers(db: TestDatabase, settings: Settings): Promise<{ port: number; grpcAddress: string }> {
  if (settings.split) {
    const { core, bridge } = await startSplit(db, settings.secret, "defaults");
    running.servers.push(core, bridge);
    return { port: bridge.port, grpcAddress: core.grpcAddress ?? "" };
  }
  const serve = await startParley(db, settings.secret, [], {}, "defaults");
  running.servers.push(serve);
  if (serve.grpcAddress === undefined) throw new Error("parley serve did not say where core serves gRPC");
  return { port: serve.port, grpcAddress: serve.grpcAddress };
}

/** Public rooms: one per bystander (its member), the attacker's (its member), and the churn's (no members; public rooms are readable by all). */
async function seed(db: TestDatabase, settings: Settings): Promise<void> {
  const users = [...settings.bystanderUsers, ATTACKER];
  const roomOf = (index: number) => settings.bystanderRooms[index] ?? ATTACK_ROOM;
  await seedRooms(db, [...settings.bystanderRooms, ATTACK_ROOM, ...CHURN_ROOM_IDS, ...WARM_UP_ROOM_IDS], users, roomOf);
}

function serverNotes(label: string, servers: readonly ServerChild[]): string[] {
  const notes: string[] = [];
  for (const server of servers) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) notes.push(`${label}: a server process exited during the scenario (${server.child.signalCode ?? String(server.child.exitCode)})`);
    const problems = [...server.problems].sort((a, b) => b[1] - a[1]);
    for (const [problem, count] of problems.slice(0, 5)) notes.push(`server log: ${fmt(count)} × ${problem}`);
    if (problems.length > 5) notes.push(`server log: ${problems.length - 5} more kinds of warning or error`);
  }
  return notes;
}

async function runScenario(scenario: Scenario, settings: Settings): Promise<ScenarioResult> {
  const durationMs = settings.seconds * 1000;
  const db = await createTestDatabase();
  running.db = db;
  let bystanders: Bystanders | undefined;
  try {
    const { port, grpcAddress } = await startServers(db, settings);
    await seed(db, settings);
    bystanders = await Bystanders.start({ port, rooms: settings.bystanderRooms, tokens: settings.bystanderTokens, ratePerSecond: settings.bystanderRate });
    const plan = scenario.plan?.({ bridgePort: port, grpcAddress, token: settings.attackerToken, durationMs, churnRooms: CHURN_ROOM_IDS, attackRoom: ATTACK_ROOM });
    if (plan !== undefined) running.attacker = await AttackerProcess.start();
    await warmUp(port, settings.warmUpToken, WARM_UP_ROOM_IDS);
    await sleep(WARMUP_MS);
    bystanders.openWindow();
    const report = plan === undefined ? undefined : running.attacker?.run(plan, REPORT_GRACE_MS);
    await sleep(durationMs);
    bystanders.closeWindow();
    const attack = await report;
    const result = await bystanders.stop();
    bystanders = undefined;
    await running.attacker?.exit(20_000);
    return { scenario, bystanders: result, attack, notes: serverNotes(scenario.name, running.servers) };
  } catch (error) {
    return { scenario, failure: error instanceof Error ? error.message : String(error), notes: serverNotes(scenario.name, running.servers) };
  } finally {
    await bystanders?.stop();
    running.attacker?.kill();
    running.attacker = undefined;
    for (const server of running.servers) await server.stop();
    running.servers = [];
    await db.drop();
    running.db = undefined;
  }
}

function row(result: ScenarioResult): string {
  const label = result.scenario.label;
  if (result.failure !== undefined || result.bystanders === undefined) return `| ${label} | – | – | – | – | – | could not run: ${result.failure ?? "?"} |`;
  const by = result.bystanders;
  const max = by.latenciesMs.at(-1) ?? Number.NaN;
  return `| ${label} | ${fmt(by.offered)} | ${fmt(by.offered - by.acked)} | ${fmt(percentile(by.latenciesMs, 50), 1)} | ${fmt(percentile(by.latenciesMs, 99), 1)} | ${fmt(max, 1)} | ${result.attack?.summary ?? "–"} |`;
}

function details(result: ScenarioResult): string[] {
  const lines: string[] = [];
  const by = result.bystanders;
  if (by !== undefined) {
    lines.push(`bystanders: not acknowledged: ${by.failures.describe()}; closes: ${by.closes.describe()}; room feeds ended: ${by.feedEnds.describe()}`);
    lines.push(`bystanders: slowest ack per second of the attack (ms): ${by.slowestBySecond.map((ms) => fmt(ms, 0)).join(" ")}`);
  }
  if (result.attack !== undefined) lines.push(...result.attack.details.map((line) => `attacker: ${line}`));
  lines.push(...result.notes);
  return lines;
}

/** The PARLEY_* settings of this environment, which the servers inherit (credentials left out). */
function passedThrough(): string {
  const names = Object.keys(process.env)
    .filter((name) => name.startsWith("PARLEY_") && !/SECRET|TOKEN|KEY/.test(name))
    .sort();
  return names.length === 0 ? "none" : names.map((name) => `${name}=${process.env[name] ?? ""}`).join(" ");
}

async function main(): Promise<void> {
  const seconds = numberFromEnv("BENCH_SECONDS", 30, 1, 600, { integer: true });
  const bystanderCount = numberFromEnv("BENCH_BYSTANDERS", 5, 1, 200, { integer: true });
  const bystanderRate = numberFromEnv("BENCH_BYSTANDER_RATE", 20, 0.1, 1_000);
  const servers = process.env.BENCH_SERVERS ?? "serve";
  if (servers !== "serve" && servers !== "split") throw new Error(`BENCH_SERVERS must be serve or split, got "${servers}"`);
  const scenarios = scenariosFromEnv();
  const hardStop = setTimeout(() => void emergencyStop("hard time limit reached"), scenarios.length * (seconds * 1000 + 180_000) + 60_000);
  hardStop.unref();
  process.once("SIGINT", () => void emergencyStop("interrupted"));
  process.once("SIGTERM", () => void emergencyStop("terminated"));

  const secret = `bench-${randomBytes(24).toString("hex")}`;
  const bystanderUsers = Array.from({ length: bystanderCount }, (_, i) => `bench-bystander-${i}`);
  const settings: Settings = {
    seconds,
    split: servers === "split",
    secret,
    bystanderUsers,
    bystanderRooms: bystanderUsers.map((_, i) => `abuse-room-${i}`),
    bystanderTokens: await Promise.all(bystanderUsers.map((user) => mintToken(secret, user, { expiresInSeconds: 3600 }))),
    bystanderRate,
    attackerToken: await mintToken(secret, ATTACKER, { expiresInSeconds: 3600 }),
    warmUpToken: await mintToken(secret, WARM_UP_USER, { expiresInSeconds: 3600 }),
  };
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? "cpu"}, Node ${process.version}`;
  process.stdout.write(
    `bench:abuse  ${scenarios.length} scenarios of ${seconds} s (after ${duration(WARMUP_MS)} of warm-up each), ${servers === "split" ? "parley core + parley bridge" : "parley serve"}, ${bystanderCount} bystanders at ${fmt(bystanderRate, 1)} sends/s each  ${machine}\n`,
  );
  process.stdout.write(`PARLEY_* settings passed to the servers: ${passedThrough()}\n`);
  const idleFrom = await machineBusyMs();
  await sleep(1_000);
  const busyBefore = (100 * ((await machineBusyMs()) - idleFrom)) / 1_000;
  process.stdout.write(`machine before the run: ${fmt(busyBefore)}% busy of ${100 * os.cpus().length}%${busyBefore > 20 ? " — other work is running; the figures are only indicative" : ""}\n\n`);

  const results: ScenarioResult[] = [];
  for (const [index, scenario] of scenarios.entries()) {
    if (index > 0) await sleep(QUIET_GAP_MS);
    process.stderr.write(`bench:abuse: ${scenario.name} …\n`);
    results.push(await runScenario(scenario, settings));
  }

  const welcome = results.find((result) => result.bystanders?.welcome !== undefined)?.bystanders?.welcome;
  const out = [
    "| scenario | bystander sends | failed | p50 ms | p99 ms | max ms | attacker outcome |",
    "|---|---:|---:|---:|---:|---:|---|",
    ...results.map(row),
    "",
    "bystander sends: sends due in the attack's window (open loop); failed: those not acknowledged, for the reasons below; p50/p99/max: send→ack of the acknowledged ones.",
    `welcome of a bystander's connection: ${welcome ?? "–"}`,
  ];
  for (const result of results) out.push("", `${result.scenario.name} — ${result.scenario.label}:`, ...details(result).map((line) => `  ${line}`));
  process.stdout.write(`${out.join("\n")}\n`);
  clearTimeout(hardStop);
}

try {
  await main();
  process.exit(0);
} catch (error) {
  process.stderr.write(`bench:abuse failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  await emergencyStop("failed", 1);
}
