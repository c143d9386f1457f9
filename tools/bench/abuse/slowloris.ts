/**
 * Slowloris: TCP connections to the bridge that start an upgrade request and
 * never finish its headers (one more header line every trickleMs, as the
 * classic attack does to defeat per-read timeouts). Measured: how many were
 * accepted, how soon the server dropped them, and what it answered.
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import { sleep } from "../../../src/wire/backoff.js";
import { percentile } from "../latency.js";
import type { AttackerLog } from "./attacker-log.js";
import { duration, fmt } from "./format.js";
import { Tally } from "./tally.js";
import type { AttackEnd, PlanOf } from "./ws-attacks.js";

const CONNECT_TIMEOUT_MS = 10_000;

interface PartialRequest {
  readonly socket: net.Socket;
  readonly connectedAt: number;
  /** Set when the server ended the connection. */
  droppedAfterMs?: number;
  endedByUs?: boolean;
}

export async function slowloris(plan: PlanOf<"slowloris">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const partials: PartialRequest[] = [];
  /** What the server wrote before dropping a connection: its status line. */
  const answers = new Tally();
  const afterConnect = new Tally();
  let next = 0;

  const connectOne = () =>
    new Promise<void>((resolve) => {
      log.attempts++;
      const socket = net.connect({ host: "127.0.0.1", port: plan.bridgePort });
      socket.setTimeout(CONNECT_TIMEOUT_MS);
      let partial: PartialRequest | undefined;
      socket.once("timeout", () => {
        if (partial !== undefined) return;
        log.refusals.add("connect timeout");
        socket.destroy();
        resolve();
      });
      socket.once("connect", () => {
        socket.setTimeout(0);
        log.opened++;
        partial = { socket, connectedAt: performance.now() };
        partials.push(partial);
        // The request line and some headers, never the blank line that ends them.
        socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${plan.bridgePort}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`);
        resolve();
      });
      socket.on("data", (chunk: Buffer) => {
        answers.add(chunk.toString("latin1").split("\r\n", 1)[0]?.slice(0, 60) ?? "?");
      });
      socket.on("error", (error: NodeJS.ErrnoException) => {
        if (partial === undefined) {
          log.refusals.add(error.code ?? error.message.slice(0, 60));
          resolve();
        } else if (partial.endedByUs !== true) {
          afterConnect.add(error.code ?? error.message.slice(0, 60));
        }
      });
      socket.once("close", () => {
        if (partial !== undefined && partial.endedByUs !== true) partial.droppedAfterMs = performance.now() - partial.connectedAt;
        resolve();
      });
    });

  const opener = async () => {
    while (next < plan.connections && performance.now() < deadline) {
      next++;
      await connectOne();
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, opener));
  const connectedInMs = log.sinceStart();
  let line = 0;
  const trickle = setInterval(() => {
    line++;
    for (const partial of partials) if (partial.droppedAfterMs === undefined && !partial.socket.destroyed) partial.socket.write(`X-Slow-${line}: ${line}\r\n`);
  }, plan.trickleMs);
  await sleep(Math.max(0, deadline - performance.now()));
  clearInterval(trickle);

  const dropped = Float64Array.from(partials.flatMap((partial) => (partial.droppedAfterMs === undefined ? [] : [partial.droppedAfterMs]))).sort();
  const stillOpen = partials.length - dropped.length;
  const held = duration(deadline - log.startedAt);
  const droppedText =
    dropped.length === 0
      ? `none dropped within ${held}`
      : `${fmt(dropped.length)} dropped, after ${duration(percentile(dropped, 50))} (median), ${duration(dropped.at(-1) ?? Number.NaN)} at most`;
  return {
    sockets: partials.map((partial) => ({
      end: () => {
        partial.endedByUs = true;
        partial.socket.destroy();
        return Promise.resolve();
      },
    })),
    summary: () =>
      [
        `${fmt(log.opened)}/${fmt(log.attempts)} accepted`,
        ...(log.refusals.size > 0 ? [`refused: ${log.refusals.describe()}`] : []),
        droppedText,
        `${fmt(stillOpen)} still open after ${held}`,
      ].join("; "),
    notes: () => [
      `${fmt(log.attempts)} of ${fmt(plan.connections)} attempted (${plan.concurrency} at a time), connected in ${duration(connectedInMs)}; one more header line every ${duration(plan.trickleMs)}`,
      `server's answers before dropping: ${answers.describe()}; socket errors after connecting: ${afterConnect.describe()}`,
    ],
  };
}
