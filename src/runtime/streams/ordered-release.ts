/** A place in line, taken before the work starts. */
export interface ReleaseSlot {
  release: (() => void) | undefined;
}

/**
 * Runs completions in the order their slots were taken, whatever order the
 * work finishes in. The synchronous sibling of OrderedQueue, for hot paths
 * (a browser's sends, answered in send order): no promise per item, since
 * with OpenTelemetry's context tracking every promise costs async-hook work.
 * A release must not throw.
 */
export class OrderedRelease {
  readonly #waiting: ReleaseSlot[] = [];

  take(): ReleaseSlot {
    const slot: ReleaseSlot = { release: undefined };
    this.#waiting.push(slot);
    return slot;
  }

  /** Marks `slot` done; it and every done slot behind it in line run now, in order. */
  complete(slot: ReleaseSlot, release: () => void): void {
    slot.release = release;
    for (let head = this.#waiting[0]; head?.release !== undefined; head = this.#waiting[0]) {
      this.#waiting.shift();
      head.release();
    }
  }

  /** Slots taken and not yet released. */
  get size(): number {
    return this.#waiting.length;
  }
}
