// A connection's life: the welcome, the heartbeat, the token's expiry, the
// route's own subscription, socket errors and the close. It builds the
// modules that do the rest (inbound, sends, follows, core calls, writer).
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { CloseCode, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { ParleyError } from "../../wire/index.js";
import { type Identity, logError, type Logger, TokenBucket } from "../../runtime/index.js";
import { Credential } from "./credential.js";
import { CoreCalls } from "./core-calls.js";
import { ErrorRun } from "./error-run.js";
import { Follows } from "./follows.js";
import { Inbound } from "./inbound.js";
import { Sends } from "./sends.js";
import { FrameWriter } from "./writer.js";
import { FrameIntake } from "./frame-intake.js";
import type { ConnectionDeps } from "./deps.js";

/** setTimeout's largest delay; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long a closed peer has to answer the close before its socket is cut. */
const CLOSE_HANDSHAKE_MS = 2_000;
/** The same for a flooding peer: its socket is no longer read, so no answer can arrive. */
const ABUSER_CUT_MS = 500;
/** What a client closed for its rate is told to wait before reconnecting. */
const RATE_LIMITED_RECONNECT_MS = 1_000;

/**
 * One browser connection: decodes every frame against the schema before
 * reading a field, turns requests into typed core calls made with the
 * user's own token, answers each request exactly once (echoing its
 * request_id; sends in the order they arrived), and pushes the events of
 * what the connection follows.
 *
 * A bad frame gets an error frame and the socket stays open; only protocol
 * violations close it, each with a named code: a text frame that is not
 * UTF-8 (1007, by ws), frame too big (1009, by ws), too many invalid frames
 * in a row (4508), too slow to read its events (4001, it resumes from its
 * last seq), no pong (4000), token expired (4501).
 */
export class Connection {
  readonly #deps: ConnectionDeps;
  readonly #log: Logger;
  readonly #writer: FrameWriter;
  readonly #calls: CoreCalls;
  readonly #follows: Follows;
  readonly #inbound: Inbound;
  readonly #intake: FrameIntake;
  /** RATE_LIMITED answers: a client that keeps earning them is closed 4029. */
  readonly #refusals: TokenBucket;
  #alive = true;
  #closed = false;
  /** close() is under way (it writes a last frame before #closed is set). */
  #closing = false;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #credential: Credential;
  /** The 4501 close at the token's expiry (re-armed by a refresh). */
  #expiryTimer: NodeJS.Timeout | undefined;

  constructor(deps: ConnectionDeps) {
    this.#deps = deps;
    const { socket, limits, observe } = deps;
    const log = deps.logger.child({ connection: deps.id, user: deps.identity.user, route: deps.route.route.pattern });
    this.#log = log;
    const close = (code: CloseCode, reason: string, reconnectAfterMs?: number) => {
      this.close(code, reason, reconnectAfterMs);
    };
    const routeRoom = deps.route.params.room;
    this.#refusals = new TokenBucket(limits.refusalsPerSecond, limits.refusalBurst);
    const writer = new FrameWriter({
      socket,
      connectionId: deps.id,
      initialFormat: deps.initialFormat,
      maxBufferedBytes: limits.maxBufferedBytes,
      log,
      observe,
      close,
      refused: (error) => {
        this.#refused(error);
      },
    });
    const credential = new Credential(deps.token, deps.identity);
    this.#credential = credential;
    const calls = new CoreCalls(credential, limits.maxInflightRequests, deps.budget.coreCalls, log);
    const errorRun = new ErrorRun(limits.maxConsecutiveErrors);
    const sends = new Sends({
      sendLink: deps.sendLink,
      credential,
      routeRoom,
      maxInflightSends: limits.maxInflightSends,
      maxWaitingRefusals: limits.maxInflightSends + limits.frameBurst,
      userSends: deps.budget.sends,
      writer,
      errorRun,
      observe,
      close,
    });
    const follows = new Follows({ chat: deps.chat, notifications: deps.notifications, rooms: deps.rooms, roomFeeds: deps.roomFeeds, user: deps.identity.user, budget: deps.budget, calls, writer, log });
    this.#writer = writer;
    this.#calls = calls;
    this.#follows = follows;
    this.#inbound = new Inbound({
      connectionId: deps.id,
      user: deps.identity.user,
      routeRoom,
      limits,
      chat: deps.chat,
      notifications: deps.notifications,
      rooms: deps.rooms,
      userSubscribes: deps.budget.subscribes,
      calls,
      writer,
      sends,
      follows,
      errorRun,
      observe,
      close,
      refreshToken: (token) => this.#refreshToken(token),
    });
    const inbound = this.#inbound;
    this.#intake = new FrameIntake({
      socket,
      framesPerSecond: limits.framesPerSecond,
      frameBurst: limits.frameBurst,
      framesPerTurn: limits.framesPerTurn,
      scheduler: deps.turns,
      handle: (data, isBinary) => (this.#closed ? 1 : inbound.onFrame(data, isBinary)),
      overBudget: () => {
        observe?.error?.("RATE_LIMITED");
        this.close(CloseCode.RATE_LIMITED, `more than ${limits.framesPerSecond} frames a second; slow down and reconnect`, RATE_LIMITED_RECONNECT_MS);
      },
    });
  }

  /**
   * A RATE_LIMITED answer went out. A client that honours `retry_after`
   * earns few; one that keeps sending into the limit is closed (4029),
   * told when to come back.
   */
  #refused(error: ParleyError): void {
    if (error.category !== ErrorCategory.RATE_LIMITED || this.#refusals.take()) return;
    this.close(CloseCode.RATE_LIMITED, "too many requests refused for their rate; honour retry_after", Math.max(RATE_LIMITED_RECONNECT_MS, error.retryAfterMs ?? 0));
  }

  /** A newer token of the same user takes over; the expiry close moves to its `exp`. */
  async #refreshToken(token: string): Promise<Identity> {
    // Within the limit of un-answered requests, as any call to core: a flood
    // of refresh_token frames would otherwise queue WhoAmI calls unbounded.
    const identity = await this.#calls.call("refresh_token", () => this.#deps.identities.verify(token));
    this.#credential.replace(token, identity);
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    if (identity.expiresAt !== undefined) this.#closeAtExpiry(identity.expiresAt * 1000);
    this.#log.info({ expires_at: identity.expiresAt }, "token refreshed");
    return identity;
  }

  get id(): string {
    return this.#deps.id;
  }

  get user(): string {
    return this.#deps.identity.user;
  }

  /** Greets the client, starts the heartbeat and the route's own subscription. */
  start(): void {
    const { socket, limits, identity, route } = this.#deps;
    socket.on("message", (data, isBinary) => {
      if (!this.#closed) this.#intake.push(toBytes(data), isBinary);
    });
    socket.on("pong", () => {
      this.#alive = true;
    });
    socket.on("close", () => {
      this.#cleanup();
    });
    socket.on("error", (error) => {
      this.#socketFailed(error);
    });

    const room = route.params.room ?? "";
    this.#writer.push(
      create(ServerFrameSchema, {
        kind: {
          case: "welcome",
          value: {
            connectionId: this.#deps.id,
            user: identity.user,
            room,
            maxFrameBytes: limits.maxFrameBytes,
            maxInflightSends: limits.maxInflightSends,
            heartbeatInterval: durationFromMs(limits.heartbeatIntervalMs),
            tokenExpiresAt: identity.expiresAt === undefined ? undefined : timestampFromMs(identity.expiresAt * 1000),
          },
        },
      }),
      this.#writer.pushFormat,
    );

    const heartbeat = setInterval(() => {
      if (!this.#alive) {
        this.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong within the heartbeat interval");
        return;
      }
      this.#alive = false;
      socket.ping();
    }, limits.heartbeatIntervalMs);
    heartbeat.unref();
    this.#timers.push(heartbeat);

    if (identity.expiresAt !== undefined) this.#closeAtExpiry(identity.expiresAt * 1000);

    if (route.route.kind === "chat") this.#follows.followRoom("", room, this.#deps.afterSeq);
    else if (route.route.kind === "notifications") this.#follows.followInbox("", this.#deps.afterSeq);
  }

  /** Closes with 4501 when the token expires (timers longer than ~24.8 days are re-armed). */
  #closeAtExpiry(expiresAtMs: number): void {
    const remaining = expiresAtMs - Date.now();
    this.#expiryTimer = setTimeout(() => {
      if (remaining > MAX_TIMER_MS) this.#closeAtExpiry(expiresAtMs);
      else this.close(CloseCode.UNAUTHENTICATED, "token expired; refresh it before it expires (refresh_token) or reconnect with a new token");
    }, Math.max(0, Math.min(remaining, MAX_TIMER_MS)));
    this.#expiryTimer.unref();
  }

  /**
   * Closes with a named code. Reconnect-meaning codes are preceded by a
   * `go_away` frame so that a client knows to resume from its last seq.
   */
  close(code: CloseCode, reason: string, reconnectAfterMs?: number): void {
    // #closing, not just #closed: writing the go_away below can flush the
    // corked socket, which checks the backlog, which would close again.
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    // The user stays away longer each time they come back to do it again (see abuse-strikes.ts).
    if (code === CloseCode.RATE_LIMITED) reconnectAfterMs = this.#deps.budget.strikes.strike(reconnectAfterMs ?? RATE_LIMITED_RECONNECT_MS);
    if (code === CloseCode.GOING_AWAY || code === CloseCode.SLOW_CONSUMER || code === CloseCode.HEARTBEAT_TIMEOUT || code === CloseCode.RATE_LIMITED) {
      this.#writer.push(
        create(ServerFrameSchema, {
          kind: {
            case: "goAway",
            value: { reason, closeCode: code, reconnectAfter: reconnectAfterMs === undefined ? undefined : durationFromMs(reconnectAfterMs) },
          },
        }),
        this.#writer.pushFormat,
        true,
      );
    }
    this.#log.info({ close_code: code, reason, reconnect_after_ms: reconnectAfterMs }, "closing connection");
    // Nothing more of a client closed for its rate is read (or handled).
    if (code === CloseCode.RATE_LIMITED) this.#intake.stop(true);
    this.#deps.socket.close(code, reason.slice(0, 120));
    // A peer that does not complete the closing handshake is cut.
    const cut = setTimeout(() => {
      this.#deps.socket.terminate();
    }, code === CloseCode.RATE_LIMITED ? ABUSER_CUT_MS : CLOSE_HANDSHAKE_MS);
    cut.unref();
    this.#cleanup();
  }

  /**
   * ws reports what the client did wrong at the protocol level (a text frame
   * that is not UTF-8, a frame over the size limit) as a socket error, and
   * has already started the close with the matching code: those are the
   * client's fault, logged as such. Anything else is the transport failing.
   */
  #socketFailed(error: Error): void {
    const violation = protocolViolation(error, this.#deps.limits.maxFrameBytes);
    if (violation === undefined) {
      this.#log.warn({ category: "UNAVAILABLE", err: error }, "socket error");
      return;
    }
    this.#deps.observe?.error?.(violation.error.categoryName);
    logError(this.#log, violation.error, { close_code: violation.closeCode, ws_code: (error as { code?: unknown }).code });
    if (violation.closeCode !== undefined) this.close(violation.closeCode, violation.error.message);
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#intake.stop();
    this.#writer.markClosed();
    this.#calls.close();
    for (const timer of this.#timers) clearTimeout(timer);
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#follows.stopAll();
    this.#deps.onClosed();
  }
}

/**
 * ws's error codes for a client's protocol violations → their category and
 * the close code ws closes with (undefined: one parley does not name, such
 * as 1002); undefined for failures of the transport.
 */
function protocolViolation(error: Error, maxFrameBytes: number): { readonly error: ParleyError; readonly closeCode: CloseCode | undefined } | undefined {
  const code = (error as { code?: unknown }).code;
  if (code === "WS_ERR_INVALID_UTF8") {
    return { error: new ParleyError(ErrorCategory.VALIDATION, "a text frame is not valid UTF-8", { cause: error }), closeCode: CloseCode.INVALID_PAYLOAD };
  }
  if (code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
    return { error: new ParleyError(ErrorCategory.VALIDATION, `a frame over max_frame_bytes (${maxFrameBytes})`, { cause: error }), closeCode: CloseCode.MESSAGE_TOO_BIG };
  }
  if (typeof code === "string" && code.startsWith("WS_ERR_")) {
    return { error: new ParleyError(ErrorCategory.VALIDATION, `a frame that breaks the WebSocket protocol: ${error.message}`, { cause: error }), closeCode: undefined };
  }
  return undefined;
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}
