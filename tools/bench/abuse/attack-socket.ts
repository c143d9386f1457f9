/**
 * One attacker WebSocket: opened, its server frames counted into the
 * AttackerLog (kinds, error categories, go_away), and its end recorded —
 * refused at the upgrade, closed by the server with a code after so long,
 * or ended by the attacker itself.
 */
import { performance } from "node:perf_hooks";
import { type RawData, WebSocket } from "ws";
import type { AttackerLog } from "./attacker-log.js";

const OPEN_TIMEOUT_MS = 15_000;
const MESSAGE_PREFIX = Buffer.from('{"message"');

export interface Closed {
  readonly code: number;
  /** The server's go_away.reconnect_after, when it sent one. */
  readonly reconnectAfterMs: number | undefined;
}

/** A Duration in proto3 JSON ("1s", "0.250s") in ms; undefined when unreadable. */
export function durationMs(value: unknown): number | undefined {
  if (typeof value !== "string" || !value.endsWith("s")) return undefined;
  const seconds = Number(value.slice(0, -1));
  return Number.isFinite(seconds) ? seconds * 1000 : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The kind of a server frame in JSON (its one key besides request_id), and the frame. */
export function frameKind(text: string): { kind: string; frame: Record<string, unknown> } {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return { kind: "not JSON", frame: {} };
  }
  if (!isRecord(frame)) return { kind: "not an object", frame: {} };
  const kind = Object.keys(frame).find((key) => key !== "requestId") ?? "empty";
  return { kind, frame };
}

/** An error frame's category without its prefix, marked when the frame says not to retry (retryable is left out when false). */
export function errorLabel(frame: Record<string, unknown>): string {
  const error = frame.error;
  if (!isRecord(error)) return "unreadable";
  const category = typeof error.category === "string" ? error.category.replace(/^ERROR_CATEGORY_/, "") : "no category";
  return error.retryable === true ? category : `${category} (not retryable)`;
}

export function bytesOf(data: RawData): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
}

export class AttackSocket {
  /** True once `welcome` arrived; false when the attempt was refused or failed. */
  readonly ready: Promise<boolean>;
  readonly closed: Promise<Closed>;
  readonly #ws: WebSocket;
  readonly #log: AttackerLog;
  #welcomedAt: number | undefined;
  #endedAt: number | undefined;
  #refused = false;
  #reconnectAfterMs: number | undefined;

  constructor(url: string, log: AttackerLog) {
    this.#log = log;
    log.attempts++;
    this.#ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS });
    let settleReady: (ok: boolean) => void = () => undefined;
    this.ready = new Promise((resolve) => {
      settleReady = resolve;
    });
    const refuse = (why: string) => {
      if (this.#welcomedAt !== undefined || this.#refused) return;
      this.#refused = true;
      // An attempt the attacker itself abandoned (the attack's end) is no refusal.
      if (this.#endedAt === undefined) log.refusals.add(why);
      settleReady(false);
    };
    this.#ws.on("unexpected-response", (request, response) => {
      refuse(`HTTP ${response.statusCode ?? "?"}`);
      response.resume();
      request.destroy();
    });
    this.#ws.on("error", (error: NodeJS.ErrnoException) => {
      refuse(error.code ?? error.message.slice(0, 60));
    });
    this.#ws.on("message", (data: RawData, isBinary) => {
      const bytes = bytesOf(data);
      if (isBinary) {
        log.answers.add("binary frame");
        return;
      }
      if (bytes.subarray(0, MESSAGE_PREFIX.length).equals(MESSAGE_PREFIX)) {
        log.answers.add("message");
        return;
      }
      const { kind, frame } = frameKind(bytes.toString("utf8"));
      if (kind === "error") {
        log.errors.add(errorLabel(frame));
        return;
      }
      log.answers.add(kind);
      if (kind === "welcome" && this.#welcomedAt === undefined) {
        this.#welcomedAt = performance.now();
        log.connectionOpened(this);
        settleReady(true);
      } else if (kind === "goAway" && isRecord(frame.goAway)) {
        this.#reconnectAfterMs = durationMs(frame.goAway.reconnectAfter);
      }
    });
    this.closed = new Promise((resolve) => {
      this.#ws.once("close", (code) => {
        const closedAt = performance.now();
        if (this.#welcomedAt === undefined) {
          refuse(`closed ${code} before welcome`);
        } else {
          log.connectionGone(this);
          if (this.#endedAt === undefined) log.closedByServer(code, closedAt - this.#welcomedAt);
        }
        resolve({ code, reconnectAfterMs: this.#reconnectAfterMs });
      });
    });
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN && this.#endedAt === undefined;
  }

  /** Bytes written but not yet taken by the socket. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(text: string): boolean {
    if (!this.isOpen) return false;
    this.#ws.send(text);
    this.#log.framesSent++;
    return true;
  }

  /** The attacker ends the connection (not counted as the server's close); resolves once it is gone. */
  async end(): Promise<void> {
    this.#endedAt ??= performance.now();
    if (this.#ws.readyState === WebSocket.CONNECTING) {
      this.#ws.terminate();
      await this.closed;
    } else if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CLOSING) {
      this.#ws.close(1000);
      const killer = setTimeout(() => {
        this.#ws.terminate();
      }, 1_000);
      await this.closed;
      clearTimeout(killer);
    }
  }
}
