import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { WebSocket } from "ws";
import type { ChatService, ListMessagesRequest } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import {
  type ClientFrame,
  CloseCode,
  type SendFrame,
  type ServerFrame,
  ServerFrameSchema,
} from "../../gen/parley/v1/frames_pb.js";
import type { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import type { Identity } from "../runtime/auth/tokens.js";
import { checkRoom } from "../wire/limits.js";
import { fromErrorDetail } from "../wire/errors/detail.js";
import { ParleyError, validationError } from "../wire/errors/parley-error.js";
import { errorFrame } from "../wire/errors/websocket.js";
import { follow as followTopic } from "../runtime/streams/follow.js";
import type { CallOptions, ServiceClient } from "../runtime/grpc/client.js";
import { type Logger, logError } from "../runtime/logger.js";
import { decodeClientFrame, encodeServerFrame, FrameDecodeError, type FrameFormat } from "../wire/frames/frames.js";
import { backoffDelay, type BackoffPolicy, sleep } from "../wire/backoff.js";
import { OrderedRelease } from "../runtime/streams/ordered-release.js";
import { type Attributes, type Context, context, ROOT_CONTEXT, type Span, SpanKind, trace } from "@opentelemetry/api";
import { contextFromTraceparent, currentTraceId, failSpan, traceparentOfSpan, tracer } from "../runtime/telemetry/tracing.js";
import type { SendLink } from "./core-link/send-link.js";
import type { RoomFeeds } from "./core-link/room-feeds.js";
import { EncodedEvent } from "./encoded-event.js";
import { atEndOfTurn } from "../runtime/streams/end-of-turn.js";
import type { ConnectionLimits } from "./limits.js";
import type { RouteMatch } from "./routes.js";

/** The net.Socket under a ws WebSocket, as far as corking needs it. */
interface CorkableSocket {
  cork(): void;
  uncork(): void;
  write(data: Uint8Array): boolean;
  readonly writableLength: number;
}

/** A room or inbox subscription of one connection. */
interface Follow {
  readonly controller: AbortController;
  /** Its request has been answered (caught_up, error or unsubscribed). */
  answered: boolean;
  /** Stops it, answering its request if that has not happened yet. */
  cancel(): void;
}

/** What a connection needs from the bridge around it. */
export interface ConnectionDeps {
  readonly id: string;
  readonly socket: WebSocket;
  readonly identity: Identity;
  /** The user's own token: every core call made for this connection carries it. */
  readonly token: string;
  readonly route: RouteMatch;
  /** Resume point from the URL (`after_seq`), for the route's own subscription. */
  readonly afterSeq: bigint | undefined;
  /** Format of frames pushed before the client sent any (from `?format=`). */
  readonly initialFormat: FrameFormat;
  readonly chat: ServiceClient<typeof ChatService>;
  readonly notifications: ServiceClient<typeof NotificationService>;
  readonly sendLink: SendLink;
  readonly roomFeeds: RoomFeeds;
  readonly limits: ConnectionLimits;
  readonly logger: Logger;
  /** Counts and timings, for metrics. */
  readonly observe?: ConnectionObserver;
  readonly onClosed: (connection: Connection) => void;
}

export interface ConnectionObserver {
  frameIn?(kind: string): void;
  frameOut?(kind: string): void;
  error?(category: string): void;
  sendAnswered?(latencyMs: number, ok: boolean): void;
}

const CALL_RETRY: BackoffPolicy = { initialMs: 50, maxMs: 2_000, multiplier: 1.6 };
const CALL_ATTEMPTS = 5;
/** Bytes held back by corking before they are flushed anyway. */
const CORK_FLUSH_BYTES = 64 * 1024;
/** setTimeout's largest delay; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One browser connection: decodes every frame against the schema before
 * reading a field, turns requests into typed core calls made with the
 * user's own token, answers each request exactly once (echoing its
 * request_id), and pushes the events of what the connection follows.
 *
 * A bad frame gets an error frame and the socket stays open; only protocol
 * violations close it, each with a named code: frame too big (1009, by ws),
 * too many invalid frames in a row (4508), too slow to read its events
 * (4001, it resumes from its last seq), no pong (4000), token expired (4501).
 */
export class Connection {
  readonly #deps: ConnectionDeps;
  readonly #log: Logger;
  /** Sends are answered in the order they were made. */
  readonly #sendAnswers = new OrderedRelease();
  readonly #follows = new Map<string, Follow>();
  #inbox: Follow | undefined;
  #lastSendSeq: bigint | undefined;
  #inflightSends = 0;
  #inflightRequests = 0;
  /** Token bucket of the frame rate limit. */
  #frameTokens: number;
  #frameTokensAt = performance.now();
  #consecutiveErrors = 0;
  /** Set when the frame being dispatched passes the bridge's own checks (see #accepted). */
  #frameAccepted = false;
  #pushFormat: FrameFormat;
  /**
   * No extension was negotiated (the bridge turns permessage-deflate off), so
   * ws would write a frame exactly as ws-frame.ts builds it: events can go
   * straight to the socket. Settled at the handshake; ws's getter builds a
   * string each time it is read.
   */
  readonly #plainFrames: boolean;
  #alive = true;
  #corked = false;
  /** An ack was written: the socket is flushed when the current task ends. */
  #flushQueued = false;
  #closed = false;
  /** close() is under way (it writes a last frame before #closed is set). */
  #closing = false;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #lifetime = new AbortController();

  constructor(deps: ConnectionDeps) {
    this.#deps = deps;
    this.#pushFormat = deps.initialFormat;
    this.#plainFrames = deps.socket.extensions === "";
    this.#frameTokens = deps.limits.frameBurst;
    this.#log = deps.logger.child({ connection: deps.id, user: deps.identity.user, route: deps.route.route.pattern });
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
      this.#onFrame(toBytes(data), isBinary);
    });
    socket.on("pong", () => {
      this.#alive = true;
    });
    socket.on("close", () => {
      this.#cleanup();
    });
    socket.on("error", (error) => {
      this.#log.warn({ category: "UNAVAILABLE", err: error }, "socket error");
    });

    const room = route.params.room ?? "";
    this.#push(
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
          },
        },
      }),
      this.#pushFormat,
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

    if (route.route.kind === "chat") this.#followRoom("", room, this.#deps.afterSeq);
    else if (route.route.kind === "notifications") this.#followInbox("", this.#deps.afterSeq);
  }

  /** Closes with 4501 when the token expires (timers longer than ~24.8 days are re-armed). */
  #closeAtExpiry(expiresAtMs: number): void {
    const remaining = expiresAtMs - Date.now();
    const timer = setTimeout(() => {
      if (remaining > MAX_TIMER_MS) this.#closeAtExpiry(expiresAtMs);
      else this.close(CloseCode.UNAUTHENTICATED, "token expired; reconnect with a new token");
    }, Math.max(0, Math.min(remaining, MAX_TIMER_MS)));
    timer.unref();
    this.#timers.push(timer);
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
    if (code === CloseCode.GOING_AWAY || code === CloseCode.SLOW_CONSUMER || code === CloseCode.HEARTBEAT_TIMEOUT || code === CloseCode.RATE_LIMITED) {
      this.#push(
        create(ServerFrameSchema, {
          kind: {
            case: "goAway",
            value: { reason, closeCode: code, reconnectAfter: reconnectAfterMs === undefined ? undefined : durationFromMs(reconnectAfterMs) },
          },
        }),
        this.#pushFormat,
        true,
      );
    }
    this.#log.info({ close_code: code, reason }, "closing connection");
    this.#deps.socket.close(code, reason.slice(0, 120));
    // A peer that does not complete the closing handshake is cut.
    const cut = setTimeout(() => {
      this.#deps.socket.terminate();
    }, 2_000);
    cut.unref();
    this.#cleanup();
  }

  // ---- inbound ----------------------------------------------------------

  /**
   * One span per frame (continuing the browser's trace when the frame carries
   * a traceparent), ended when the frame has been answered.
   */
  #onFrame(data: Uint8Array, isBinary: boolean): void {
    if (this.#closed) return;
    if (!this.#takeFrameToken()) {
      this.#deps.observe?.error?.("RATE_LIMITED");
      this.close(CloseCode.RATE_LIMITED, "too many frames; slow down and reconnect", 1_000);
      return;
    }
    const format: FrameFormat = isBinary ? "binary" : "json";
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(data, format);
    } catch (error) {
      const failure = error instanceof FrameDecodeError ? error : new FrameDecodeError("", "", String(error));
      this.#deps.observe?.frameIn?.("invalid");
      const span = tracer().startSpan("ws.frame invalid", { kind: SpanKind.SERVER });
      if (span.isRecording()) span.setAttributes({ ...this.#frameAttributes(format, data), "parley.request.id": failure.requestId });
      context.with(trace.setSpan(context.active(), span), () => {
        this.#answerError(failure.requestId, failure, format);
      });
      span.end();
      return;
    }
    this.#pushFormat = format;
    const kind = frame.request.case ?? "none";
    this.#deps.observe?.frameIn?.(kind);
    const parent = contextFromTraceparent(frame.traceparent, ROOT_CONTEXT);
    const room = roomOfRequest(frame) ?? this.#deps.route.params.room ?? "";
    const span = tracer().startSpan(`ws.frame ${kind}`, { kind: SpanKind.SERVER }, parent);
    // Set after sampling, and only on a span that records them: unsampled
    // frames (thousands a second) skip building and checking attributes.
    if (span.isRecording()) {
      span.setAttributes({
        ...this.#frameAttributes(format, data),
        "parley.frame.kind": kind,
        "parley.request.id": frame.requestId,
        "parley.room": room,
        "enduser.id": this.user,
      });
    }
    if (frame.request.case === "send") {
      this.#onSend(frame.requestId, frame.request.value, format, span, parent);
      return;
    }
    // #dispatch accepts a frame (or throws) before its first await, so whether
    // this frame was accepted is known when the call returns.
    this.#frameAccepted = false;
    const dispatched = context.with(trace.setSpan(parent, span), () => this.#dispatch(frame, format));
    const accepted = this.#frameAccepted;
    void dispatched
      .catch((error: unknown) => {
        // Only frames the bridge itself refused count towards max_consecutive_errors,
        // in the order they arrived: a forwarded request that core refuses later
        // (a bad page size, say) was not part of a run of garbage.
        this.#answerError(frame.requestId, ParleyError.from(error), format, !accepted);
      })
      .finally(() => {
        span.end();
      });
  }

  #frameAttributes(format: FrameFormat, data: Uint8Array): Attributes {
    return { "parley.connection.id": this.#deps.id, "parley.frame.format": format, "parley.frame.bytes": data.byteLength };
  }

  /** Handles one decoded request; resolves once it has been answered. */
  async #dispatch(frame: ClientFrame, format: FrameFormat): Promise<void> {
    const { requestId } = frame;
    const { chat, notifications } = this.#deps;
    const request = frame.request;
    switch (request.case) {
      case "send":
        // Handled by #onSend before dispatch.
        throw new ParleyError(ErrorCategory.INTERNAL, "a send reached the general dispatch");
      case "subscribe": {
        const room = checkRoom(request.value.room, "subscribe.room");
        if (!this.#follows.has(room) && this.#follows.size >= this.#deps.limits.maxSubscriptions) {
          throw new ParleyError(ErrorCategory.RATE_LIMITED, `at most ${this.#deps.limits.maxSubscriptions} rooms per connection`, {
            retryable: false,
          });
        }
        this.#accepted();
        this.#followRoom(requestId, room, request.value.afterSeq, format);
        return;
      }
      case "unsubscribe": {
        const room = checkRoom(request.value.room, "unsubscribe.room");
        this.#follows.get(room)?.cancel();
        this.#follows.delete(room);
        this.#accepted();
        this.#answer(requestId, { case: "unsubscribed", value: { room } }, format);
        return;
      }
      case "history": {
        const value: ListMessagesRequest = { ...request.value, room: this.#roomOr(request.value.room, "history.room") };
        await this.#relay(requestId, format, "history", (options) => chat.listMessages(value, options), (page) => ({ case: "history", value: page }));
        return;
      }
      case "markRead": {
        const value = { ...request.value, room: this.#roomOr(request.value.room, "mark_read.room") };
        await this.#relay(requestId, format, "mark_read", (options) => chat.markRead(value, options), (result) => ({ case: "markRead", value: result }));
        return;
      }
      case "listNotifications": {
        const value = request.value;
        await this.#relay(requestId, format, "list_notifications", (options) => notifications.listNotifications(value, options), (page) => ({
          case: "notifications",
          value: page,
        }));
        return;
      }
      case "ackNotifications": {
        const value = request.value;
        await this.#relay(requestId, format, "ack_notifications", (options) => notifications.ackNotifications(value, options), (result) => ({
          case: "notificationsAcked",
          value: result,
        }));
        return;
      }
      case "subscribeNotifications":
        if (request.value.recipient !== "" && request.value.recipient !== this.user) {
          throw new ParleyError(ErrorCategory.PERMISSION_DENIED, "only the recipient may follow an inbox");
        }
        this.#accepted();
        this.#followInbox(requestId, request.value.afterSeq, format);
        return;
      case "ping":
        this.#accepted();
        this.#answer(requestId, { case: "pong", value: {} }, format);
        return;
      case undefined:
        throw validationError("request", "one request kind is required");
    }
  }

  /** A request answered by one unary core call: accepted, limited, retried, answered. */
  async #relay<T>(
    requestId: string,
    format: FrameFormat,
    name: string,
    call: (options: CallOptions) => Promise<T>,
    answer: (result: T) => MessageInitShape<typeof ServerFrameSchema>["kind"],
  ): Promise<void> {
    this.#accepted();
    let result: T;
    try {
      result = await this.#limited(() => this.#call(name, call));
    } catch (error) {
      throw prefixField(ParleyError.from(error), name);
    }
    this.#answer(requestId, answer(result), format);
  }

  /** Token bucket: `framesPerSecond` sustained, `frameBurst` at once. */
  #takeFrameToken(): boolean {
    const { framesPerSecond, frameBurst } = this.#deps.limits;
    const now = performance.now();
    this.#frameTokens = Math.min(frameBurst, this.#frameTokens + ((now - this.#frameTokensAt) / 1000) * framesPerSecond);
    this.#frameTokensAt = now;
    if (this.#frameTokens < 1) return false;
    this.#frameTokens -= 1;
    return true;
  }

  /**
   * Runs a request that is not a send, within the per-connection limit of
   * un-answered ones (a client cannot queue unbounded work at core).
   */
  async #limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.#inflightRequests >= this.#deps.limits.maxInflightRequests) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${this.#deps.limits.maxInflightRequests} requests awaiting an answer`, {
        retryAfterMs: 100,
      });
    }
    this.#inflightRequests++;
    try {
      return await work();
    } finally {
      this.#inflightRequests--;
    }
  }

  /** A frame that decoded and passed the bridge's checks: the run of invalid ones is over. */
  #accepted(): void {
    this.#consecutiveErrors = 0;
    this.#frameAccepted = true;
  }

  #roomOr(room: string, field: string): string {
    if (room !== "") return checkRoom(room, field);
    const own = this.#deps.route.params.room;
    if (own === undefined) throw validationError(field, "is required on this route");
    return own;
  }

  // ---- sends -------------------------------------------------------------

  /**
   * Sends are most of the traffic, so they take a path without promises:
   * checked synchronously (a refusal counts towards max_consecutive_errors),
   * handed to the send link with a callback, and answered in send order
   * through an OrderedRelease. The frame's span ends when the answer is out.
   * Core continues the span's trace from its traceparent; the span becomes
   * the active context only where a rare error answer needs its trace id.
   */
  #onSend(requestId: string, send: SendFrame, format: FrameFormat, span: Span, parent: Context): void {
    try {
      this.#send(requestId, send, format, span, parent);
    } catch (error) {
      context.with(trace.setSpan(parent, span), () => {
        this.#answerError(requestId, ParleyError.from(error), format);
      });
      span.end();
    }
  }

  /** Checks a send (throwing when it is refused), then hands it to core; the span ends once it is answered. */
  #send(requestId: string, send: SendFrame, format: FrameFormat, span: Span, parent: Context): void {
    if (this.#lastSendSeq !== undefined && send.seq <= this.#lastSendSeq) {
      throw validationError("send.seq", `must increase along the connection: got ${send.seq} after ${this.#lastSendSeq}`);
    }
    const room = this.#roomOr(send.room, "send.room");
    if (this.#inflightSends >= this.#deps.limits.maxInflightSends) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${this.#deps.limits.maxInflightSends} sends awaiting an answer`, {
        retryAfterMs: 100,
      });
    }
    this.#lastSendSeq = send.seq;
    this.#accepted();
    this.#inflightSends++;
    const startedAt = performance.now();
    // The link answers in the order sends were made; the slot keeps this
    // connection's answers in its send order whatever happens underneath.
    const slot = this.#sendAnswers.take();
    const item = { room, body: send.body, clientMsgId: send.clientMsgId, actingToken: this.#deps.token, traceparent: traceparentOfSpan(span.spanContext()) };
    this.#deps.sendLink.send(item, (response) => {
      this.#sendAnswers.complete(slot, () => {
        this.#inflightSends--;
        const ok = response.result.case === "message";
        this.#deps.observe?.sendAnswered?.(performance.now() - startedAt, ok);
        if (response.result.case === "message") {
          this.#answer(requestId, { case: "sendAck", value: { seq: send.seq, message: response.result.value, duplicate: response.duplicate } }, format);
          this.#flushAfterThisTask();
        } else {
          const detail = response.result.value;
          const error = detail ? fromErrorDetail(detail) : new ParleyError(ErrorCategory.INTERNAL, "core gave no answer");
          context.with(trace.setSpan(parent, span), () => {
            this.#answerError(requestId, prefixField(error, "send"), format, false);
          });
        }
        span.end();
      });
    });
  }

  // ---- subscriptions -------------------------------------------------------

  /**
   * Follows a room: replay after `afterSeq` through ListMessages (with the
   * user's token, so read permission is the user's), then the bridge's shared
   * feed. Survives core restarts: the follow resumes from the last seq it sent.
   */
  #followRoom(requestId: string, room: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#follows.get(room)?.cancel();
    const follow = this.#newFollow(requestId, room, format);
    const controller = follow.controller;
    this.#follows.set(room, follow);
    const leave = this.#deps.roomFeeds.join(room);
    const { chat } = this.#deps;
    let last = afterSeq;
    const stopped = () => controller.signal.aborted;
    const run = async () => {
      for (let attempt = 0; !stopped(); attempt++) {
        try {
          await followTopic<EncodedEvent>({
            hub: this.#deps.roomFeeds.hub,
            topic: room,
            afterSeq: last,
            readAfter: async (seq, limit) => {
              const page = await chat.listMessages({ room, cursorSeq: seq, pageSize: Math.min(limit, 500) }, this.#callOptions(controller.signal));
              return page.messages.map((message) => EncodedEvent.message(message));
            },
            readHead: async () => {
              const page = await chat.listMessages({ room, direction: ListDirection.BACKWARD, pageSize: 1 }, this.#callOptions(controller.signal));
              return page.headSeq;
            },
            send: (event) => {
              last = event.seq;
              this.#pushEvent(event, "message");
            },
            caughtUp: (headSeq) => {
              last = headSeq;
              if (!follow.answered) {
                follow.answered = true;
                this.#answer(requestId, { case: "caughtUp", value: { room, headSeq } }, format ?? this.#pushFormat);
              }
              return Promise.resolve();
            },
            signal: controller.signal,
          });
          return;
        } catch (error) {
          if (stopped()) return;
          const failure = ParleyError.from(error);
          if (!failure.retryable) {
            follow.answered = true;
            this.#answerError(requestId, failure, format ?? this.#pushFormat, false);
            if (this.#follows.get(room) === follow) this.#follows.delete(room);
            return;
          }
          this.#log.warn({ category: failure.categoryName, room, attempt: attempt + 1 }, "room follow interrupted; resuming");
          await sleep(backoffDelay(attempt + 1, CALL_RETRY), controller.signal).catch(() => undefined);
        }
      }
    };
    void run().finally(leave);
  }

  /**
   * A subscription's handle. Every subscribe request gets exactly one
   * answer: `caught_up`, an error, or — when it is replaced or unsubscribed
   * before catching up — `unsubscribed`.
   */
  #newFollow(requestId: string, room: string, format: FrameFormat | undefined): Follow {
    const follow: Follow = {
      controller: new AbortController(),
      answered: false,
      cancel: () => {
        follow.controller.abort();
        // The route's own subscription (no request id) has nobody to answer.
        if (!follow.answered && requestId !== "" && !this.#closed) {
          follow.answered = true;
          this.#answer(requestId, { case: "unsubscribed", value: { room } }, format ?? this.#pushFormat);
        }
      },
    };
    return follow;
  }

  /** Follows the user's inbox through core's notification subscription, resuming after breaks. */
  #followInbox(requestId: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#inbox?.cancel();
    const follow = this.#newFollow(requestId, "", format);
    const controller = follow.controller;
    this.#inbox = follow;
    let last = afterSeq;
    const stopped = () => controller.signal.aborted;
    const run = async () => {
      for (let attempt = 0; !stopped(); attempt++) {
        try {
          const request = last === undefined ? {} : { afterSeq: last };
          for await (const { event } of this.#deps.notifications.subscribe(request, this.#callOptions(controller.signal))) {
            attempt = 0;
            if (event.case === "notification") {
              if (last !== undefined && event.value.seq <= last) continue;
              last = event.value.seq;
              this.#pushEvent(EncodedEvent.notification(event.value), "notification");
            } else if (event.case === "caughtUp") {
              last ??= event.value.headSeq;
              if (!follow.answered) {
                follow.answered = true;
                this.#answer(requestId, { case: "caughtUp", value: { room: "", headSeq: event.value.headSeq } }, format ?? this.#pushFormat);
              }
            }
          }
        } catch (error) {
          if (stopped()) return;
          const failure = ParleyError.from(error);
          if (!failure.retryable) {
            follow.answered = true;
            this.#answerError(requestId, failure, format ?? this.#pushFormat, false);
            return;
          }
          this.#log.warn({ category: failure.categoryName, attempt: attempt + 1 }, "inbox follow interrupted; resuming");
        }
        await sleep(backoffDelay(attempt + 1, CALL_RETRY), controller.signal).catch(() => undefined);
      }
    };
    void run();
  }

  // ---- core calls ----------------------------------------------------------

  #callOptions(signal?: AbortSignal): CallOptions {
    return { headers: { authorization: `Bearer ${this.#deps.token}` }, timeoutMs: 10_000, signal: signal ?? this.#lifetime.signal };
  }

  /** A unary core call for this user; UNAVAILABLE/TIMEOUT are retried with backoff. */
  async #call<T>(name: string, call: (options: CallOptions) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(this.#callOptions());
      } catch (error) {
        const failure = ParleyError.from(error);
        const transient = failure.category === ErrorCategory.UNAVAILABLE || failure.category === ErrorCategory.TIMEOUT;
        if (!transient || attempt >= CALL_ATTEMPTS || this.#closed) throw failure;
        this.#log.warn({ category: failure.categoryName, call: name, attempt }, "core call failed; retrying");
        await sleep(backoffDelay(attempt, CALL_RETRY));
      }
    }
  }

  // ---- outbound ------------------------------------------------------------

  #answer(requestId: string, kind: MessageInitShape<typeof ServerFrameSchema>["kind"], format: FrameFormat): void {
    this.#push(create(ServerFrameSchema, { requestId, kind }), format);
  }

  /**
   * Answers a failed request with an error frame. Frames the bridge refuses count
   * towards the limit of consecutive errors; failures of forwarded requests
   * (`countsAsInvalid` false) do not.
   */
  #answerError(requestId: string, error: ParleyError, format: FrameFormat, countsAsInvalid = true): void {
    this.#deps.observe?.error?.(error.categoryName);
    const span = trace.getActiveSpan();
    if (span) failSpan(span, error);
    logError(this.#log, error, { request_id: requestId });
    this.#push(errorFrame(requestId, error, currentTraceId()), format);
    if (countsAsInvalid && error.category === ErrorCategory.VALIDATION) {
      this.#consecutiveErrors++;
      if (this.#consecutiveErrors >= this.#deps.limits.maxConsecutiveErrors) {
        this.close(CloseCode.TOO_MANY_ERRORS, `${this.#consecutiveErrors} invalid frames in a row`);
      }
    }
  }

  #pushEvent(event: EncodedEvent, kind: string): void {
    // The event's shared frame, straight to the socket, where ws would write exactly that.
    const raw = this.#plainFrames ? this.#rawSocket() : undefined;
    let data: Uint8Array;
    try {
      data = raw === undefined ? event.encoded(this.#pushFormat) : event.framed(this.#pushFormat);
    } catch (error) {
      this.#serializationFailed("", event.frame, ParleyError.from(error));
      return;
    }
    if (raw === undefined) this.#write(data, kind, this.#pushFormat);
    else if (this.#startWrite(kind)) raw.write(data);
  }

  /** Encodes and writes one frame; an encoding failure becomes a fallback error frame. */
  #push(frame: ServerFrame, format: FrameFormat, force = false): void {
    let data: string | Uint8Array;
    try {
      data = encodeServerFrame(frame, format);
    } catch (error) {
      this.#serializationFailed(frame.requestId, frame, ParleyError.from(error));
      return;
    }
    this.#write(data, frame.kind.case ?? "none", format, force);
  }

  #serializationFailed(requestId: string, frame: ServerFrame, error: ParleyError): void {
    // Log what could not be encoded (truncated), answer with a frame that can.
    const span = tracer().startSpan("ws.frame encode", { attributes: { "parley.connection.id": this.#deps.id, "parley.frame.kind": frame.kind.case ?? "none" } });
    failSpan(span, error);
    context.with(trace.setSpan(context.active(), span), () => {
      logError(this.#log, error, { request_id: requestId, frame_kind: frame.kind.case, frame: describeTruncated(frame) });
    });
    span.end();
    this.#deps.observe?.error?.("SERIALIZATION");
    const fallback = errorFrame(requestId, new ParleyError(ErrorCategory.SERIALIZATION, "the answer could not be encoded"));
    try {
      this.#write(encodeServerFrame(fallback, "json"), "error", "json");
    } catch {
      this.close(CloseCode.INTERNAL_ERROR, "could not encode a frame");
    }
  }

  /** Writes one frame: a text frame for "json" (`data` may be its UTF-8 bytes), a binary one otherwise. */
  #write(data: string | Uint8Array, kind: string, format: FrameFormat, force = false): void {
    if (this.#startWrite(kind, force)) this.#deps.socket.send(data, { binary: format === "binary" });
  }

  /** Whether a frame may be written now; if so, counts it and corks the socket for it. */
  #startWrite(kind: string, force = false): boolean {
    const { socket } = this.#deps;
    if ((this.#closed && !force) || socket.readyState !== socket.OPEN) return false;
    this.#deps.observe?.frameOut?.(kind);
    this.#cork();
    return true;
  }

  /**
   * A send's ack is what its client waits for: it leaves when the task that
   * produced it (a batch of core's answers) ends, not with the rest of the
   * turn's frames at its end.
   */
  #flushAfterThisTask(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flushNow);
  }

  readonly #flushNow = (): void => {
    this.#flushQueued = false;
    if (this.#corked) this.#uncork();
  };

  /**
   * Frames written in one turn of the event loop leave in one writev syscall
   * instead of one each: the socket is corked until the turn ends (or a
   * slice of CORK_FLUSH_BYTES is held). Whether the client keeps up is
   * judged after each flush, on what the kernel did not take.
   */
  #cork(): void {
    const raw = this.#rawSocket();
    if (raw === undefined) return;
    if (this.#corked) {
      if (raw.writableLength > CORK_FLUSH_BYTES) {
        raw.uncork();
        raw.cork();
        this.#checkBacklog();
      }
      return;
    }
    this.#corked = true;
    raw.cork();
    atEndOfTurn(this.#uncork);
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.#rawSocket()?.uncork();
    this.#checkBacklog();
  };

  /** The net.Socket under the WebSocket (ws keeps it in `_socket`). */
  #rawSocket(): CorkableSocket | undefined {
    return (this.#deps.socket as unknown as { _socket?: CorkableSocket })._socket;
  }

  /** A client too slow for its events is closed (it resumes from its last seq); memory stays bounded. */
  #checkBacklog(): void {
    if (this.#closed || this.#closing) return;
    if (this.#deps.socket.bufferedAmount > this.#deps.limits.maxBufferedBytes) {
      this.close(CloseCode.SLOW_CONSUMER, "the connection did not keep up with its events; resume from the last seq seen");
    }
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lifetime.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    for (const follow of this.#follows.values()) follow.controller.abort();
    this.#follows.clear();
    this.#inbox?.controller.abort();
    this.#deps.onClosed(this);
  }
}

/** Core names a field of its request ("page_size"); the client knows it by its place in the frame ("history.page_size"). */
function prefixField(error: ParleyError, prefix: string): ParleyError {
  if (error.field === undefined) return error;
  const message = error.message.startsWith(`${error.field}: `) ? `${prefix}.${error.message}` : error.message;
  return new ParleyError(error.category, message, {
    field: `${prefix}.${error.field}`,
    retryable: error.retryable,
    retryAfterMs: error.retryAfterMs,
    context: error.context,
  });
}

function describeTruncated(frame: ServerFrame): string {
  let text: string;
  try {
    text = JSON.stringify(frame, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
  } catch {
    text = String(frame.kind.case);
  }
  return text.length > 512 ? `${text.slice(0, 512)}…` : text;
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

/** The room a request names, for the frame span (undefined when it names none). */
function roomOfRequest(frame: ClientFrame): string | undefined {
  const request = frame.request;
  switch (request.case) {
    case "send":
    case "subscribe":
    case "unsubscribe":
    case "history":
    case "markRead":
      return request.value.room === "" ? undefined : request.value.room;
    case "listNotifications":
    case "ackNotifications":
    case "subscribeNotifications":
    case "ping":
    case undefined:
      return undefined;
  }
}
