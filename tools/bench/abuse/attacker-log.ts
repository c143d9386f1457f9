/**
 * What an attack saw of the server, whichever attack it was: connections
 * attempted, opened and refused (HTTP status at the upgrade, or a socket
 * error), frames sent, answers by kind (errors by category), and each close
 * the server decided, with how long the connection had lived.
 */
import { performance } from "node:perf_hooks";
import { percentile } from "../latency.js";
import { duration, fmt } from "./format.js";
import { Tally } from "./tally.js";

export class AttackerLog {
  readonly startedAt = performance.now();
  attempts = 0;
  opened = 0;
  framesSent = 0;
  /** Open connections by when their welcome came; their time open, for the achieved frame rate. */
  readonly #openSince = new Map<object, number>();
  #closedOpenMs = 0;
  #stoppedAt: number | undefined;
  /** "HTTP 429", "ECONNRESET", "timeout": why an attempt did not become a connection. */
  readonly refusals = new Tally();
  /** Server frames by kind, `error` frames left out. */
  readonly answers = new Tally();
  /** `error` frames by category ("RATE_LIMITED"), "(not retryable)" when they say so. */
  readonly errors = new Tally();
  /** Close codes of the closes the server decided. */
  readonly closes = new Tally();
  /** For each close the server decided: ms from welcome to close. */
  readonly lifetimesMs: number[] = [];
  /** ms from the attack's start to the first close the server decided. */
  firstCloseMs: number | undefined;

  sinceStart(): number {
    return performance.now() - this.startedAt;
  }

  /** A connection got its welcome. */
  connectionOpened(connection: object): void {
    this.opened++;
    this.#openSince.set(connection, performance.now());
  }

  /** A connection that had opened is gone. */
  connectionGone(connection: object): void {
    const since = this.#openSince.get(connection);
    if (since === undefined) return;
    this.#openSince.delete(connection);
    this.#closedOpenMs += Math.max(0, Math.min(performance.now(), this.#stoppedAt ?? Number.POSITIVE_INFINITY) - since);
  }

  /** The attack is over: time open counts up to here. */
  stopClock(): void {
    this.#stoppedAt ??= performance.now();
  }

  /** Time connections spent open, up to the attack's end. */
  openMs(): number {
    const until = this.#stoppedAt ?? performance.now();
    let ms = this.#closedOpenMs;
    for (const since of this.#openSince.values()) ms += Math.max(0, until - since);
    return ms;
  }

  closedByServer(code: number, lifetimeMs: number): void {
    this.closes.add(String(code));
    this.lifetimesMs.push(lifetimeMs);
    this.firstCloseMs ??= this.sinceStart();
  }

  /** The table cell: frames and their rate, connections, refusals, closes, error answers. */
  summary(): string {
    const parts: string[] = [];
    if (this.framesSent > 0) {
      const seconds = this.openMs() / 1000;
      parts.push(`${fmt(this.framesSent)} frames written${seconds > 0 ? ` (${fmt(this.framesSent / seconds)}/s while open)` : ""}`);
    }
    parts.push(`${fmt(this.opened)}/${fmt(this.attempts)} connections opened`);
    if (this.refusals.size > 0) parts.push(`refused: ${this.refusals.describe()}`);
    parts.push(this.closes.size > 0 ? `closed: ${this.closes.describe()} (first after ${duration(this.firstCloseMs ?? Number.NaN)})` : "never closed");
    if (this.errors.size > 0) parts.push(`errors: ${this.errors.describe()}`);
    return parts.join("; ");
  }

  details(): string[] {
    const lines = this.answers.size === 0 ? [] : [`answers: ${this.answers.describe()}`];
    if (this.lifetimesMs.length > 0) {
      const sorted = Float64Array.from(this.lifetimesMs).sort();
      lines.push(
        `open→closed by the server: ${fmt(sorted.length)} connections, median ${duration(percentile(sorted, 50))}, shortest ${duration(sorted[0] ?? Number.NaN)}, longest ${duration(sorted.at(-1) ?? Number.NaN)}`,
      );
    }
    return lines;
  }
}
