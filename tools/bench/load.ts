/**
 * The load generators of `npm run bench:core`: the same client code for every
 * target. A Recorder counts what completes inside the measurement window;
 * the caller opens and closes the window and finally stops the load.
 */
import { performance } from "node:perf_hooks";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import {
  type ChatService,
  type SendBatchesResponse,
  type SendStreamRequestSchema,
  type SendStreamResponse,
} from "../../gen/parley/v1/chat_pb.js";
import { MAX_BATCH_ITEMS } from "../../src/wire/limits.js";
import { categoryName } from "../../src/wire/errors/category.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import type { ServiceClient } from "../../src/runtime/grpc/client.js";
import { LatencySample } from "./latency.js";

export type ChatClient = ServiceClient<typeof ChatService>;

export interface LoadOptions {
  /** Distinguishes this scenario's clientMsgIds from every other one's. */
  readonly idPrefix: string;
  /** Rooms the messages are spread over, round-robin. */
  readonly rooms: readonly string[];
  /** Calls in flight (unary) or un-answered items in flight (stream). */
  readonly concurrency: number;
  /** Most messages sent in all (warm-up included). */
  readonly maxMessages: number;
  /** Deadline of one unary call; how long a stopped stream may take to drain. */
  readonly timeoutMs: number;
}

const MAX_ERROR_KINDS = 20;
/** A scenario that fails this often is not measuring anything: it stops. */
const MAX_ERRORS = 1_000;

export interface LoadResult {
  /** Successful answers inside the window. */
  readonly windowCount: number;
  readonly windowSeconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Successful answers in all (warm-up and drain included), new messages only. */
  readonly storedAnswers: number;
  /** Successful answers flagged `duplicate` (expected: none). */
  readonly duplicates: number;
  readonly errorCount: number;
  /** Error kind ("CATEGORY: message") → count. */
  readonly errors: ReadonlyMap<string, number>;
  /** Items sent on a stream that were never answered. */
  readonly unanswered: number;
  /** Why the load stopped early, if it did. */
  readonly stoppedEarly: string | undefined;
}

/** Counts one scenario's outcomes and owns its measurement window and stop signal. */
export class Recorder {
  readonly #latencies = new LatencySample(1_000_000);
  readonly #errors = new Map<string, number>();
  #issued = 0;
  #measuring = false;
  #windowStart = 0;
  #windowEnd = 0;
  #windowCount = 0;
  #storedAnswers = 0;
  #duplicates = 0;
  #errorCount = 0;
  #unanswered = 0;
  #stoppedEarly: string | undefined;
  #stopped = false;
  readonly #onStop: (() => void)[] = [];

  constructor(private readonly options: LoadOptions) {}

  get stopped(): boolean {
    return this.#stopped;
  }

  startWindow(): void {
    this.#measuring = true;
    this.#windowStart = performance.now();
  }

  endWindow(): void {
    this.#measuring = false;
    this.#windowEnd = performance.now();
  }

  /** No more sends; in-flight ones still complete (and count, outside the window). */
  stop(reason?: string): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stoppedEarly ??= reason;
    for (const listener of this.#onStop.splice(0)) listener();
  }

  onStop(listener: () => void): void {
    if (this.#stopped) listener();
    else this.#onStop.push(listener);
  }

  /** The next message to send, or undefined once stopped or at the count bound. */
  next(): { room: string; body: string; clientMsgId: string } | undefined {
    if (this.#stopped) return undefined;
    if (this.#issued >= this.options.maxMessages) {
      this.stop(`reached BENCH_MAX_MESSAGES (${this.options.maxMessages})`);
      return undefined;
    }
    const n = this.#issued++;
    const room = this.options.rooms[n % this.options.rooms.length] ?? "bench-room-0";
    // 64 characters, like the no-op server's fixed answer.
    return { room, body: `message ${n} `.padEnd(64, "."), clientMsgId: `${this.options.idPrefix}-${n}` };
  }

  succeeded(startedAt: number, duplicate: boolean): void {
    if (duplicate) this.#duplicates++;
    else this.#storedAnswers++;
    if (!this.#measuring) return;
    this.#windowCount++;
    this.#latencies.add(performance.now() - startedAt);
  }

  failed(kind: string): void {
    this.#errorCount++;
    const key = this.#errors.has(kind) || this.#errors.size < MAX_ERROR_KINDS ? kind : "(other kinds)";
    this.#errors.set(key, (this.#errors.get(key) ?? 0) + 1);
    if (this.#errorCount >= MAX_ERRORS) this.stop(`${MAX_ERRORS} errors`);
  }

  lost(items: number): void {
    this.#unanswered += items;
  }

  result(): LoadResult {
    const [p50Ms = Number.NaN, p99Ms = Number.NaN] = this.#latencies.percentiles(50, 99);
    return {
      windowCount: this.#windowCount,
      windowSeconds: (this.#windowEnd - this.#windowStart) / 1000,
      p50Ms,
      p99Ms,
      storedAnswers: this.#storedAnswers,
      duplicates: this.#duplicates,
      errorCount: this.#errorCount,
      errors: this.#errors,
      unanswered: this.#unanswered,
      stoppedEarly: this.#stoppedEarly,
    };
  }
}

function describeError(error: unknown): string {
  const parleyError = ParleyError.from(error);
  return `${parleyError.categoryName}: ${parleyError.message}`.slice(0, 200);
}

/** `concurrency` callers, each sending SendMessage calls back to back until stopped. */
export async function unaryLoad(client: ChatClient, recorder: Recorder, options: LoadOptions): Promise<void> {
  const caller = async () => {
    for (let request = recorder.next(); request !== undefined; request = recorder.next()) {
      const startedAt = performance.now();
      try {
        const response = await client.sendMessage(request, { timeoutMs: options.timeoutMs });
        recorder.succeeded(startedAt, response.duplicate);
      } catch (error) {
        recorder.failed(describeError(error));
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, caller));
}

/**
 * One SendStream with at most `concurrency` un-answered items: each answer
 * lets one more item go. Answers come in stream_seq order, so the send times
 * of the items in flight are a FIFO. The window also bounds what is buffered
 * in the client, so write()'s back-pressure signal is not needed.
 */
export function streamLoad(client: ChatClient, recorder: Recorder, options: LoadOptions, grouped = false): Promise<void> {
  return new Promise<void>((resolve) => {
    const { stream: call, writeItems, onAnswers } = grouped ? batchesCall(client) : itemsCall(client);
    const sentAt: number[] = [];
    let head = 0;
    let streamSeq = 0n;
    let answered = 0n;
    let ended = false;
    let drainTimer: NodeJS.Timeout | undefined;

    const inFlight = () => sentAt.length - head;
    const endIfDone = () => {
      if (!ended && recorder.stopped && inFlight() === 0) {
        ended = true;
        call.end();
      }
    };
    const pump = () => {
      const items: StreamItem[] = [];
      while (inFlight() < options.concurrency) {
        const item = recorder.next();
        if (item === undefined) break;
        sentAt.push(performance.now());
        items.push({ streamSeq: ++streamSeq, ...item });
      }
      if (items.length > 0) writeItems(items);
      endIfDone();
    };
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      clearTimeout(drainTimer);
      recorder.lost(inFlight());
      resolve();
    };

    onAnswers((answers) => {
      for (const answer of answers) {
        const startedAt = sentAt[head++];
        // Keep the FIFO from growing for the whole run.
        if (head > 4096) {
          sentAt.splice(0, head);
          head = 0;
        }
        answered++;
        if (startedAt === undefined) {
          recorder.failed("PROTOCOL: an answer for an item that was not sent");
        } else if (answer.streamSeq !== answered) {
          recorder.failed(`PROTOCOL: answer for stream_seq ${answer.streamSeq} where ${answered} was due`);
        } else {
          switch (answer.result.case) {
            case "message":
              recorder.succeeded(startedAt, answer.duplicate);
              break;
            case "error":
              recorder.failed(`${categoryName(answer.result.value.category)}: ${answer.result.value.message}`.slice(0, 200));
              break;
            case undefined:
              recorder.failed("PROTOCOL: an answer with neither message nor error");
              break;
          }
        }
      }
      pump();
    });
    call.on("error", (error: unknown) => {
      recorder.failed(`stream: ${describeError(error)}`);
      recorder.stop("the stream failed");
    });
    call.on("status", () => {
      if (call.readableEnded) settle();
      else call.once("end", settle);
    });
    call.on("close", settle);
    recorder.onStop(() => {
      endIfDone();
      // A server that stops answering must not hang the benchmark.
      drainTimer = setTimeout(() => {
        call.cancel();
        settle();
      }, options.timeoutMs);
    });
    pump();
  });
}

type StreamItem = MessageInitShape<typeof SendStreamRequestSchema>;

/** A send stream as streamLoad drives it: items written in groups, answers read in groups. */
interface ItemsCall {
  readonly stream: ClientDuplexStream<never, unknown>;
  writeItems: (items: StreamItem[]) => void;
  onAnswers: (listener: (answers: readonly SendStreamResponse[]) => void) => void;
}

/** SendStream: one message per item and per answer. */
function itemsCall(client: ChatClient): ItemsCall {
  const stream = client.sendStream();
  return {
    stream,
    writeItems: (items) => {
      for (const item of items) stream.write(item);
    },
    onAnswers: (listener) => stream.on("data", (answer: SendStreamResponse) => { listener([answer]); }),
  };
}

/** SendBatches: the items of one pump as one request, the answers of one response together. */
function batchesCall(client: ChatClient): ItemsCall {
  const stream = client.sendBatches();
  return {
    stream,
    writeItems: (items) => {
      for (let start = 0; start < items.length; start += MAX_BATCH_ITEMS) stream.write({ items: items.slice(start, start + MAX_BATCH_ITEMS) });
    },
    onAnswers: (listener) => stream.on("data", (response: SendBatchesResponse) => { listener(response.answers); }),
  };
}
