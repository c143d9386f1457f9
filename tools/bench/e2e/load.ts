/**
 * The load generator of bench:e2e: C WebSocket clients, each sending as fast
 * as its window allows or on its own clock, counting what happens inside the
 * measured window only.
 */
import { randomBytes } from "node:crypto";
import { type RawData, WebSocket } from "ws";
import { sleep } from "../../../src/wire/backoff.js";
import { LatencySample } from "../latency.js";
import { type CpuShare, type CpuSnapshot, cpuShare } from "./cpu-share.js";

export interface PhaseOptions {
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

export interface PhaseResult {
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
export async function runPhase(options: PhaseOptions): Promise<PhaseResult> {
  const tag = randomBytes(3).toString("hex");
  let measuring = false;
  let sending = true;
  let stored = 0;
  let ackedAll = 0;
  let deliveries = 0;
  let windowFull = 0;
  const errors = new Map<string, number>();
  const closes = new Map<number, number>();
  const latencies = new LatencySample(1_000_000);
  const warmupLatencies = new LatencySample(250_000);
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
