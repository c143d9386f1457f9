/**
 * The bystanders of `npm run bench:abuse`: ordinary users, each with one
 * WebSocket on its own room, sending at a steady rate (open loop, each on
 * its own clock) while an attack runs. Counted for the sends due inside the
 * measured window: acknowledged (with send→ack latency) or not, and why not —
 * an error answer (by category), lost when the connection closed, never
 * answered, or not sent at all because there was no connection. A bystander
 * whose connection closes opens a new one (after go_away.reconnect_after,
 * 1 s without one), as the client library would.
 */
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import { type RawData, WebSocket } from "ws";
import { sleep } from "../../../src/wire/backoff.js";
import { LatencySample } from "../latency.js";
import { bytesOf, durationMs, errorLabel, frameKind } from "./attack-socket.js";
import { Tally } from "./tally.js";

export interface BystanderOptions {
  readonly port: number;
  /** Bystander i's room and token. */
  readonly rooms: readonly string[];
  readonly tokens: readonly string[];
  readonly ratePerSecond: number;
}

export interface BystanderResult {
  /** Sends due in the window. */
  readonly offered: number;
  readonly acked: number;
  /** Send→ack latencies of the acknowledged ones, ascending. */
  readonly latenciesMs: Float64Array;
  /** Why the others were not acknowledged. */
  readonly failures: Tally;
  /** Closes the server decided, by code, and refused reconnects. */
  readonly closes: Tally;
  /** Ends of a room's automatic subscription (error or unsubscribed frames without a request). */
  readonly feedEnds: Tally;
  /** The limits the server announced in its welcome. */
  readonly welcome: string | undefined;
  /** The slowest ack of each second of the window (by when the send was made), for when the slow ones came. */
  readonly slowestBySecond: readonly number[];
}

/** A bystander keeps at most this many sends un-answered (under max_inflight_sends); ticks beyond it are not sent. */
const MAX_INFLIGHT = 200;
const READY_TIMEOUT_MS = 30_000;
const DRAIN_MS = 10_000;
const DEFAULT_RECONNECT_MS = 1_000;
/** The bystanders' own messages, delivered back to them by their rooms' feeds: not parsed. */
const MESSAGE_PREFIX = Buffer.from('{"message"');

interface Pending {
  readonly sentAt: number;
  readonly inWindow: boolean;
}

/** Where in the window (whole seconds from its start) a send made at `sentAt` falls. */
function secondOf(sentAt: number, windowStart: number): number {
  return Math.max(0, Math.floor((sentAt - windowStart) / 1000));
}

export class Bystanders {
  readonly #options: BystanderOptions;
  readonly #tag = randomBytes(3).toString("hex");
  readonly #latencies = new LatencySample(200_000);
  readonly failures = new Tally();
  readonly #closes = new Tally();
  readonly #feedEnds = new Tally();
  readonly #sockets = new Set<WebSocket>();
  readonly #pending: Map<string, Pending>[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  #welcome: string | undefined;
  #measuring = false;
  #stopping = false;
  #offered = 0;
  #acked = 0;
  #windowStart = 0;
  readonly #slowestBySecond: number[] = [];

  private constructor(options: BystanderOptions) {
    this.#options = options;
  }

  /** Connects every bystander, waits until each has caught up with its room, and starts the sending. */
  static async start(options: BystanderOptions): Promise<Bystanders> {
    const bystanders = new Bystanders(options);
    try {
      await Promise.all(options.tokens.map((_, index) => bystanders.#run(index)));
    } catch (error) {
      bystanders.#stopping = true;
      for (const timer of bystanders.#timers) clearTimeout(timer);
      for (const socket of bystanders.#sockets) socket.terminate();
      throw error;
    }
    return bystanders;
  }

  openWindow(): void {
    this.#windowStart = performance.now();
    this.#measuring = true;
  }

  closeWindow(): void {
    this.#measuring = false;
  }

  /** Stops sending, waits up to DRAIN_MS for the window's answers, closes every connection. */
  async stop(): Promise<BystanderResult> {
    this.#measuring = false;
    for (const timer of this.#timers) clearTimeout(timer);
    const deadline = performance.now() + DRAIN_MS;
    while (this.#windowPending() > 0 && performance.now() < deadline) await sleep(20);
    this.#stopping = true;
    for (const timer of this.#timers) clearTimeout(timer);
    const unanswered = this.#windowPending();
    if (unanswered > 0) this.failures.add(`never answered (within ${DRAIN_MS / 1000} s of the end)`, unanswered);
    for (const socket of this.#sockets) socket.close(1000);
    await sleep(200);
    for (const socket of this.#sockets) socket.terminate();
    return {
      offered: this.#offered,
      acked: this.#acked,
      latenciesMs: this.#latencies.sorted(),
      failures: this.failures,
      closes: this.#closes,
      feedEnds: this.#feedEnds,
      welcome: this.#welcome,
      slowestBySecond: Array.from(this.#slowestBySecond, (ms) => ms),
    };
  }

  #windowPending(): number {
    let count = 0;
    for (const pending of this.#pending) for (const entry of pending.values()) if (entry.inWindow) count++;
    return count;
  }

  /** Bystander `index`: connects (resolving once caught up), then sends on its clock and reconnects whenever closed. */
  #run(index: number): Promise<void> {
    const { port, rooms, tokens, ratePerSecond } = this.#options;
    const pending = new Map<string, Pending>();
    this.#pending[index] = pending;
    let socket: WebSocket | undefined;
    let ready = false;
    let seq = 0;

    const tick = () => {
      if (this.#stopping) return;
      const inWindow = this.#measuring;
      if (inWindow) this.#offered++;
      if (socket === undefined || !ready || socket.readyState !== WebSocket.OPEN) {
        if (inWindow) this.failures.add("not sent: no connection");
      } else if (pending.size >= MAX_INFLIGHT) {
        if (inWindow) this.failures.add(`not sent: ${MAX_INFLIGHT} un-answered`);
      } else {
        seq++;
        const requestId = `b${seq}`;
        pending.set(requestId, { sentAt: performance.now(), inWindow });
        socket.send(`{"requestId":"${requestId}","send":{"seq":"${seq}","body":"bystander ${index} message ${seq}","clientMsgId":"by-${this.#tag}-${index}-${seq}"}}`);
      }
      next += periodMs;
      this.#timers[index] = setTimeout(tick, Math.max(0, next - performance.now()));
    };
    const periodMs = 1000 / ratePerSecond;
    let next = 0;

    return new Promise<void>((resolveFirst, rejectFirst) => {
      let first = true;
      const readyTimer = setTimeout(() => {
        rejectFirst(new Error(`bystander ${index} was not caught up with its room within ${READY_TIMEOUT_MS / 1000} s`));
      }, READY_TIMEOUT_MS);
      const connect = () => {
        if (this.#stopping) return;
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/chat/${rooms[index] ?? ""}?token=${encodeURIComponent(tokens[index] ?? "")}`, { perMessageDeflate: false, handshakeTimeout: 15_000 });
        socket = ws;
        ready = false;
        this.#sockets.add(ws);
        let reconnectAfterMs: number | undefined;
        let upgraded = false;
        ws.on("unexpected-response", (request, response) => {
          this.#closes.add(`upgrade refused: HTTP ${response.statusCode ?? "?"}`);
          response.resume();
          request.destroy();
        });
        ws.on("upgrade", () => {
          upgraded = true;
        });
        ws.on("error", () => undefined);
        ws.on("message", (data: RawData) => {
          const bytes = bytesOf(data);
          if (bytes.subarray(0, MESSAGE_PREFIX.length).equals(MESSAGE_PREFIX)) return;
          const { kind, frame } = frameKind(bytes.toString("utf8"));
          const requestId = typeof frame.requestId === "string" ? frame.requestId : undefined;
          const entry = requestId === undefined ? undefined : pending.get(requestId);
          if (entry !== undefined && requestId !== undefined) {
            pending.delete(requestId);
            if (!entry.inWindow) return;
            if (kind === "sendAck") {
              this.#acked++;
              const latency = performance.now() - entry.sentAt;
              this.#latencies.add(latency);
              const second = secondOf(entry.sentAt, this.#windowStart);
              this.#slowestBySecond[second] = Math.max(this.#slowestBySecond[second] ?? 0, latency);
            } else {
              this.failures.add(kind === "error" ? `error ${errorLabel(frame)}` : `answered ${kind}`);
            }
            return;
          }
          switch (kind) {
            case "welcome":
              this.#welcome ??= JSON.stringify(frame.welcome);
              return;
            case "caughtUp":
              ready = true;
              if (first) {
                first = false;
                clearTimeout(readyTimer);
                next = performance.now() + Math.random() * periodMs;
                this.#timers[index] = setTimeout(tick, next - performance.now());
                resolveFirst();
              }
              return;
            case "goAway": {
              const goAway = frame.goAway;
              reconnectAfterMs = typeof goAway === "object" && goAway !== null && "reconnectAfter" in goAway ? durationMs(goAway.reconnectAfter) : undefined;
              return;
            }
            case "error":
              this.#feedEnds.add(`error ${errorLabel(frame)}`);
              return;
            case "unsubscribed":
              this.#feedEnds.add("unsubscribed");
              return;
            default:
              return;
          }
        });
        ws.once("close", (code) => {
          this.#sockets.delete(ws);
          if (this.#stopping) return;
          if (upgraded) this.#closes.add(String(code));
          // What the closed connection had not had answered is lost to it.
          for (const [requestId, entry] of pending) {
            pending.delete(requestId);
            if (entry.inWindow) this.failures.add(`lost when the connection closed (${code})`);
          }
          setTimeout(connect, reconnectAfterMs ?? DEFAULT_RECONNECT_MS);
        });
      };
      connect();
    });
  }
}
