import { create, fromBinary, fromJsonString, type MessageInitShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import WebSocket from "ws";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import { ClientFrameSchema, type ServerFrame, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";

/** One frame the server sent, decoded, with what travelled on the wire. */
export interface Received {
  readonly frame: ServerFrame;
  /** The text of a text frame (canonical JSON), or undefined for a binary frame. */
  readonly text: string | undefined;
  readonly binary: boolean;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

export interface ConnectOptions {
  /** Sent as `?token=`. */
  readonly token?: string;
  /** Offered as `bearer.<jwt>` in Sec-WebSocket-Protocol (after `protocols`). */
  readonly bearer?: string;
  /** Subprotocols offered before the bearer entry, e.g. `["parley.v1"]`. */
  readonly protocols?: readonly string[];
  /** More query parameters (`after_seq`, `format`). */
  readonly query?: Readonly<Record<string, string>>;
  /** Sent as the `Origin` header, as a browser page at that origin would. */
  readonly origin?: string;
  /** Sent as the `Host` header in place of the URL's (a DNS-rebound name). */
  readonly host?: string;
  /** More request headers (`X-Forwarded-For`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** ws answers server pings itself unless this is false. */
  readonly autoPong?: boolean;
  readonly timeoutMs?: number;
  /** The CA a `https://` base's certificate must chain to (wss://). */
  readonly ca?: Buffer;
}

/** An upgrade the bridge refused: HTTP status and the parsed JSON body. */
export interface Refusal {
  readonly status: number;
  readonly body: { category?: string; message?: string; field?: string; retryAfterMs?: number };
  /** The response's `Retry-After` header, when it had one. */
  readonly retryAfter: string | undefined;
}

export type ClientFrameInit = MessageInitShape<typeof ClientFrameSchema>;

const DEFAULT_WAIT_MS = 10_000;

function urlFor(base: string, path: string, options: ConnectOptions): string {
  const url = new URL(path, base);
  if (options.token !== undefined) url.searchParams.set("token", options.token);
  for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
  return url.toString();
}

function socketOptions(options: ConnectOptions): { origin?: string; headers?: Record<string, string>; handshakeTimeout: number } {
  return {
    ...(options.origin === undefined ? {} : { origin: options.origin }),
    ...(options.host === undefined && options.headers === undefined ? {} : { headers: { ...options.headers, ...(options.host === undefined ? {} : { host: options.host }) } }),
    handshakeTimeout: options.timeoutMs ?? DEFAULT_WAIT_MS,
  };
}

function protocolsFor(options: ConnectOptions): string[] {
  return [...(options.protocols ?? []), ...(options.bearer === undefined ? [] : [`bearer.${options.bearer}`])];
}

/**
 * A small WebSocket test client for the bridge: builds frames from the
 * generated types, decodes every server frame against the schema, and waits
 * for frames or the close with deadlines (never fixed sleeps).
 */
export class WsTestClient {
  readonly received: Received[] = [];
  readonly closed: Promise<CloseInfo>;
  #closeInfo: CloseInfo | undefined;
  #waiters = new Set<() => void>();

  private constructor(readonly socket: WebSocket) {
    this.closed = new Promise((resolve) => {
      socket.on("close", (code, reason) => {
        this.#closeInfo = { code, reason: reason.toString() };
        resolve(this.#closeInfo);
        this.#wake();
      });
    });
    socket.on("message", (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
      if (isBinary) {
        this.received.push({ frame: fromBinary(ServerFrameSchema, bytes), text: undefined, binary: true });
      } else {
        const text = bytes.toString("utf8");
        this.received.push({ frame: fromJsonString(ServerFrameSchema, text), text, binary: false });
      }
      this.#wake();
    });
    // Errors end in "close"; without a listener ws would throw them.
    socket.on("error", () => undefined);
  }

  /** Opens a connection to `path` on the bridge at `base` (`http://host:port`); rejects when the upgrade is refused. */
  static connect(base: string, path: string, options: ConnectOptions = {}): Promise<WsTestClient> {
    const socket = new WebSocket(urlFor(base, path, options).replace(/^http/, "ws"), protocolsFor(options), {
      ...socketOptions(options),
      autoPong: options.autoPong ?? true,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    const client = new WsTestClient(socket);
    return new Promise((resolve, reject) => {
      socket.once("open", () => {
        resolve(client);
      });
      socket.once("unexpected-response", (_request, response) => {
        response.resume();
        socket.terminate();
        reject(new Error(`upgrade refused with ${response.statusCode ?? 0}`));
      });
      socket.once("error", reject);
    });
  }

  /** Attempts an upgrade that must be refused; resolves with its status and JSON body. */
  static refusal(base: string, path: string, options: ConnectOptions = {}): Promise<Refusal> {
    const socket = new WebSocket(urlFor(base, path, options).replace(/^http/, "ws"), protocolsFor(options), {
      ...socketOptions(options),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    return new Promise((resolve, reject) => {
      socket.on("error", () => undefined);
      socket.once("open", () => {
        socket.terminate();
        reject(new Error(`expected the upgrade to ${path} to be refused, but it opened`));
      });
      socket.once("close", () => {
        reject(new Error(`the upgrade to ${path} ended without an HTTP answer`));
      });
      socket.once("unexpected-response", (_request, response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          socket.terminate();
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            const retryAfter = response.headers["retry-after"];
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Refusal["body"], retryAfter });
          } catch {
            reject(new Error(`refusal body is not JSON: ${text}`));
          }
        });
      });
    });
  }

  get frames(): ServerFrame[] {
    return this.received.map((r) => r.frame);
  }

  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo;
  }

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** Sends a ClientFrame as canonical JSON text. */
  sendJson(init: ClientFrameInit): void {
    this.socket.send(toJsonString(ClientFrameSchema, create(ClientFrameSchema, init)));
  }

  /** Sends a ClientFrame as protobuf binary. */
  sendBinary(init: ClientFrameInit): void {
    this.socket.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, init)), { binary: true });
  }

  /** Sends raw text (or bytes, as a binary frame) exactly as given. */
  sendRaw(data: string | Uint8Array): void {
    this.socket.send(data, { binary: typeof data !== "string" });
  }

  /** Sends `init` (JSON unless `binary`) and resolves with the first frame answering its request id. */
  async request(init: ClientFrameInit & { requestId: string }, options: { binary?: boolean; timeoutMs?: number } = {}): Promise<ServerFrame> {
    const from = this.received.length;
    if (options.binary === true) this.sendBinary(init);
    else this.sendJson(init);
    return (await this.waitFor((frame) => frame.requestId === init.requestId, { from, timeoutMs: options.timeoutMs })).frame;
  }

  /** Resolves with the first received frame (from index `from`) that matches. */
  waitFor(predicate: (frame: ServerFrame, received: Received) => boolean, options: { from?: number; timeoutMs?: number; what?: string } = {}): Promise<Received> {
    let scanned = options.from ?? 0;
    return this.until(
      () => {
        for (; scanned < this.received.length; scanned++) {
          const received = this.received[scanned];
          if (received !== undefined && predicate(received.frame, received)) return received;
        }
        return undefined;
      },
      { timeoutMs: options.timeoutMs, what: options.what ?? "a matching frame" },
    );
  }

  /**
   * Resolves with the first defined result of `check`, which is run now and
   * after every frame and the close; rejects after `timeoutMs` (or when the
   * socket closed and `check` still has nothing).
   */
  until<T>(check: () => T | undefined, options: { timeoutMs?: number; what?: string } = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    const what = options.what ?? "a condition";
    return new Promise((resolve, reject) => {
      const attempt = (): boolean => {
        let result: T | undefined;
        try {
          result = check();
        } catch (error) {
          finish();
          reject(error instanceof Error ? error : new Error(String(error)));
          return true;
        }
        if (result !== undefined) {
          finish();
          resolve(result);
          return true;
        }
        if (this.#closeInfo !== undefined) {
          finish();
          reject(new Error(`socket closed (${this.#closeInfo.code} ${this.#closeInfo.reason}) while waiting for ${what}; ${this.describeTail()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${what} within ${timeoutMs} ms; ${this.describeTail()}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      const waiter = () => {
        attempt();
      };
      this.#waiters.add(waiter);
      attempt();
    });
  }

  /** Waits for the close (bounded); resolves with its code and reason. */
  async waitClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<CloseInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`socket not closed within ${timeoutMs} ms; ${this.describeTail()}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes (normal close, then cut after a deadline) and waits until the socket is gone. */
  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    if (this.socket.readyState === WebSocket.CONNECTING) {
      this.socket.terminate();
    } else {
      this.socket.close(1000, "test done");
    }
    const cut = setTimeout(() => {
      this.socket.terminate();
    }, 2_000);
    await this.closed;
    clearTimeout(cut);
  }

  /** The last few frames, for failure messages. */
  describeTail(count = 5): string {
    const tail = this.received.slice(-count).map((r) => r.text ?? `binary ${r.frame.kind.case ?? "none"}`);
    return `${this.received.length} frames received, last: ${tail.join(" | ")}`;
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** Polls `check` every few ms until it is true; rejects after `timeoutMs`. For server-side state (no events to wait on). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The chat messages of `room` that `client` has received, in arrival order. */
export function messagesOf(client: WsTestClient, room: string): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const { frame } of client.received) if (frame.kind.case === "message" && frame.kind.value.room === room) messages.push(frame.kind.value);
  return messages;
}

/** Waits until `client` has seen messages of `room` up to `seq`; returns that room's messages. */
export function messagesUpTo(client: WsTestClient, room: string, seq: bigint, timeoutMs = 15_000): Promise<ChatMessage[]> {
  return client.until(
    () => {
      const messages = messagesOf(client, room);
      return messages.some((m) => m.seq >= seq) ? messages : undefined;
    },
    { timeoutMs, what: `messages of ${room} up to seq ${seq}` },
  );
}
