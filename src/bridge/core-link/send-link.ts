import { create } from "@bufbuild/protobuf";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import {
  type ChatService,
  type SendBatchesRequest,
  type SendBatchesResponse,
  type SendStreamRequest,
  type SendStreamResponse,
  SendStreamResponseSchema,
} from "../../../gen/parley/v1/chat_pb.js";
import { backoffDelay, type BackoffPolicy, MAX_BATCH_ITEMS, ParleyError, PEER_RETRY_BACKOFF, toErrorDetail } from "../../wire/index.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { atEndOfTurn, failSpan, fromGrpcError, type Logger, parleyMetrics, recordRetry, type ServiceClient, tracer } from "../../runtime/index.js";
import { context, trace } from "@opentelemetry/api";

/** One send, as the bridge hands it to core. */
export interface LinkSend {
  readonly room: string;
  readonly body: string;
  readonly clientMsgId: string;
  /** The browser user's own token: core stores the send as its subject. */
  readonly actingToken: string;
  /** The W3C traceparent of the frame's span: core continues that trace. */
  readonly traceparent?: string;
}

export interface SendLinkOptions {
  readonly chat: ServiceClient<typeof ChatService>;
  readonly logger: Logger;
  /** An item core has not answered in this long counts as a broken stream. */
  readonly answerTimeoutMs?: number;
  readonly backoff?: BackoffPolicy;
}

/** Receives core's answer to one send: a stored message or an item error. */
export type AnswerSink = (response: SendStreamResponse) => void;

interface Entry {
  readonly request: SendStreamRequest;
  readonly answer: AnswerSink;
}

/**
 * All of a bridge's sends travel over one `SendBatches` stream to core, each
 * item with a stream_seq and the acting user's token. The sends of one turn
 * of the event loop leave as one request, and core answers a commit's items
 * in one response: a gRPC stream writes one message per HTTP/2 write
 * completion, so a message per send would cap the link at one send (and one
 * answer) per turn. Core answers in stream_seq
 * order. When the stream breaks (core restarting: UNAVAILABLE) or an answer
 * is overdue, the link re-opens it with exponential backoff and full jitter
 * and resends every un-answered item, in stream_seq order, with the same
 * client_msg_id: idempotency keeps them single, and no later send can
 * overtake an earlier one. Callers see an unbroken stream of answers.
 *
 * Answers are handed to a callback rather than a promise: the link answers
 * thousands of sends a second, and each promise (with OpenTelemetry's
 * context tracking on every one) is CPU the bridge does not need to spend.
 */
export class SendLink {
  readonly #pending = new Map<bigint, Entry>();
  #nextSeq = 1n;
  #stream: ClientDuplexStream<SendBatchesRequest, SendBatchesResponse> | undefined;
  /** Items of this turn, written as one request when it ends. */
  #outbox: SendStreamRequest[] = [];
  #flushScheduled = false;
  #attempt = 0;
  #reopenTimer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #closed = false;
  /** When the current stream last showed life: opened, or answered something. */
  #progressAt = 0;
  readonly #answerTimeoutMs: number;

  constructor(private readonly options: SendLinkOptions) {
    this.#answerTimeoutMs = options.answerTimeoutMs ?? 10_000;
  }

  /**
   * Sends one item; `answer` is called exactly once, later (never during this
   * call), with core's answer. Sends made through one link are answered in
   * the order they were made.
   */
  send(item: LinkSend, answer: AnswerSink): void {
    if (this.#closed) {
      const refusal = failed(0n, new ParleyError(ErrorCategory.UNAVAILABLE, "the bridge is shutting down"));
      queueMicrotask(() => { this.#deliver(answer, refusal); });
      return;
    }
    const streamSeq = this.#nextSeq++;
    const request = { streamSeq, ...item } as SendStreamRequest;
    if (this.#pending.size === 0) this.#progressAt = Date.now();
    this.#pending.set(streamSeq, { request, answer });
    if (this.#stream) this.#enqueue(request);
    else this.#open();
    this.#armWatchdog();
  }

  /** Sends not answered yet. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Resolves once every pending send has been answered (or `timeoutMs` passed). */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#pending.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  /** Stops the link; unanswered sends are answered UNAVAILABLE (the client resends). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#reopenTimer);
    clearTimeout(this.#watchdog);
    this.#stream?.cancel();
    this.#stream = undefined;
    const error = new ParleyError(ErrorCategory.UNAVAILABLE, "the bridge is shutting down; resend with the same client_msg_id");
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const [seq, entry] of pending) this.#deliver(entry.answer, failed(seq, error));
  }

  /** Answers every pending send with `error`, in a microtask. */
  #failPending(error: ParleyError): void {
    const pending = [...this.#pending];
    this.#pending.clear();
    queueMicrotask(() => {
      for (const [seq, entry] of pending) this.#deliver(entry.answer, failed(seq, error));
    });
  }

  #enqueue(request: SendStreamRequest): void {
    this.#outbox.push(request);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    atEndOfTurn(this.#flush);
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const items = this.#outbox;
    this.#outbox = [];
    // Without a stream they are still pending: the next stream resends them all.
    if (this.#stream) this.#write(this.#stream, items);
  };

  #write(stream: ClientDuplexStream<SendBatchesRequest, SendBatchesResponse>, items: readonly SendStreamRequest[]): void {
    for (let start = 0; start < items.length; start += MAX_BATCH_ITEMS) {
      stream.write({ items: items.slice(start, start + MAX_BATCH_ITEMS) } as SendBatchesRequest);
    }
  }

  #open(): void {
    if (this.#closed || this.#stream || this.#reopenTimer) return;
    let stream: ReturnType<ServiceClient<typeof ChatService>["sendBatches"]>;
    try {
      stream = this.options.chat.sendBatches();
    } catch (error) {
      // The channel itself is gone (grpc-js throws once it is closed): no
      // stream will open again, so every send waiting is answered, each
      // exactly once and never during the call that made it.
      this.#failPending(new ParleyError(ErrorCategory.UNAVAILABLE, "the bridge cannot reach core; resend with the same client_msg_id", { cause: error }));
      return;
    }
    this.#stream = stream;
    this.#progressAt = Date.now();
    stream.on("data", (response: SendBatchesResponse) => {
      this.#progressAt = Date.now();
      this.#attempt = 0;
      for (const answer of response.answers) {
        const entry = this.#pending.get(answer.streamSeq);
        if (!entry) continue; // answered before a resend crossed it
        this.#pending.delete(answer.streamSeq);
        this.#deliver(entry.answer, answer);
      }
    });
    stream.on("error", (error) => {
      this.#broken(stream, fromGrpcError(error));
    });
    stream.on("end", () => {
      this.#broken(stream, new ParleyError(ErrorCategory.UNAVAILABLE, "core ended the send stream"));
    });
    // Everything not answered yet goes out again, oldest first (this turn's
    // outbox among it).
    this.#outbox = [];
    this.#write(stream, Array.from(this.#pending.values(), (entry) => entry.request));
  }

  /** Hands an answer over; a throwing receiver is a bug there, logged, not the stream's failure. */
  #deliver(answer: AnswerSink, response: SendStreamResponse): void {
    try {
      answer(response);
    } catch (error) {
      const failure = ParleyError.from(error);
      this.options.logger.error({ category: failure.categoryName, err: failure }, "a send's answer could not be delivered");
    }
  }

  #broken(stream: ClientDuplexStream<SendBatchesRequest, SendBatchesResponse>, cause: ParleyError): void {
    if (this.#stream !== stream) return;
    this.#stream = undefined;
    stream.cancel();
    if (this.#closed || this.#pending.size === 0) return;
    if (!cause.retryable && cause.category !== ErrorCategory.UNAVAILABLE) {
      // Core refused the stream itself (e.g. the bridge's token): retrying
      // cannot help; answer every pending send with the reason.
      this.options.logger.error({ category: cause.categoryName, err: cause }, "core refused the send stream");
      const pending = [...this.#pending];
      this.#pending.clear();
      for (const [seq, entry] of pending) this.#deliver(entry.answer, failed(seq, cause));
      return;
    }
    this.#attempt++;
    parleyMetrics().retries.add(1, { component: "bridge", category: cause.categoryName });
    // A short span per retry, so that a trace viewer shows the outage; the
    // log line is written inside it and carries its trace id.
    const span = tracer().startSpan("bridge.send_stream.retry", { attributes: { "parley.attempt": this.#attempt, "parley.pending": this.#pending.size } });
    recordRetry(span, this.#attempt, cause);
    failSpan(span, cause);
    const delay = backoffDelay(this.#attempt, this.options.backoff ?? PEER_RETRY_BACKOFF);
    context.with(trace.setSpan(context.active(), span), () => {
      this.options.logger.warn(
        { category: cause.categoryName, reason: cause.message, attempt: this.#attempt, pending: this.#pending.size, delay_ms: Math.round(delay) },
        "send stream to core broken; resending un-answered items",
      );
    });
    span.end();
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = undefined;
      this.#open();
    }, delay);
  }

  /** An answer overdue by answerTimeoutMs means core is not answering: re-open. */
  #armWatchdog(): void {
    if (this.#watchdog) return;
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined;
      if (this.#pending.size === 0) return;
      if (Date.now() - this.#progressAt >= this.#answerTimeoutMs && this.#stream) {
        this.#broken(this.#stream, new ParleyError(ErrorCategory.TIMEOUT, "core did not answer a send in time", { retryable: true }));
      }
      this.#armWatchdog();
    }, Math.max(100, this.#answerTimeoutMs / 4));
    this.#watchdog.unref();
  }
}

function failed(streamSeq: bigint, error: ParleyError): SendStreamResponse {
  return create(SendStreamResponseSchema, { streamSeq, result: { case: "error", value: toErrorDetail(error) } });
}
