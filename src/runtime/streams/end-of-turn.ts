/**
 * Runs callbacks once the current turn of the event loop has done its I/O
 * callbacks: one setImmediate for everything that asked in this turn (corked
 * sockets, the send link's outbox, batched subscriptions), instead of one
 * timer object each per turn.
 */
const waiting: (() => void)[] = [];

export function atEndOfTurn(callback: () => void): void {
  if (waiting.push(callback) === 1) setImmediate(runWaiting);
}

function runWaiting(): void {
  const batch = waiting.splice(0);
  let failure: { readonly error: unknown } | undefined;
  for (const callback of batch) {
    // One failing callback must not leave the others' sockets corked.
    try {
      callback();
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure) throw failure.error;
}
