// What a client sends: each frame (rate-limited before, by FrameIntake)
// decoded against the schema before any field is read, traced, and
// dispatched to the module that answers it; the bridge's own refusals count
// towards max_consecutive_errors.
import { type Attributes, context, ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import type { ListMessagesRequest } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { type ClientFrame, CloseCode } from "../../../gen/parley/v1/frames_pb.js";
import { checkRoom, checkSeq, decodeClientFrame, FrameDecodeError, type FrameFormat, ParleyError, validationError } from "../../wire/index.js";
import { type CallOptions, contextFromTraceparent, type Identity, type TokenBucket, tracer } from "../../runtime/index.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { CoreCalls } from "./core-calls.js";
import type { ErrorRun } from "./error-run.js";
import { roomCall } from "./room-calls.js";
import { type FrameRequestName, inFrameTerms, roomOfRequest, roomOr } from "./frame-fields.js";
import type { Follows } from "./follows.js";
import type { Sends } from "./sends.js";
import type { ConnectionDeps } from "./deps.js";
import type { FrameWriter, ServerFrameKind } from "./writer.js";

export interface InboundOptions extends Pick<ConnectionDeps, "limits" | "chat" | "notifications" | "rooms" | "observe"> {
  readonly connectionId: string;
  readonly user: string;
  /** The room of the connection's path, for requests that name none. */
  readonly routeRoom: string | undefined;
  /** The user's rate of `subscribe` frames, shared with their other connections on this bridge. */
  readonly userSubscribes: TokenBucket;
  readonly calls: CoreCalls;
  readonly writer: FrameWriter;
  readonly sends: Sends;
  readonly follows: Follows;
  readonly errorRun: ErrorRun;
  readonly close: (code: CloseCode, reason: string, reconnectAfterMs?: number) => void;
  /** Verifies a newer token and makes it the connection's (see ClientFrame.refresh_token). */
  readonly refreshToken: (token: string) => Promise<Identity>;
}

/**
 * What a frame costs of its connection's share of a turn (FrameIntake), in
 * frames: a send is batched with the turn's others and a ping is answered
 * here, but a request that calls core (a subscribe: GetRoom, a replay, maybe
 * a room's feed) costs the bridge and core several times more, and counting
 * it as one let a burst of subscribes fill a turn that bystanders' sends
 * were waiting for.
 */
const CORE_REQUEST_COST = 8;

function turnCost(kind: string): number {
  return kind === "ping" || kind === "none" ? 1 : CORE_REQUEST_COST;
}

/** Takes one connection's frames; see the comment at the top of this file. */
export class Inbound {
  readonly #options: InboundOptions;
  /** Set when the frame being dispatched passes the bridge's own checks (see #accepted). */
  #frameAccepted = false;

  constructor(options: InboundOptions) {
    this.#options = options;
  }

  /**
   * One span per frame (continuing the browser's trace when the frame carries
   * a traceparent), ended when the frame has been answered.
   */
  onFrame(data: Uint8Array, isBinary: boolean): number {
    const { observe, writer } = this.#options;
    const format: FrameFormat = isBinary ? "binary" : "json";
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(data, format);
    } catch (error) {
      this.#undecodable(error, data, format);
      return 1;
    }
    writer.pushFormat = format;
    const kind = frame.request.case ?? "none";
    observe?.frameIn?.(kind);
    const parent = contextFromTraceparent(frame.traceparent, ROOT_CONTEXT);
    const span = tracer().startSpan(`ws.frame ${kind}`, { kind: SpanKind.SERVER }, parent);
    // Set after sampling, and only on a span that records them: unsampled
    // frames (thousands a second) skip building and checking attributes.
    if (span.isRecording()) {
      span.setAttributes({
        ...this.#frameAttributes(format, data),
        "parley.frame.kind": kind,
        "parley.request.id": frame.requestId,
        "parley.room": roomOfRequest(frame) ?? this.#options.routeRoom ?? "",
        "enduser.id": this.#options.user,
      });
    }
    if (frame.request.case === "send") {
      this.#options.sends.send(frame.requestId, frame.request.value, format, span, parent);
      return 1;
    }
    // #dispatch accepts a frame (or throws) before its first await, so whether
    // this frame was accepted is known when the call returns.
    this.#frameAccepted = false;
    const dispatched = context.with(trace.setSpan(parent, span), () => this.#dispatch(frame, format));
    const accepted = this.#frameAccepted;
    void dispatched
      .catch((error: unknown) => {
        const failure = ParleyError.from(error);
        // Only frames the bridge itself refused count, in the order they arrived.
        this.#refused(frame.requestId, failure, format, !accepted);
      })
      .finally(() => {
        span.end();
      });
    return turnCost(kind);
  }

  /** A frame that did not decode: answered at once, or in its place among the sends if it was one. */
  #undecodable(error: unknown, data: Uint8Array, format: FrameFormat): void {
    const failure = error instanceof FrameDecodeError ? error : new FrameDecodeError("", "", String(error));
    this.#options.observe?.frameIn?.("invalid");
    const span = tracer().startSpan("ws.frame invalid", { kind: SpanKind.SERVER });
    if (span.isRecording()) span.setAttributes({ ...this.#frameAttributes(format, data), "parley.request.id": failure.requestId });
    if (failure.requestKind === "send") {
      this.#options.sends.refuseUnreadable(failure.requestId, failure, format, span);
      return;
    }
    context.with(trace.setSpan(context.active(), span), () => {
      this.#refused(failure.requestId, failure, format, true);
    });
    span.end();
  }

  #frameAttributes(format: FrameFormat, data: Uint8Array): Attributes {
    return { "parley.connection.id": this.#options.connectionId, "parley.frame.format": format, "parley.frame.bytes": data.byteLength };
  }

  /** Handles one decoded request other than a send; resolves once it has been answered. */
  async #dispatch(frame: ClientFrame, format: FrameFormat): Promise<void> {
    const { requestId } = frame;
    const { chat, notifications, rooms, follows, writer, limits, routeRoom } = this.#options;
    const request = frame.request;
    switch (request.case) {
      case "send":
        // Handled by Sends before dispatch.
        throw new ParleyError(ErrorCategory.INTERNAL, "a send reached the general dispatch");
      case "subscribe": {
        const room = checkRoom(request.value.room, "subscribe.room");
        const afterSeq = request.value.afterSeq === undefined ? undefined : checkSeq(request.value.afterSeq, "subscribe.after_seq");
        if (!follows.allows(room, limits.maxSubscriptions)) {
          throw new ParleyError(ErrorCategory.RATE_LIMITED, `at most ${limits.maxSubscriptions} rooms per connection`, { retryable: false });
        }
        // Each subscribe costs an authorization and a replay at core: one
        // that comes and goes in a loop is paced, whatever it unsubscribes.
        const { userSubscribes } = this.#options;
        if (!userSubscribes.take()) {
          throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${userSubscribes.ratePerSecond} subscribes a second by this user (bursts of ${userSubscribes.burst})`, {
            retryAfterMs: userSubscribes.msUntil(),
          });
        }
        follows.holdRoom(room);
        this.#accepted();
        follows.followRoom(requestId, room, afterSeq, format);
        return;
      }
      case "unsubscribe": {
        const room = checkRoom(request.value.room, "unsubscribe.room");
        follows.unfollowRoom(room);
        this.#accepted();
        writer.answer(requestId, { case: "unsubscribed", value: { room } }, format);
        return;
      }
      case "history": {
        const value: ListMessagesRequest = { ...request.value, room: roomOr(request.value.room, "history.room", routeRoom) };
        await this.#relay(requestId, format, "history", (options) => chat.listMessages(value, options), (page) => ({ case: "history", value: page }));
        return;
      }
      case "markRead": {
        const value = { ...request.value, room: roomOr(request.value.room, "mark_read.room", routeRoom) };
        await this.#relay(requestId, format, "mark_read", (options) => chat.markRead(value, options), (result) => ({ case: "markRead", value: result }));
        return;
      }
      case "listNotifications": {
        const value = request.value;
        await this.#relay(requestId, format, "list_notifications", (options) => notifications.listNotifications(value, options), (page) => ({ case: "notifications", value: page }));
        return;
      }
      case "ackNotifications": {
        const value = request.value;
        await this.#relay(requestId, format, "ack_notifications", (options) => notifications.ackNotifications(value, options), (acked) => ({ case: "notificationsAcked", value: acked }));
        return;
      }
      case "subscribeNotifications": {
        if (request.value.recipient !== "" && request.value.recipient !== this.#options.user) {
          throw new ParleyError(ErrorCategory.PERMISSION_DENIED, "only the recipient may follow an inbox", {
            field: "subscribe_notifications.recipient",
          });
        }
        const afterSeq = request.value.afterSeq === undefined ? undefined : checkSeq(request.value.afterSeq, "subscribe_notifications.after_seq");
        this.#accepted();
        follows.followInbox(requestId, afterSeq, format);
        return;
      }
      case "roomEvents": {
        const value = { ...request.value, room: roomOr(request.value.room, "room_events.room", routeRoom) };
        await this.#relay(requestId, format, "room_events", (options) => chat.listRoomEvents(value, options), (page) => ({ case: "roomEvents", value: page }));
        return;
      }
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
      case "listMyRooms": {
        const { name, call } = roomCall(request, rooms);
        await this.#relay(requestId, format, name, call, (kind) => kind);
        return;
      }
      case "ping":
        this.#accepted();
        writer.answer(requestId, { case: "pong", value: {} }, format);
        return;
      case "refreshToken": {
        if (request.value.token === "") throw validationError("refresh_token.token", "is required");
        this.#accepted();
        const identity = await this.#options.refreshToken(request.value.token);
        const expiresAt = identity.expiresAt === undefined ? undefined : timestampFromMs(identity.expiresAt * 1000);
        writer.answer(requestId, { case: "tokenRefreshed", value: { expiresAt } }, format);
        return;
      }
      case undefined:
        throw validationError("request", "one request kind is required");
    }
  }

  /** A request answered by one unary core call: accepted, limited, retried, answered. */
  async #relay<T>(
    requestId: string,
    format: FrameFormat,
    name: FrameRequestName,
    call: (options: CallOptions) => Promise<T>,
    answer: (result: T) => ServerFrameKind,
  ): Promise<void> {
    this.#accepted();
    let result: T;
    try {
      result = await this.#options.calls.call(name, call);
    } catch (error) {
      throw inFrameTerms(ParleyError.from(error), name);
    }
    this.#options.writer.answer(requestId, answer(result), format);
  }

  /** A frame that decoded and passed the bridge's checks: the run of invalid ones is over. */
  #accepted(): void {
    this.#options.errorRun.accepted();
    this.#frameAccepted = true;
  }

  /** Answers a refused request; a refusal of the bridge's own (`counts`) extends the run of invalid frames. */
  #refused(requestId: string, error: ParleyError, format: FrameFormat, counts: boolean): void {
    const { writer, errorRun } = this.#options;
    writer.answerError(requestId, error, format);
    if (counts && errorRun.refused(error)) this.#options.close(CloseCode.TOO_MANY_ERRORS, `${errorRun.count} invalid frames in a row`);
  }
}
