/**
 * A bounded FIFO of promises, read in push order however they settle: the
 * way a stream answers its items in order while they are processed together.
 * `push` waits while `capacity` entries are unread, which pushes back on the
 * producer instead of buffering without limit.
 */
export class OrderedQueue<T> {
  readonly #entries: Promise<T>[] = [];
  #closed = false;
  #onChange: (() => void) | undefined;

  constructor(private readonly capacity: number) {}

  async push(entry: Promise<T>): Promise<void> {
    while (this.#entries.length >= this.capacity && !this.#closed) await this.#changed();
    // Closed while waiting (the reader is gone): drop the entry quietly.
    if (this.#closed) return;
    this.#entries.push(entry);
    this.#notify();
  }

  /** No more pushes; the reader drains what is queued and then ends. */
  close(): void {
    this.#closed = true;
    this.#notify();
  }

  get size(): number {
    return this.#entries.length;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const head = this.#entries[0];
      if (head === undefined) {
        if (this.#closed) return;
        await this.#changed();
        continue;
      }
      const value = await head;
      void this.#entries.shift();
      this.#notify();
      yield value;
    }
  }

  #changed(): Promise<void> {
    return new Promise((resolve) => {
      const previous = this.#onChange;
      this.#onChange = () => {
        previous?.();
        resolve();
      };
    });
  }

  #notify(): void {
    const wake = this.#onChange;
    this.#onChange = undefined;
    wake?.();
  }
}
