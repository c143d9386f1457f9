// A connection's sends: admitted or refused as they arrive, handed to the
// bridge's send link, and answered strictly in the order they arrived —
// acks, core's refusals and the bridge's own refusals alike.
import { type Context, context, type Span, trace } from "@opentelemetry/api";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { CloseCode, type SendFrame } from "../../../gen/parley/v1/frames_pb.js";
import { type FrameFormat, fromErrorDetail, ParleyError, validationError } from "../../wire/index.js";
import { OrderedRelease, type ReleaseSlot, type TokenBucket, traceparentOfSpan } from "../../runtime/index.js";
import type { SendLink } from "../core-link/send-link.js";
import type { SendStreamResponse } from "../../../gen/parley/v1/chat_pb.js";
import type { ErrorRun } from "./error-run.js";
import { inFrameTerms, roomOr } from "./frame-fields.js";
import type { Credential } from "./credential.js";
import type { ConnectionObserver } from "./deps.js";
import type { FrameWriter } from "./writer.js";

export interface SendsOptions {
  readonly sendLink: SendLink;
  /** The user's own token (current at each send): core stores each send as its subject. */
  readonly credential: Credential;
  /** The room of the connection's path, for sends that name none. */
  readonly routeRoom: string | undefined;
  readonly maxInflightSends: number;
  /** Refusals that may wait in line behind unanswered sends; one more closes the connection (4029). */
  readonly maxWaitingRefusals: number;
  /** The user's send rate, shared with their other connections on this bridge. */
  readonly userSends: TokenBucket;
  readonly writer: FrameWriter;
  readonly errorRun: ErrorRun;
  readonly observe: ConnectionObserver | undefined;
  readonly close: (code: CloseCode, reason: string) => void;
}

/** How long past its refusal's `retry_after` a rate hold lasts for a client that never resends the refused send. */
const HOLD_LAPSE_MS = 2_000;

/**
 * A send refused for its rate, or by core after holding it through a
 * database outage longer than its horizon (UNAVAILABLE), which the
 * connection's later sends wait behind: they are refused too (with the same
 * category) until it comes again (its client_msg_id), so that a client
 * resending it keeps its sends in order. For a client that gives it up
 * instead, the hold lapses `retry_after` + HOLD_LAPSE_MS after the refusal
 * was written (a client cannot have read it sooner).
 */
interface RateHold {
  readonly clientMsgId: string;
  /** What the later sends are refused with: the category of the refusal that made the hold. */
  readonly category: ErrorCategory;
  readonly retryAfterMs: number;
  /** When it lapses (performance.now()); unbounded until the refusal is written. */
  until: number;
}

/** The hold's refusal is written now: it lapses `retry_after` + HOLD_LAPSE_MS from now. */
function lapseFromNow(hold: RateHold): void {
  hold.until = performance.now() + hold.retryAfterMs + HOLD_LAPSE_MS;
}

/**
 * Sends are most of the traffic, so they take a path without promises:
 * checked synchronously, handed to the send link with a callback, and
 * answered through an OrderedRelease in which every send frame takes its
 * place when it arrives. A refusal waits there for the answers of earlier
 * sends. Held sends (core unreachable) have no deadline, so refusals
 * waiting behind them are bounded on their own: past `maxWaitingRefusals`
 * of them (max_inflight_sends + the frame burst) the connection is closed
 * with 4029, and the refusal that completes a run of invalid frames closes
 * it (4508) at once rather than in line. Either way the unanswered sends
 * are resent by the client with their client_msg_id. A refusal for the
 * rate holds the later sends behind the refused one (RateHold): a token
 * freed between two sends would otherwise let the later one be stored
 * before the earlier one is resent. Each frame's span
 * ends when its answer is out; core continues the span's trace from its
 * traceparent, and the span becomes the active context only where a rare
 * error answer needs its trace id.
 */
export class Sends {
  readonly #options: SendsOptions;
  readonly #answers = new OrderedRelease();
  #lastSeq: bigint | undefined;
  #inflight = 0;
  /** Refusals written in line but not yet released (they wait for earlier answers). */
  #waitingRefusals = 0;
  #hold: RateHold | undefined;

  constructor(options: SendsOptions) {
    this.#options = options;
  }

  /** Takes one decoded send frame. */
  send(requestId: string, send: SendFrame, format: FrameFormat, span: Span, parent: Context): void {
    const slot = this.#answers.take();
    let room: string;
    try {
      room = this.#admit(send);
    } catch (error) {
      const failure = ParleyError.from(error);
      const hold = this.#holdBehind(send, failure);
      this.#refuse(slot, requestId, failure, format, span, parent, hold && (() => { lapseFromNow(hold); }));
      return;
    }
    this.#inflight++;
    const startedAt = performance.now();
    const item = { room, body: send.body, clientMsgId: send.clientMsgId, actingToken: this.#options.credential.token, traceparent: traceparentOfSpan(span.spanContext()) };
    // The link answers in the order sends were made; the slot keeps this
    // connection's answers in its send order whatever happens underneath.
    // It answers every send exactly once, never during this call, even when
    // core's channel is gone (send-link.ts): the slot is always completed.
    this.#options.sendLink.send(item, (response) => {
      this.#answered(slot, requestId, send, format, span, parent, startedAt, response);
    });
  }

  /** Core's answer to an admitted send, released in the send's place in line. */
  #answered(slot: ReleaseSlot, requestId: string, send: SendFrame, format: FrameFormat, span: Span, parent: Context, startedAt: number, response: SendStreamResponse): void {
    this.#answers.complete(slot, () => {
      const { writer, observe } = this.#options;
      this.#inflight--;
      const ok = response.result.case === "message";
      observe?.sendAnswered?.(performance.now() - startedAt, ok);
      if (response.result.case === "message") {
        writer.answer(requestId, { case: "sendAck", value: { seq: send.seq, message: response.result.value, duplicate: response.duplicate } }, format);
        writer.flushAfterThisTask();
      } else {
        const detail = response.result.value;
        const error = detail ? fromErrorDetail(detail) : new ParleyError(ErrorCategory.INTERNAL, "core gave no answer");
        context.with(trace.setSpan(parent, span), () => {
          writer.answerError(requestId, inFrameTerms(error, "send"), format);
        });
        // Core held the send while its database was away, then gave up:
        // the client resends it, and the connection's later sends wait
        // behind it, as behind a refusal for the rate.
        const hold = this.#holdBehind(send, error);
        if (hold) lapseFromNow(hold);
      }
      span.end();
    });
  }

  /** A send frame that did not decode: refused in its place among the sends. */
  refuseUnreadable(requestId: string, error: ParleyError, format: FrameFormat, span: Span): void {
    this.#refuse(this.#answers.take(), requestId, error, format, span, context.active());
  }

  /** Checks a send as it arrives (throwing when it is refused); accepted, it counts as in flight. */
  #admit(send: SendFrame): string {
    if (this.#lastSeq !== undefined && send.seq <= this.#lastSeq) {
      throw validationError("send.seq", `must increase along the connection: got ${send.seq} after ${this.#lastSeq}`);
    }
    const room = roomOr(send.room, "send.room", this.#options.routeRoom);
    const hold = this.#hold;
    if (hold !== undefined) {
      if (send.clientMsgId !== hold.clientMsgId && performance.now() < hold.until) {
        const why = hold.category === ErrorCategory.RATE_LIMITED ? "for its rate" : "because the database was unreachable";
        throw new ParleyError(hold.category, `an earlier send of this connection was refused ${why}: resend that one first, then this one`, {
          retryAfterMs: hold.retryAfterMs,
        });
      }
      this.#hold = undefined;
    }
    const { maxInflightSends } = this.#options;
    if (this.#inflight >= maxInflightSends) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${maxInflightSends} sends awaiting an answer`, { retryAfterMs: 100 });
    }
    const { userSends } = this.#options;
    if (!userSends.take()) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${userSends.ratePerSecond} sends a second by this user (bursts of ${userSends.burst}, over all their connections)`, {
        retryAfterMs: userSends.msUntil(),
      });
    }
    this.#lastSeq = send.seq;
    this.#options.errorRun.accepted();
    return room;
  }

  /**
   * A refusal the client resends — for the rate (past max_inflight_sends
   * or the user's sends a second), or core's retryable UNAVAILABLE after a
   * database outage — holds the connection's later sends behind the
   * refused one; returns the new hold.
   */
  #holdBehind(send: SendFrame, error: ParleyError): RateHold | undefined {
    const holds = error.category === ErrorCategory.RATE_LIMITED || (error.category === ErrorCategory.UNAVAILABLE && error.retryable);
    if (!holds || this.#hold !== undefined) return undefined;
    this.#hold = { clientMsgId: send.clientMsgId, category: error.category, retryAfterMs: error.retryAfterMs ?? 0, until: Number.POSITIVE_INFINITY };
    return this.#hold;
  }

  /**
   * Answers a refused send once every earlier send is answered. The run of
   * invalid frames counts it now, in arrival order; the refusal that
   * completes a run is answered and closes the connection at once, and so
   * does one refusal too many waiting in line.
   */
  #refuse(slot: ReleaseSlot, requestId: string, error: ParleyError, format: FrameFormat, span: Span, parent: Context, written?: () => void): void {
    const { errorRun, writer, maxWaitingRefusals, close } = this.#options;
    const answer = () => {
      context.with(trace.setSpan(parent, span), () => {
        writer.answerError(requestId, error, format);
      });
      written?.();
      span.end();
    };
    if (errorRun.refused(error)) {
      answer();
      close(CloseCode.TOO_MANY_ERRORS, `${errorRun.count} invalid frames in a row`);
      return;
    }
    if (this.#waitingRefusals >= maxWaitingRefusals) {
      // Answered (and so logged and traced) at once, like the 4508 close.
      answer();
      close(CloseCode.RATE_LIMITED, `more than ${maxWaitingRefusals} refused sends waiting behind unanswered ones`);
      return;
    }
    this.#waitingRefusals++;
    this.#answers.complete(slot, () => {
      this.#waitingRefusals--;
      answer();
    });
  }
}
