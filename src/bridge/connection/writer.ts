// Everything a connection writes leaves through here: frames encoded (events
// once per bridge, framed for the raw socket), written corked, flushed at the
// end of the turn (acks at the end of their task), and the client's backlog
// judged after each flush (too slow: 4001).
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { WebSocket } from "ws";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { CloseCode, type ServerFrame, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { context, trace } from "@opentelemetry/api";
import { encodeServerFrame, errorFrame, type FrameFormat, ParleyError } from "../../wire/index.js";
import { clientFacing } from "../client-facing.js";
import { atEndOfTurn, currentTraceId, failSpan, logError, type Logger, RefusalLogSampler, tracer } from "../../runtime/index.js";
import type { EncodedEvent } from "../encoded-event.js";
import type { ConnectionObserver } from "./deps.js";

/** The net.Socket under a ws WebSocket, as far as corking needs it. */
interface CorkableSocket {
  cork(): void;
  uncork(): void;
  write(data: Uint8Array): boolean;
  readonly writableLength: number;
}

/** The `kind` of a server frame, as frames_pb builds it. */
export type ServerFrameKind = MessageInitShape<typeof ServerFrameSchema>["kind"];

/** Bytes held back by corking before they are flushed anyway. */
const CORK_FLUSH_BYTES = 64 * 1024;

export interface FrameWriterOptions {
  readonly socket: WebSocket;
  readonly connectionId: string;
  /** Format of frames pushed before the client spoke. */
  readonly initialFormat: FrameFormat;
  readonly maxBufferedBytes: number;
  readonly log: Logger;
  readonly observe: ConnectionObserver | undefined;
  /** Ends the connection (slow consumer, a frame that cannot be encoded). */
  readonly close: (code: CloseCode, reason: string) => void;
  /** Told of every error answer written (the session counts RATE_LIMITED ones). */
  readonly refused?: (error: ParleyError) => void;
}

/** Writes one connection's frames; see the comment at the top of this file. */
export class FrameWriter {
  /** Format of pushed frames (events, welcome): the one the client last spoke. */
  pushFormat: FrameFormat;
  readonly #socket: WebSocket;
  readonly #options: FrameWriterOptions;
  /**
   * No extension was negotiated (the bridge turns permessage-deflate off), so
   * ws would write a frame exactly as ws-frame.ts builds it: events can go
   * straight to the socket. Settled at the handshake; ws's getter builds a
   * string each time it is read.
   */
  readonly #plainFrames: boolean;
  #corked = false;
  /** An ack was written: the socket is flushed when the current task ends. */
  #flushQueued = false;
  /** The connection is closed: only forced frames (its last go_away) are written. */
  #closed = false;
  /** This connection's RATE_LIMITED refusals, logged at most once a second. */
  readonly #refusals = new RefusalLogSampler();

  constructor(options: FrameWriterOptions) {
    this.#options = options;
    this.#socket = options.socket;
    this.pushFormat = options.initialFormat;
    this.#plainFrames = options.socket.extensions === "";
  }

  /** From now on nothing but forced frames is written. */
  markClosed(): void {
    this.#closed = true;
  }

  /** Answers `requestId` with a frame of `kind`. */
  answer(requestId: string, kind: ServerFrameKind, format: FrameFormat): void {
    this.push(create(ServerFrameSchema, { requestId, kind }), format);
  }

  /**
   * Answers a failed request with an error frame; the failure goes on the
   * active span, the log line and the error metric.
   */
  answerError(requestId: string, error: ParleyError, format: FrameFormat): void {
    this.#options.observe?.error?.(error.categoryName);
    const span = trace.getActiveSpan();
    if (span) failSpan(span, error);
    this.#log(requestId, error);
    this.push(errorFrame(requestId, clientFacing(error), currentTraceId()), format);
    this.#options.refused?.(error);
  }

  /**
   * One log line per failure, except RATE_LIMITED: a client over its rate
   * earns hundreds of refusals a second, logged at most once a second per
   * connection with the count not logged since (`unlogged`).
   */
  #log(requestId: string, error: ParleyError): void {
    const unlogged = error.category === ErrorCategory.RATE_LIMITED ? this.#refusals.take() : 0;
    if (unlogged === undefined) return;
    logError(this.#options.log, error, unlogged === 0 ? { request_id: requestId } : { request_id: requestId, unlogged });
  }

  /** Writes a pushed event: its shared frame, straight to the socket where ws would write exactly that. */
  pushEvent(event: EncodedEvent): void {
    const kind = event.kind;
    const raw = this.#plainFrames ? this.#rawSocket() : undefined;
    let data: Uint8Array;
    try {
      data = raw === undefined ? event.encoded(this.pushFormat) : event.framed(this.pushFormat);
    } catch (error) {
      this.#serializationFailed("", event.frame, ParleyError.from(error));
      return;
    }
    if (raw === undefined) this.#write(data, kind, this.pushFormat);
    else if (this.#startWrite(kind)) raw.write(data);
  }

  /** Encodes and writes one frame; an encoding failure becomes a fallback error frame. `force` writes it even after the close. */
  push(frame: ServerFrame, format: FrameFormat, force = false): void {
    let data: string | Uint8Array;
    try {
      data = encodeServerFrame(frame, format);
    } catch (error) {
      this.#serializationFailed(frame.requestId, frame, ParleyError.from(error));
      return;
    }
    this.#write(data, frame.kind.case ?? "none", format, force);
  }

  /**
   * A send's ack is what its client waits for: it leaves when the task that
   * produced it (a batch of core's answers) ends, not with the rest of the
   * turn's frames at its end.
   */
  flushAfterThisTask(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flushNow);
  }

  readonly #flushNow = (): void => {
    this.#flushQueued = false;
    if (this.#corked) this.#uncork();
  };

  #serializationFailed(requestId: string, frame: ServerFrame, error: ParleyError): void {
    // Log what could not be encoded (truncated), answer with a frame that can.
    const span = tracer().startSpan("ws.frame encode", { attributes: { "parley.connection.id": this.#options.connectionId, "parley.frame.kind": frame.kind.case ?? "none" } });
    failSpan(span, error);
    context.with(trace.setSpan(context.active(), span), () => {
      logError(this.#options.log, error, { request_id: requestId, frame_kind: frame.kind.case, frame: describeTruncated(frame) });
    });
    span.end();
    this.#options.observe?.error?.("SERIALIZATION");
    const fallback = errorFrame(requestId, new ParleyError(ErrorCategory.SERIALIZATION, "the answer could not be encoded"));
    try {
      this.#write(encodeServerFrame(fallback, "json"), "error", "json");
    } catch {
      this.#options.close(CloseCode.INTERNAL_ERROR, "could not encode a frame");
    }
  }

  /** Writes one frame: a text frame for "json" (`data` may be its UTF-8 bytes), a binary one otherwise. */
  #write(data: string | Uint8Array, kind: string, format: FrameFormat, force = false): void {
    if (this.#startWrite(kind, force)) this.#socket.send(data, { binary: format === "binary" });
  }

  /** Whether a frame may be written now; if so, counts it and corks the socket for it. */
  #startWrite(kind: string, force = false): boolean {
    const socket = this.#socket;
    if ((this.#closed && !force) || socket.readyState !== socket.OPEN) return false;
    this.#options.observe?.frameOut?.(kind);
    this.#cork();
    return true;
  }

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
    return (this.#socket as unknown as { _socket?: CorkableSocket })._socket;
  }

  /** A client too slow for its events is closed (it resumes from its last seq); memory stays bounded. */
  #checkBacklog(): void {
    if (this.#closed) return;
    if (this.#socket.bufferedAmount > this.#options.maxBufferedBytes) {
      this.#options.close(CloseCode.SLOW_CONSUMER, "the connection did not keep up with its events; resume from the last seq seen");
    }
  }
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
