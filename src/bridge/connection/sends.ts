// A connection's sends: admitted or refused as they arrive, handed to the
// bridge's send link, and answered strictly in the order they arrived —
// acks, core's refusals and the bridge's own refusals alike.
import { type Context, context, type Span, trace } from "@opentelemetry/api";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { CloseCode, type SendFrame } from "../../../gen/parley/v1/frames_pb.js";
import { type FrameFormat, fromErrorDetail, ParleyError, validationError } from "../../wire/index.js";
import { OrderedRelease, type ReleaseSlot, traceparentOfSpan } from "../../runtime/index.js";
import type { SendLink } from "../core-link/send-link.js";
import type { ErrorRun } from "./error-run.js";
import { inFrameTerms, roomOr } from "./frame-fields.js";
import type { ConnectionObserver } from "./deps.js";
import type { FrameWriter } from "./writer.js";

export interface SendsOptions {
  readonly sendLink: SendLink;
  /** The user's own token: core stores each send as its subject. */
  readonly token: string;
  /** The room of the connection's path, for sends that name none. */
  readonly routeRoom: string | undefined;
  readonly maxInflightSends: number;
  readonly writer: FrameWriter;
  readonly errorRun: ErrorRun;
  readonly observe: ConnectionObserver | undefined;
  readonly close: (code: CloseCode, reason: string) => void;
}

/**
 * Sends are most of the traffic, so they take a path without promises:
 * checked synchronously, handed to the send link with a callback, and
 * answered through an OrderedRelease in which every send frame takes its
 * place when it arrives. A refusal waits there for the answers of earlier
 * sends (the queue of waiting refusals is bounded by the frame rate limit
 * and the send link's answer deadline). Each frame's span ends when its
 * answer is out; core continues the span's trace from its traceparent, and
 * the span becomes the active context only where a rare error answer needs
 * its trace id.
 */
export class Sends {
  readonly #options: SendsOptions;
  readonly #answers = new OrderedRelease();
  #lastSeq: bigint | undefined;
  #inflight = 0;

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
      this.#refuse(slot, requestId, ParleyError.from(error), format, span, parent);
      return;
    }
    const { writer, observe } = this.#options;
    this.#inflight++;
    const startedAt = performance.now();
    const item = { room, body: send.body, clientMsgId: send.clientMsgId, actingToken: this.#options.token, traceparent: traceparentOfSpan(span.spanContext()) };
    // The link answers in the order sends were made; the slot keeps this
    // connection's answers in its send order whatever happens underneath.
    this.#options.sendLink.send(item, (response) => {
      this.#answers.complete(slot, () => {
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
        }
        span.end();
      });
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
    const { maxInflightSends } = this.#options;
    if (this.#inflight >= maxInflightSends) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `more than ${maxInflightSends} sends awaiting an answer`, { retryAfterMs: 100 });
    }
    this.#lastSeq = send.seq;
    this.#options.errorRun.accepted();
    return room;
  }

  /**
   * Answers a refused send once every earlier send is answered. The run of
   * invalid frames counts it now, in arrival order; a run it completes
   * closes the connection after its answer.
   */
  #refuse(slot: ReleaseSlot, requestId: string, error: ParleyError, format: FrameFormat, span: Span, parent: Context): void {
    const { errorRun, writer } = this.#options;
    const closes = errorRun.refused(error) ? `${errorRun.count} invalid frames in a row` : undefined;
    this.#answers.complete(slot, () => {
      context.with(trace.setSpan(parent, span), () => {
        writer.answerError(requestId, error, format);
      });
      span.end();
      if (closes !== undefined) this.#options.close(CloseCode.TOO_MANY_ERRORS, closes);
    });
  }
}
