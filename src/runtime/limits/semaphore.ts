/**
 * At most `size` holders at once; the rest wait in arrival order. Used to
 * bound how much of core one user's requests may occupy at a time, however
 * many they send: the waiting ones cost a closure each, not a call.
 */
export class Semaphore {
  #held = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly size: number) {}

  /** Resolves with the release function (call it once) when a place is free. */
  acquire(): Promise<() => void> {
    if (this.#held < this.size) {
      this.#held++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve) => {
      this.#waiting.push(() => {
        resolve(this.#releaser());
      });
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The place passes straight to the next waiter.
      if (next !== undefined) next();
      else this.#held--;
    };
  }
}
