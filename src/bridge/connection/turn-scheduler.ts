// Turns of the event loop, as the bridge's frame intakes share them: which
// turn it is (for counting each connection's frames per turn), and who has
// frames waiting for the next one.

/** What the scheduler drains: a connection's queued frames. */
export interface Drainable {
  /** Handles a turn's share of queued frames; true while more are queued. */
  drain(): boolean;
}

/**
 * One per bridge. `turn()` numbers turns of the event loop lazily — one
 * setImmediate per turn in which frames arrived, however many connections
 * they came from. Connections with queued frames are drained in the check
 * phase, a share each in the order they started waiting; one that still has
 * frames waits again behind the others, after the next poll phase has let
 * new socket reads in.
 */
export class TurnScheduler {
  #turn = 0;
  #turnEnds = false;
  #waiting: Drainable[] = [];
  #draining = false;

  /** The current turn's number. */
  turn(): number {
    if (!this.#turnEnds) {
      this.#turnEnds = true;
      setImmediate(() => {
        this.#turnEnds = false;
        this.#turn++;
      });
    }
    return this.#turn;
  }

  /** `queue` has frames for a later turn. */
  waiting(queue: Drainable): void {
    this.#waiting.push(queue);
    if (!this.#draining) {
      this.#draining = true;
      setImmediate(() => {
        this.#drain();
      });
    }
  }

  #drain(): void {
    const round = this.#waiting;
    this.#waiting = [];
    for (const queue of round) {
      if (queue.drain()) this.#waiting.push(queue);
    }
    if (this.#waiting.length === 0) {
      this.#draining = false;
      return;
    }
    setImmediate(() => {
      this.#drain();
    });
  }
}
