/**
 * The attacks made over WebSocket connections to the bridge: subscribe churn,
 * several paced senders of one user, a flood, and idle connections. Each runs
 * until its deadline; a connection the server closes is opened again after
 * the go_away's reconnect_after (1 s without one), as a persistent attacker
 * would, except for the idle connections, which are counted once.
 */
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import { sleep } from "../../../src/wire/backoff.js";
import type { AttackPlan } from "./attack-plan.js";
import { AttackSocket } from "./attack-socket.js";
import type { AttackerLog } from "./attacker-log.js";
import { duration, fmt } from "./format.js";

export type PlanOf<K extends AttackPlan["kind"]> = Extract<AttackPlan, { kind: K }>;

/**
 * What an attack leaves at its deadline: what to end (connections, streams),
 * and what to say about it once the last answers are in — lines of its own,
 * and for attacks that are not WebSocket connections, the table cell.
 */
export interface AttackEnd {
  readonly sockets: readonly { end(): Promise<void> }[];
  readonly notes: () => string[];
  readonly summary?: () => string;
}

const lateNote = (late: { frames: number }) => (late.frames > 0 ? [`${fmt(late.frames)} frames not sent: the attacker's own loop fell behind`] : []);

/** How often a paced sender looks at its clock. */
const TICK_MS = 10;
/** A flooding connection stops writing while the socket holds this much. */
const FLOOD_BUFFER_BYTES = 256 * 1024;
/** Frames a flooding connection writes per turn of the event loop, so that answers are still read. */
const FLOOD_FRAMES_PER_TURN = 500;
const DEFAULT_RECONNECT_MS = 1_000;

const url = (plan: AttackPlan, path: string) => `ws://127.0.0.1:${plan.bridgePort}${path}?token=${encodeURIComponent(plan.token)}`;

/** Resolves with the close, or undefined at the deadline. */
function closedOrDeadline(socket: AttackSocket, deadline: number) {
  return Promise.race([socket.closed, sleep(Math.max(0, deadline - performance.now())).then(() => undefined)]);
}

/**
 * Keeps one attacking connection up until `deadline`: `drive` starts the
 * attack on each new connection (and stops by itself when it closes).
 * Returns the connection still open at the deadline, if any.
 */
async function persistent(address: string, log: AttackerLog, deadline: number, drive: (socket: AttackSocket, serial: number) => void): Promise<AttackSocket | undefined> {
  for (let serial = 0; performance.now() < deadline; serial++) {
    const socket = new AttackSocket(address, log);
    const ready = await Promise.race([socket.ready, sleep(Math.max(0, deadline - performance.now())).then(() => undefined)]);
    if (ready === undefined) return socket;
    if (!ready) {
      await sleep(Math.min(DEFAULT_RECONNECT_MS, Math.max(0, deadline - performance.now())));
      continue;
    }
    drive(socket, serial);
    const closed = await closedOrDeadline(socket, deadline);
    if (closed === undefined) return socket;
    await sleep(Math.min(closed.reconnectAfterMs ?? DEFAULT_RECONNECT_MS, Math.max(0, deadline - performance.now())));
  }
  return undefined;
}

/**
 * Writes frame(0), frame(1), … at `framesPerSecond` until the socket closes
 * or the deadline. A late tick catches up at most 100 ms of frames; the rest
 * are counted in `late` (the attacker's own loop fell behind).
 */
function pace(socket: AttackSocket, framesPerSecond: number, deadline: number, frame: (n: number) => string, late: { frames: number }): void {
  const startedAt = performance.now();
  const catchUp = Math.max(1, Math.ceil(framesPerSecond / 10));
  let scheduled = 0;
  let n = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    if (!socket.isOpen || now >= deadline) {
      clearInterval(timer);
      return;
    }
    const due = Math.floor(((now - startedAt) / 1000) * framesPerSecond) - scheduled;
    const sending = Math.min(due, catchUp);
    for (let i = 0; i < sending; i++) socket.send(frame(n++));
    late.frames += due - sending;
    scheduled += due;
  }, TICK_MS);
}

/** One connection cycling 64 subscribes and 64 unsubscribes (over plan.rooms) at a fixed frame rate. */
export async function churn(plan: PlanOf<"churn">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const rooms = plan.rooms;
  const late = { frames: 0 };
  const frame = (n: number) => {
    const index = n % (2 * rooms.length);
    return index < rooms.length
      ? `{"requestId":"c${n}","subscribe":{"room":"${rooms[index] ?? ""}"}}`
      : `{"requestId":"c${n}","unsubscribe":{"room":"${rooms[index - rooms.length] ?? ""}"}}`;
  };
  const open = await persistent(url(plan, "/ws"), log, deadline, (socket) => {
    pace(socket, plan.framesPerSecond, deadline, frame, late);
  });
  return {
    sockets: open === undefined ? [] : [open],
    notes: () => [`offered ${fmt(plan.framesPerSecond)} frames/s: ${rooms.length} subscribe then ${rooms.length} unsubscribe, over and over`, ...lateNote(late)],
  };
}

/** `connections` connections of one user, each sending to plan.room at a fixed rate. */
export async function senders(plan: PlanOf<"senders">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const tag = randomBytes(3).toString("hex");
  const late = { frames: 0 };
  const body = "x".repeat(64);
  const open = await Promise.all(
    Array.from({ length: plan.connections }, (_, index) =>
      persistent(url(plan, "/ws"), log, deadline, (socket, serial) => {
        pace(socket, plan.framesPerSecond, deadline, (n) => `{"requestId":"s${n + 1}","send":{"seq":"${n + 1}","room":"${plan.room}","body":"${body}","clientMsgId":"atk-${tag}-${index}-${serial}-${n + 1}"}}`, late);
      }),
    ),
  );
  const seconds = plan.durationMs / 1000;
  return {
    sockets: open.filter((socket) => socket !== undefined),
    notes: () => [
      `offered ${fmt(plan.framesPerSecond)} send frames/s on each of ${plan.connections} connections (${fmt(plan.framesPerSecond * plan.connections)}/s in all); stored ${fmt(log.answers.get("sendAck"))} (${fmt(log.answers.get("sendAck") / seconds)}/s)`,
      ...lateNote(late),
    ],
  };
}

/** One connection writing frames as fast as its socket takes them. */
export async function flood(plan: PlanOf<"flood">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const tag = randomBytes(3).toString("hex");
  const frame =
    plan.frame === "ping"
      ? (n: number) => `{"requestId":"p${n}","ping":{}}`
      : (n: number, serial: number) => `{"requestId":"f${n}","send":{"seq":"${n}","room":"${plan.room}","body":"flood ${n}","clientMsgId":"flood-${tag}-${serial}-${n}"}}`;
  const open = await persistent(url(plan, "/ws"), log, deadline, (socket, serial) => {
    let n = 1;
    const pump = () => {
      if (!socket.isOpen || performance.now() >= deadline) return;
      for (let i = 0; i < FLOOD_FRAMES_PER_TURN && socket.bufferedAmount < FLOOD_BUFFER_BYTES; i++) socket.send(frame(n++, serial));
      // A full socket is looked at again shortly; otherwise at once, after pending I/O.
      if (socket.bufferedAmount >= FLOOD_BUFFER_BYTES) setTimeout(pump, 1);
      else setImmediate(pump);
    };
    pump();
  });
  return {
    sockets: open === undefined ? [] : [open],
    notes: () => [`${plan.frame} frames, written while the socket held under ${fmt(FLOOD_BUFFER_BYTES / 1024)} KiB${plan.frame === "send" ? `; stored ${fmt(log.answers.get("sendAck"))}` : ""}`],
  };
}

/** `connections` idle connections of one user from one address, opened `concurrency` at a time and held. */
export async function idle(plan: PlanOf<"idle">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const address = url(plan, "/ws");
  const sockets: AttackSocket[] = [];
  let next = 0;
  let lastOpenedAt = 0;
  const opener = async () => {
    while (next < plan.connections && performance.now() < deadline) {
      next++;
      const socket = new AttackSocket(address, log);
      sockets.push(socket);
      if (await socket.ready) lastOpenedAt = log.sinceStart();
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, opener));
  const attemptsDoneMs = log.sinceStart();
  await sleep(Math.max(0, deadline - performance.now()));
  const stillOpen = sockets.filter((socket) => socket.isOpen).length;
  return {
    sockets,
    notes: () => [
      `${fmt(log.attempts)} of ${fmt(plan.connections)} attempted (${plan.concurrency} handshakes at a time) in ${duration(attemptsDoneMs)}; the last one opened after ${duration(lastOpenedAt)}; ${fmt(stillOpen)} still open at the end`,
    ],
  };
}
