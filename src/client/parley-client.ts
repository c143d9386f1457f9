import { create, fromBinary, fromJsonString, type MessageInitShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import { type ClientFrame, ClientFrameSchema, type ServerFrame, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import { backoffDelay, type BackoffPolicy, categoryName, closeMeaning } from "../wire/index.js";
import { ParleyClientError } from "./client-error.js";
import type { FrameChannel, FrameRequest } from "./frame-channel.js";
import { NotificationsHandle } from "./notifications.js";
import { Outbox, type OutgoingSend } from "./outbox.js";
import { randomId } from "./random-id.js";
import { RoomOperations } from "./room-operations.js";
import { type JoinOptions, RoomHandle } from "./rooms.js";
import { defaultSocketFactory, OPEN, type SocketFactory, type SocketLike } from "./socket.js";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "resumed" | "closed";

export interface ParleyClientOptions {
  /** The bridge's base URL, e.g. `ws://127.0.0.1:8080` (the client uses `/ws`). */
  readonly url: string;
  /**
   * A token, or a function that returns a fresh one: called on every
   * (re)connect, and shortly before the current token expires, when the new
   * token replaces it on the open connection (subscriptions and sends carry on).
   */
  readonly token: string | (() => string | Promise<string>);
  /** Text frames (JSON, default) or binary frames (protobuf). */
  readonly format?: "json" | "binary";
  /** How to open a socket; defaults to the global WebSocket (pass `ws` on Node 20). */
  readonly socketFactory?: SocketFactory;
  readonly reconnectBackoff?: BackoffPolicy;
  /** Answers not received within this long fail with TIMEOUT (default 15 s). */
  readonly requestTimeoutMs?: number;
  /**
   * A send the server refused with a retryable error is resent until this
   * long after its first refusal, then rejected with the last one (default
   * 60 s). Sends that were never refused have no deadline.
   */
  readonly sendRetryHorizonMs?: number;
  /** Backoff of a send refused as UNAVAILABLE or TIMEOUT without a `retry_after` (default 250 ms growing to 10 s, full jitter). */
  readonly sendRetryBackoff?: BackoffPolicy;
}

interface PendingRequest {
  readonly request: FrameRequest;
  readonly resolve: (frame: ServerFrame) => void;
  readonly reject: (error: ParleyClientError) => void;
  requestId: string;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const RECONNECT: BackoffPolicy = { initialMs: 250, maxMs: 10_000, multiplier: 1.6 };

/** A token is refreshed this long before it expires, at most (a third of its remaining life when shorter). */
const REFRESH_LEAD_MS = 60_000;
/** A refresh that failed is tried again this much later, while the token lasts. */
const REFRESH_RETRY_MS = 5_000;

/** Whether a token's `exp` has passed (read, not verified: the server verifies). */
function tokenExpired(token: string): boolean {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))) as { exp?: unknown };
    return typeof json.exp === "number" && json.exp * 1000 < Date.now();
  } catch {
    return false;
  }
}

/**
 * One logical connection to parley that survives network drops and server
 * restarts. See index.ts for the guarantees.
 */
export class ParleyClient implements FrameChannel {
  readonly notifications: NotificationsHandle;
  /** Room membership and settings (create, invite, join, kick, ...); following a room is `join()`. */
  readonly rooms: RoomOperations;
  readonly #options: ParleyClientOptions;
  readonly #factory: SocketFactory;
  #socket: SocketLike | undefined;
  #state: ConnectionState = "connecting";
  readonly #stateListeners = new Set<(state: ConnectionState, detail?: ParleyClientError) => void>();
  #attempt = 0;
  #everConnected = false;
  #closedByUser = false;
  #requestCounter = 0;
  #sendSeq = 0n;
  /** Sends in the order they were made; each leaves when stored, refused for good, or given up. */
  readonly #outbox: Outbox;
  readonly #sendDelayListeners = new Set<(reason: ParleyClientError | undefined) => void>();
  readonly #requests = new Map<string, PendingRequest>();
  readonly #rooms = new Map<string, RoomHandle>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The current socket has said `welcome`: frames may flow. */
  #welcomed = false;
  /** The token of the current connection attempt. */
  #token = "";
  /** A wait the server asked for (go_away.reconnect_after) before reconnecting. */
  #reconnectAfterMs = 0;
  /** The refresh of the current token shortly before it expires (token functions only). */
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Error callbacks of subscription requests, by request id. */
  readonly #subscriptionErrors = new Map<string, (error: ParleyClientError) => void>();

  constructor(options: ParleyClientOptions) {
    const factory = options.socketFactory ?? defaultSocketFactory();
    if (factory === undefined) throw new Error("no WebSocket available: pass socketFactory (e.g. from the ws package)");
    this.#options = options;
    this.#factory = factory;
    this.#outbox = new Outbox({
      write: (send) => this.#transmitSend(send),
      writable: () => this.#isOpen(),
      horizonMs: options.sendRetryHorizonMs ?? 60_000,
      backoff: options.sendRetryBackoff,
      delayed: (reason) => {
        for (const listener of [...this.#sendDelayListeners]) listener(reason);
      },
    });
    this.notifications = new NotificationsHandle(this);
    this.rooms = new RoomOperations(this);
    void this.#connect();
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Calls `listener` on every state change; returns a function that stops it. */
  onStateChange(listener: (state: ConnectionState, detail?: ParleyClientError) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Why sends are waiting to be resent — the server refused the oldest of
   * them with a retryable error (RATE_LIMITED, UNAVAILABLE, ...) — or
   * undefined while they flow: for showing "sending slowly".
   */
  get sendDelay(): ParleyClientError | undefined {
    return this.#outbox.delayedBy;
  }

  /** Calls `listener` whenever `sendDelay` changes; returns a function that stops it. */
  onSendDelay(listener: (reason: ParleyClientError | undefined) => void): () => void {
    this.#sendDelayListeners.add(listener);
    return () => this.#sendDelayListeners.delete(listener);
  }

  /** Resolves once connected (or rejects if the client closed for good). */
  ready(): Promise<void> {
    if (this.#state === "connected" || this.#state === "resumed") return Promise.resolve();
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => {
      const stop = this.onStateChange((state, detail) => {
        if (state === "connected" || state === "resumed") {
          stop();
          resolve();
        } else if (state === "closed") {
          stop();
          reject(detail ?? new ParleyClientError("UNAVAILABLE", "client closed"));
        }
      });
    });
  }

  /** Follows a room: `onMessage` gets every message after `afterSeq`, in seq order, exactly once. */
  join(room: string, options: JoinOptions = {}): RoomHandle {
    let handle = this.#rooms.get(room);
    if (handle?.left === true) {
      this.#rooms.delete(room);
      handle = undefined;
    }
    if (!handle) {
      handle = new RoomHandle(this, room, options);
      this.#rooms.set(room, handle);
      if (this.#isOpen()) handle.resubscribe();
    } else if (options.onMessage) {
      handle.addListener(options.onMessage);
    }
    return handle;
  }

  /**
   * Stores a message; resolves with the stored message (its seq) when the
   * server acknowledges it, rejects with a ParleyClientError. Survives
   * reconnects and retryable refusals: resent in order with the same
   * client_msg_id, never stored twice (see outbox.ts).
   */
  send(room: string, body: string, clientMsgId: string = randomId()): Promise<ChatMessage> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    return this.#outbox.add({ room, body, clientMsgId });
  }

  /** Closes for good; pending sends and requests are rejected. */
  close(): void {
    if (this.#state === "closed") return;
    this.#closedByUser = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#refreshTimer);
    this.#socket?.close(1000, "client closed");
    this.#shutdown(new ParleyClientError("UNAVAILABLE", "client closed"));
  }

  // ---- used by RoomHandle and NotificationsHandle -------------------------

  /** @internal Sends a request frame; resolves with the answering frame (re-sent after reconnects). */
  request(request: FrameRequest): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const pending: PendingRequest = { request, resolve, reject, requestId: "", timer: undefined };
      const requestId = this.#nextRequestId();
      pending.requestId = requestId;
      this.#requests.set(requestId, pending);
      pending.timer = setTimeout(() => {
        this.#requests.delete(pending.requestId);
        reject(new ParleyClientError("TIMEOUT", `no answer to ${request.case} in time`, { retryable: true }));
      }, this.#options.requestTimeoutMs ?? 15_000);
      if (this.#isOpen()) this.#write({ requestId, request });
    });
  }

  /**
   * @internal Sends a frame whose answers are events (subscriptions), if
   * connected; an error frame answering it goes to `onError`.
   */
  fire(request: FrameRequest, onError?: (error: ParleyClientError) => void): string | undefined {
    if (!this.#isOpen()) return undefined;
    const requestId = this.#nextRequestId();
    if (onError) this.#subscriptionErrors.set(requestId, onError);
    this.#write({ requestId, request });
    return requestId;
  }

  /** @internal */
  isOpen(): boolean {
    return this.#isOpen();
  }

  // ---- connection lifecycle -------------------------------------------------

  async #connect(): Promise<void> {
    let token: string;
    try {
      token = typeof this.#options.token === "string" ? this.#options.token : await this.#options.token();
    } catch (error) {
      if (this.#closedByUser) return;
      this.#scheduleReconnect(new ParleyClientError("UNAUTHENTICATED", `could not get a token: ${String(error)}`));
      return;
    }
    if (this.#closedByUser) return;
    this.#token = token;
    const base = this.#options.url.replace(/\/+$/, "");
    const format = this.#options.format === "binary" ? "?format=binary" : "";
    const socket = this.#factory(`${base}/ws${format}`, ["parley.v1", `bearer.${token}`]);
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    socket.onmessage = (event) => {
      this.#onFrame(event.data);
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      const welcomed = this.#welcomed;
      this.#socket = undefined;
      this.#welcomed = false;
      this.#onClose(event.code, event.reason, welcomed);
    };
    socket.onerror = () => {
      // A close event follows; that is where reconnecting is decided.
    };
  }

  #onClose(code: number, reason: string, welcomed: boolean): void {
    clearTimeout(this.#refreshTimer);
    if (this.#closedByUser) return;
    this.#outbox.lost();
    this.#subscriptionErrors.clear();
    // A refused upgrade (e.g. 401) reaches a browser only as 1006: an expired
    // token that cannot be renewed is the one case where that is final.
    const refusedToken = !welcomed && typeof this.#options.token === "string" && tokenExpired(this.#token);
    const meaning = closeMeaning(code);
    if (!meaning.reconnect || refusedToken) {
      const category = refusedToken ? "UNAUTHENTICATED" : categoryName(meaning.category);
      const error = new ParleyClientError(category, `closed by the server (${code})${reason === "" ? "" : `: ${reason}`}`);
      // A token function may produce a new token: worth another try.
      if (category === "UNAUTHENTICATED" && typeof this.#options.token === "function") {
        this.#scheduleReconnect(error);
        return;
      }
      this.#shutdown(error);
      return;
    }
    this.#scheduleReconnect(new ParleyClientError("UNAVAILABLE", `connection lost (${code})${reason === "" ? "" : `: ${reason}`}`, { retryable: true }));
  }

  #scheduleReconnect(cause: ParleyClientError): void {
    this.#attempt++;
    this.#setState("reconnecting", cause);
    const delay = Math.max(this.#reconnectAfterMs, backoffDelay(this.#attempt, this.#options.reconnectBackoff ?? RECONNECT));
    this.#reconnectAfterMs = 0;
    this.#reconnectTimer = setTimeout(() => {
      void this.#connect();
    }, delay);
  }

  /** After `welcome`: resume everything, oldest first. */
  #onWelcome(maxInflightSends: number): void {
    const resumed = this.#everConnected;
    this.#everConnected = true;
    this.#welcomed = true;
    this.#attempt = 0;
    this.#sendSeq = 0n;
    for (const room of this.#rooms.values()) room.resubscribe();
    this.notifications.resubscribe();
    this.#outbox.opened(maxInflightSends);
    // A copy: entries are re-keyed while looping.
    for (const pending of [...this.#requests.values()]) {
      const requestId = this.#nextRequestId();
      this.#requests.delete(pending.requestId);
      pending.requestId = requestId;
      this.#requests.set(requestId, pending);
      this.#write({ requestId, request: pending.request });
    }
    this.#setState(resumed ? "resumed" : "connected");
  }

  #closedWith: ParleyClientError | undefined;

  #closedError(): ParleyClientError {
    return this.#closedWith ?? new ParleyClientError("UNAVAILABLE", "client closed");
  }

  #shutdown(error: ParleyClientError): void {
    this.#closedWith = error;
    this.#outbox.close(error);
    for (const pending of this.#requests.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#requests.clear();
    this.#setState("closed", error);
  }

  #setState(state: ConnectionState, detail?: ParleyClientError): void {
    this.#state = state;
    for (const listener of [...this.#stateListeners]) listener(state, detail);
  }

  // ---- frames ---------------------------------------------------------------

  /** Writes one send frame (the outbox decides which and when); returns its request id. */
  #transmitSend(send: OutgoingSend): string {
    const requestId = this.#nextRequestId();
    this.#sendSeq++;
    this.#write({ requestId, request: { case: "send", value: { seq: this.#sendSeq, room: send.room, body: send.body, clientMsgId: send.clientMsgId } } });
    return requestId;
  }

  #write(frame: MessageInitShape<typeof ClientFrameSchema>): void {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return;
    const message: ClientFrame = create(ClientFrameSchema, frame);
    socket.send(this.#options.format === "binary" ? toBinary(ClientFrameSchema, message) : toJsonString(ClientFrameSchema, message));
  }

  #onFrame(data: unknown): void {
    let frame: ServerFrame;
    try {
      frame =
        typeof data === "string"
          ? fromJsonString(ServerFrameSchema, data, { ignoreUnknownFields: true })
          : fromBinary(ServerFrameSchema, data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array));
    } catch {
      return; // A frame this client version cannot read: ignore it, the server is newer.
    }
    const kind = frame.kind;
    switch (kind.case) {
      case "welcome":
        this.#onWelcome(kind.value.maxInflightSends);
        this.#scheduleRefresh(kind.value.tokenExpiresAt);
        return;
      case "message":
        this.#rooms.get(kind.value.room)?.deliver(kind.value);
        return;
      case "roomEvent":
        this.#rooms.get(kind.value.room)?.deliverEvent(kind.value);
        return;
      case "notification":
        this.notifications.deliver(kind.value);
        return;
      case "sendAck":
        // The message itself arrives as an event of the room, in order.
        if (kind.value.message) this.#outbox.acked(frame.requestId, kind.value.message);
        else this.#outbox.refused(frame.requestId, new ParleyClientError("INTERNAL", "acknowledgement without a message"));
        return;
      case "error": {
        const error = ParleyClientError.fromDetail(kind.value);
        if (this.#outbox.refused(frame.requestId, error)) return;
        const onError = this.#subscriptionErrors.get(frame.requestId);
        if (onError) {
          this.#subscriptionErrors.delete(frame.requestId);
          onError(error);
          return;
        }
        this.#settleRequest(frame, error);
        return;
      }
      case "goAway": {
        // The close that follows decides; resuming is automatic, not sooner than asked.
        const after = kind.value.reconnectAfter;
        if (after) this.#reconnectAfterMs = Number(after.seconds) * 1000 + after.nanos / 1e6;
        return;
      }
      case "caughtUp":
        this.#subscriptionErrors.delete(frame.requestId);
        if (kind.value.room === "") this.notifications.caughtUp(kind.value.headSeq);
        else this.#rooms.get(kind.value.room)?.caughtUp(kind.value.headSeq);
        this.#settleRequest(frame);
        return;
      case "unsubscribed":
        // With a reason, the server ended the follow (the error frame before it answered nothing pending).
        if (kind.value.reason) this.#rooms.get(kind.value.room)?.revoke(frame.requestId, ParleyClientError.fromDetail(kind.value.reason));
        this.#settleRequest(frame);
        return;
      case "createRoom":
      case "getRoom":
      case "updateRoom":
      case "invite":
      case "join":
      case "leave":
      case "kick":
      case "ban":
      case "unban":
      case "setRole":
      case "listMembers":
      case "listMyRooms":
      case "roomEvents":
      case "history":
      case "markRead":
      case "notifications":
      case "notificationsAcked":
      case "pong":
      case "tokenRefreshed":
        this.#settleRequest(frame);
        return;
      case undefined:
        return;
    }
  }

  /**
   * With a token function, a new token replaces the current one on the open
   * connection shortly before it expires; the server would close with 4501
   * at expiry. A refresh that fails is retried while the token lasts.
   */
  #scheduleRefresh(expiresAt: { seconds: bigint; nanos: number } | undefined): void {
    clearTimeout(this.#refreshTimer);
    if (expiresAt === undefined || typeof this.#options.token === "string") return;
    const expiresAtMs = Number(expiresAt.seconds) * 1000 + expiresAt.nanos / 1e6;
    const remaining = expiresAtMs - Date.now();
    this.#refreshIn(Math.max(0, remaining - Math.min(REFRESH_LEAD_MS, remaining / 3)), expiresAtMs);
  }

  #refreshIn(delayMs: number, expiresAtMs: number): void {
    const tokenSource = this.#options.token;
    if (typeof tokenSource === "string") return;
    this.#refreshTimer = setTimeout(() => {
      void (async () => {
        const token = await tokenSource();
        const answer = await this.request({ case: "refreshToken", value: { token } });
        this.#token = token;
        this.#scheduleRefresh(answer.kind.case === "tokenRefreshed" ? answer.kind.value.expiresAt : undefined);
      })().catch(() => {
        // Refused or unanswered: try again while the token lasts; at expiry the server closes (4501) and the reconnect gets a new one.
        if (expiresAtMs - Date.now() > REFRESH_RETRY_MS && this.#isOpen()) this.#refreshIn(REFRESH_RETRY_MS, expiresAtMs);
      });
    }, Math.min(delayMs, 2 ** 31 - 1));
  }

  #settleRequest(frame: ServerFrame, error?: ParleyClientError): void {
    const pending = this.#requests.get(frame.requestId);
    if (!pending) return;
    this.#requests.delete(frame.requestId);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(frame);
  }

  #isOpen(): boolean {
    return this.#welcomed && this.#socket?.readyState === OPEN;
  }

  #nextRequestId(): string {
    this.#requestCounter++;
    return `r${this.#requestCounter}`;
  }
}
