/**
 * A bounded FIFO of promises, read in push order however they settle: the
 * way a stream answers its items in order while they are processed together.
 * `push` waits while `capacity` entries are unread, which pushes back on the
 * producer instead of buffering without limit.
 */
export class OrderedQueue<T> {
  readonly #entries: Entry<T>[] = [];
  #closed = false;
  #onChange: (() => void) | undefined;

  constructor(private readonly capacity: number) {}

  /**
   * Queues `entry` at once if there is room (true); false when the queue is
   * full or closed, and the caller awaits `push` instead. Saves a promise per
   * entry on the common path.
   */
  offer(entry: Promise<T>): boolean {
    if (this.#closed || this.#entries.length >= this.capacity) return false;
    this.#append(entry);
    return true;
  }

  async push(entry: Promise<T>): Promise<void> {
    while (this.#entries.length >= this.capacity && !this.#closed) await this.#changed();
    // Closed while waiting (the reader is gone): drop the entry quietly.
    if (this.#closed) return;
    this.#append(entry);
  }

  #append(entry: Promise<T>): void {
    const record: Entry<T> = { promise: entry, settled: false, value: undefined };
    // Remembered so that batches() can take what is already done behind the head.
    entry.then(
      (value) => {
        record.settled = true;
        record.value = value;
      },
      () => undefined, // the reader sees the rejection when it awaits this entry
    );
    this.#entries.push(record);
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
      const head = await this.#settledHead();
      if (head === undefined) return;
      void this.#entries.shift();
      this.#notify();
      yield head.value;
    }
  }

  /**
   * Reads in push order like the iterator, but in groups: waits for the head,
   * then takes every entry behind it that has already settled (up to `max`),
   * so that answers ready together leave together.
   */
  async *batches(max: number): AsyncGenerator<T[]> {
    for (;;) {
      const head = await this.#settledHead();
      if (head === undefined) return;
      const batch = [head.value];
      void this.#entries.shift();
      for (let next = this.#entries[0]; next?.settled === true && batch.length < max; next = this.#entries[0]) {
        batch.push(next.value as T);
        void this.#entries.shift();
      }
      this.#notify();
      yield batch;
    }
  }

  /** Waits for an entry at the head and for it to settle; undefined once closed and empty. */
  async #settledHead(): Promise<{ value: T } | undefined> {
    for (;;) {
      const head = this.#entries[0];
      if (head === undefined) {
        if (this.#closed) return undefined;
        await this.#changed();
        continue;
      }
      return { value: await head.promise };
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

interface Entry<T> {
  readonly promise: Promise<T>;
  settled: boolean;
  value: T | undefined;
}
