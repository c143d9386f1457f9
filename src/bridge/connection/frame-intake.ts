// How a connection's frames get in: counted against its rate as they
// arrive, then handled — at most `framesPerTurn` frames' worth in one turn
// of the event loop (a request that calls core counts as several), the rest
// queued behind other connections' frames.
import { TokenBucket } from "../../runtime/index.js";
import type { TurnScheduler } from "./turn-scheduler.js";

/** What an intake reads from: the ws WebSocket, as far as back-pressure needs it. */
interface PausableSocket {
  pause(): void;
  resume(): void;
}

export interface FrameIntakeOptions {
  readonly socket: PausableSocket;
  readonly framesPerSecond: number;
  readonly frameBurst: number;
  readonly framesPerTurn: number;
  readonly scheduler: TurnScheduler;
  /** Handles one frame (decode, dispatch) and says what it cost of the turn, in frames; never throws. */
  readonly handle: (data: Uint8Array, isBinary: boolean) => number;
  /** The connection went over its frame rate: reading has stopped, the queue is dropped; close it. */
  readonly overBudget: () => void;
}

/**
 * A connection's frame intake. ws emits every frame of a socket read in one
 * go — hundreds when a client floods — so the first `framesPerTurn` of a
 * turn are handled at once and the rest wait in this queue, drained by the
 * bridge's TurnScheduler a few at a time per connection in turn: one
 * connection's backlog cannot hold back the frames of the others. A queue
 * longer than a few turns' worth stops reading from the socket (TCP pushes
 * back on the client) until it has drained. A frame over the rate stops
 * reading at once, drops what is queued and reports `overBudget`: a flood
 * costs the bridge one refusal, not the handling of what follows it.
 */
export class FrameIntake {
  readonly #options: FrameIntakeOptions;
  readonly #rate: TokenBucket;
  readonly #queue: { data: Uint8Array; isBinary: boolean }[] = [];
  /** Queue length past which the socket is paused. */
  readonly #maxQueued: number;
  /** The turn whose frames #handledThisTurn counts. */
  #turn = -1;
  #handledThisTurn = 0;
  #paused = false;
  #stopped = false;

  constructor(options: FrameIntakeOptions) {
    this.#options = options;
    this.#rate = new TokenBucket(options.framesPerSecond, options.frameBurst);
    this.#maxQueued = options.framesPerTurn * 8;
  }

  /** Takes a frame as ws emits it. */
  push(data: Uint8Array, isBinary: boolean): void {
    if (this.#stopped) return;
    if (!this.#rate.take()) {
      this.stop(true);
      this.#options.overBudget();
      return;
    }
    const { scheduler, framesPerTurn } = this.#options;
    const turn = scheduler.turn();
    if (turn !== this.#turn) {
      this.#turn = turn;
      this.#handledThisTurn = 0;
    }
    if (this.#queue.length === 0 && this.#handledThisTurn < framesPerTurn) {
      this.#handledThisTurn += this.#options.handle(data, isBinary);
      return;
    }
    this.#queue.push({ data, isBinary });
    if (this.#queue.length === 1) scheduler.waiting(this);
    if (this.#queue.length > this.#maxQueued && !this.#paused) {
      this.#paused = true;
      this.#options.socket.pause();
    }
  }

  /** Handles up to `framesPerTurn` frames' worth of the queue; true while more are queued (called by the scheduler). */
  drain(): boolean {
    const { framesPerTurn, handle, socket } = this.#options;
    for (let spent = 0; spent < framesPerTurn && this.#queue.length > 0 && !this.#stopped; ) {
      const next = this.#queue.shift();
      if (next !== undefined) spent += handle(next.data, next.isBinary);
    }
    if (this.#stopped) return false;
    if (this.#paused && this.#queue.length <= this.#maxQueued / 2) {
      this.#paused = false;
      socket.resume();
    }
    return this.#queue.length > 0;
  }

  /**
   * No frame is handled any more. `stopReading` pauses the socket too: for
   * an abuser, whose close handshake is then not awaited; a peer closed
   * for any other reason is still read, for its answer to the close.
   */
  stop(stopReading = false): void {
    if (stopReading) this.#options.socket.pause();
    if (this.#stopped) return;
    this.#stopped = true;
    this.#queue.length = 0;
  }
}
