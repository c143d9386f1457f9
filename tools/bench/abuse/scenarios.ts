/**
 * The scenarios of `npm run bench:abuse` (issue "Isolation"), by the names
 * BENCH_ATTACKS picks them with, and the settings each reads from the
 * environment.
 */
import { DEFAULT_LIMITS } from "../../../src/bridge/limits.js";
import { numberFromEnv } from "../env.js";
import type { AttackPlan } from "./attack-plan.js";
import { fmt } from "./format.js";

/** What an attack is aimed at, filled in once the scenario's servers are up. */
interface Target {
  readonly bridgePort: number;
  readonly grpcAddress: string;
  /** The attacker's token. */
  readonly token: string;
  readonly durationMs: number;
  /** Public rooms the attacker may read (for the churn). */
  readonly churnRooms: readonly string[];
  /** A public room the attacker has joined (for sends and the gRPC follows). */
  readonly attackRoom: string;
}

export interface Scenario {
  readonly name: string;
  readonly label: string;
  /** Undefined for the baseline: bystanders alone. */
  readonly plan?: (target: Target) => AttackPlan;
}

/** Rooms the churn cycles over: as many as one connection may follow (64 by default). */
export const CHURN_ROOMS = DEFAULT_LIMITS.maxSubscriptions;

function floodFrame(): "send" | "ping" {
  const raw = process.env.BENCH_FLOOD_FRAME ?? "send";
  if (raw !== "send" && raw !== "ping") throw new Error(`BENCH_FLOOD_FRAME must be send or ping, got "${raw}"`);
  return raw;
}

/** Every scenario, in the order they run, with the settings from the environment. */
function allScenarios(): Scenario[] {
  const senderConnections = numberFromEnv("BENCH_SENDER_CONNECTIONS", 10, 1, 1_000, { integer: true });
  // Just under the per-connection frame limit, so that no one connection is over it.
  const senderRate = numberFromEnv("BENCH_SENDER_RATE", Math.floor(0.95 * DEFAULT_LIMITS.framesPerSecond), 1, 100_000);
  const frame = floodFrame();
  const idleConnections = numberFromEnv("BENCH_IDLE_CONNECTIONS", 5_000, 1, 50_000, { integer: true });
  const idleConcurrency = numberFromEnv("BENCH_IDLE_CONCURRENCY", 64, 1, 1_000, { integer: true });
  const slowConnections = numberFromEnv("BENCH_SLOWLORIS", 1_000, 1, 50_000, { integer: true });
  const trickleMs = numberFromEnv("BENCH_SLOWLORIS_TRICKLE_MS", 10_000, 100, 600_000, { integer: true });
  const streams = numberFromEnv("BENCH_GRPC_STREAMS", 5_000, 1, 100_000, { integer: true });
  const churn = (framesPerSecond: number): Scenario => ({
    name: `churn${framesPerSecond}`,
    label: `subscribe churn, ${fmt(framesPerSecond)} frames/s`,
    plan: (target) => ({ kind: "churn", ...targetOf(target), rooms: [...target.churnRooms], framesPerSecond }),
  });
  return [
    { name: "baseline", label: "baseline (no attack)" },
    churn(250),
    churn(750),
    {
      name: "senders",
      label: `${senderConnections} connections of one user, ${fmt(senderRate)} sends/s each`,
      plan: (target) => ({ kind: "senders", ...targetOf(target), room: target.attackRoom, connections: senderConnections, framesPerSecond: senderRate }),
    },
    {
      name: "flood",
      label: `one connection flooding ${frame} frames`,
      plan: (target) => ({ kind: "flood", ...targetOf(target), room: target.attackRoom, frame }),
    },
    {
      name: "idle",
      label: `${fmt(idleConnections)} idle connections, one user and address`,
      plan: (target) => ({ kind: "idle", ...targetOf(target), connections: idleConnections, concurrency: idleConcurrency }),
    },
    {
      name: "slowloris",
      label: `slowloris, ${fmt(slowConnections)} partial upgrades`,
      plan: (target) => ({ kind: "slowloris", ...targetOf(target), connections: slowConnections, concurrency: Math.min(100, slowConnections), trickleMs }),
    },
    {
      name: "grpc",
      label: `gRPC, ${fmt(streams)} Subscribe streams of one identity`,
      plan: (target) => ({ kind: "grpc", ...targetOf(target), room: target.attackRoom, streams }),
    },
  ];
}

function targetOf(target: Target) {
  return { bridgePort: target.bridgePort, grpcAddress: target.grpcAddress, token: target.token, durationMs: target.durationMs };
}

/** BENCH_ATTACKS: the scenarios to run, comma-separated (default all); the baseline always runs first. */
export function scenariosFromEnv(): Scenario[] {
  const all = allScenarios();
  const raw = process.env.BENCH_ATTACKS;
  if (raw === undefined || raw.trim() === "") return all;
  const picked = new Set(raw.split(",").map((name) => name.trim()).filter((name) => name !== ""));
  const unknown = [...picked].filter((name) => !all.some((scenario) => scenario.name === name));
  if (unknown.length > 0) throw new Error(`BENCH_ATTACKS: unknown scenario ${unknown.join(", ")} (known: ${all.map((scenario) => scenario.name).join(", ")})`);
  picked.add("baseline");
  return all.filter((scenario) => picked.has(scenario.name));
}
