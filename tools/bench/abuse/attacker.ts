/**
 * The attacker of `npm run bench:abuse`, in a process of its own so that its
 * load does not share an event loop with the bystanders whose latency the
 * bench measures. Started by attacker-process.ts: says "ready", takes one
 * "start" with its plan, attacks until the plan's duration is over, waits a
 * moment for the last answers, reports, ends every connection and exits. It
 * also exits when its parent goes away.
 */
import { type AttackerChildMessage, type AttackPlan, parseParentMessage } from "./attack-plan.js";
import { AttackerLog } from "./attacker-log.js";
import { grpcStreams } from "./grpc-streams.js";
import { slowloris } from "./slowloris.js";
import { type AttackEnd, churn, flood, idle, senders } from "./ws-attacks.js";
import { sleep } from "../../../src/wire/backoff.js";

/** After the deadline: answers to frames already written still count. */
const LAST_ANSWERS_MS = 1_000;

/** Resolves once the message is handed to the channel, so that exiting after it does not lose it. */
function send(message: AttackerChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) resolve();
    else process.send(message, undefined, undefined, () => { resolve(); });
  });
}

function attack(plan: AttackPlan, log: AttackerLog): Promise<AttackEnd> {
  switch (plan.kind) {
    case "churn":
      return churn(plan, log);
    case "senders":
      return senders(plan, log);
    case "flood":
      return flood(plan, log);
    case "idle":
      return idle(plan, log);
    case "slowloris":
      return slowloris(plan, log);
    case "grpc":
      return grpcStreams(plan, log);
  }
}

async function run(plan: AttackPlan): Promise<void> {
  const log = new AttackerLog();
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const end = await attack(plan, log);
  log.stopClock();
  // The attacker shares the machine with the servers: what it burnt itself is CPU they did not have.
  const cpu = process.cpuUsage(cpuBefore);
  const cpuShare = (cpu.user + cpu.system) / 1000 / (performance.now() - started);
  await sleep(LAST_ANSWERS_MS);
  const own = `the attacker's own process used ${Math.round(cpuShare * 100)}% of one core during the attack`;
  await send({ type: "report", summary: end.summary?.() ?? log.summary(), details: [...log.details(), ...end.notes(), own] });
  await Promise.all(end.sockets.map((socket) => socket.end()));
}

if (process.send === undefined) throw new Error("tools/bench/abuse/attacker.ts is started by tools/bench/abuse.ts (it needs an IPC channel)");
process.on("disconnect", () => process.exit(0));
process.on("message", (message: unknown) => {
  const parsed = parseParentMessage(message);
  if (parsed === undefined) return;
  if (parsed.type === "stop") process.exit(0);
  run(parsed.plan).then(
    () => process.exit(0),
    async (error: unknown) => {
      await send({ type: "failed", message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      process.exit(1);
    },
  );
});
void send({ type: "ready" });
