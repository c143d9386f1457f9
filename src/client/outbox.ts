// A client's sends from the call to their answer: written in call order
// within the server's window of un-answered sends, held and resent with the
// same client_msg_id when the server refuses one with a retryable error, and
// given up on past a horizon.
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import type { BackoffPolicy } from "../wire/index.js";
import { ParleyClientError } from "./client-error.js";
import { sendRetry } from "./send-retry.js";

/** What goes into a send frame. */
export interface OutgoingSend {
  readonly room: string;
  readonly body: string;
  readonly clientMsgId: string;
}

export interface OutboxOptions {
  /** Writes one send frame on the open connection; returns the request id it carries. */
  readonly write: (send: OutgoingSend) => string;
  /** Whether frames can be written now (connected, `welcome` received). */
  readonly writable: () => boolean;
  /** How long after its first retryable refusal a send is still resent. */
  readonly horizonMs: number;
  readonly backoff?: BackoffPolicy;
  /** Sends started waiting for a resend (the latest refusal), or stopped (undefined). */
  readonly delayed: (reason: ParleyClientError | undefined) => void;
}

/**
 * Un-answered sends at most, whatever the server allows: when the user's
 * rate refuses one, every send written behind it is refused too, and a
 * connection that earns more than the bridge's refusal burst (100) at once
 * is closed (4029). 32 on the wire still carry hundreds of sends a second
 * over a slow network, more than one user may send.
 */
const MAX_WINDOW = 32;

interface Entry extends OutgoingSend {
  readonly resolve: (message: ChatMessage) => void;
  readonly reject: (error: ParleyClientError) => void;
  /** Request id of the frame carrying it now; "" while it is not on the wire. */
  requestId: string;
  /** Retryable refusals so far (the backoff's attempt). */
  refusals: number;
  lastError: ParleyClientError | undefined;
  /** Set while it waits to be resent: no later send is written meanwhile. */
  resendTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ends its retrying; armed at its first retryable refusal. */
  horizonTimer: ReturnType<typeof setTimeout> | undefined;
  /** The horizon passed while it was on the wire: that attempt's answer is its last. */
  expired: boolean;
}

/** How long after its last rate refusal the outbox keeps writing one send at a time. */
const PACE_HOLD_MS = 2_000;

/**
 * The sends of one client. The server answers a connection's sends in the
 * order they arrived, so a refusal is known before the answers of every
 * later send. A send refused with a retryable error keeps its place: the
 * oldest one waits (`retry_after`, or a backoff with full jitter) and is
 * then resent alone; sends behind it that the server refused too follow it
 * in order; no send not yet written is written before it is stored or given
 * up. A refusal for the user's rate also makes the outbox write one send at
 * a time, spaced by the server's `retry_after`, until it is empty: resent
 * sends do not run into the limit again, and refusals do not pile up (a
 * connection that keeps earning them is closed). Everything but the
 * decisions of send-retry.ts and the server's window lives here.
 */
export class Outbox {
  readonly #options: OutboxOptions;
  /** Unsettled sends, in call order. */
  readonly #entries: Entry[] = [];
  /** Un-answered sends allowed: `welcome.max_inflight_sends`, at most MAX_WINDOW. */
  #window = MAX_WINDOW;
  /** Entries on the wire (a request id set). */
  #inflight = 0;
  /** A send resent after its wait: nothing after it is written until it is answered. */
  #probe: Entry | undefined;
  /** Set by a refusal for the user's rate until the outbox is empty: one send on the wire at a time, `intervalMs` apart. */
  #pace: { intervalMs: number; lastWriteAt: number; refusedAt: number } | undefined;
  #paceTimer: ReturnType<typeof setTimeout> | undefined;
  #delayedBy: ParleyClientError | undefined;

  constructor(options: OutboxOptions) {
    this.#options = options;
  }

  /** Why sends are waiting for a resend (the latest refusal of the oldest such send); undefined while they flow. */
  get delayedBy(): ParleyClientError | undefined {
    return this.#delayedBy;
  }

  /** A new send, after every earlier one. */
  add(send: OutgoingSend): Promise<ChatMessage> {
    return new Promise((resolve, reject) => {
      this.#entries.push({ ...send, resolve, reject, requestId: "", refusals: 0, lastError: undefined, resendTimer: undefined, horizonTimer: undefined, expired: false });
      this.#pump();
    });
  }

  /** A connection said `welcome`: nothing is on the wire; `window` un-answered sends may be (0: no limit), at most MAX_WINDOW. */
  opened(window: number): void {
    this.#window = window > 0 ? Math.min(window, MAX_WINDOW) : MAX_WINDOW;
    this.#offTheWire();
    this.#pump();
  }

  /** The connection is gone: what was on the wire is resent on the next one, except sends past their horizon. */
  lost(): void {
    clearTimeout(this.#paceTimer);
    this.#paceTimer = undefined;
    for (const entry of this.#offTheWire()) {
      if (entry.expired) this.#settle(entry, () => { entry.reject(lastRefusal(entry)); });
    }
  }

  /** The server stored the send that `requestId` carried; false when no send has that id. */
  acked(requestId: string, message: ChatMessage): boolean {
    const entry = this.#answered(requestId);
    if (entry === undefined) return false;
    this.#settle(entry, () => { entry.resolve(message); });
    this.#pump();
    return true;
  }

  /** The server refused the send that `requestId` carried; false when no send has that id. */
  refused(requestId: string, error: ParleyClientError): boolean {
    const entry = this.#answered(requestId);
    if (entry === undefined) return false;
    const retry = entry.expired ? undefined : sendRetry(error, entry.refusals + 1, this.#options.backoff);
    if (retry === undefined || retry.kind === "reject") {
      this.#settle(entry, () => { entry.reject(error); });
      this.#pump();
      return true;
    }
    entry.refusals++;
    entry.lastError = error;
    entry.horizonTimer ??= setTimeout(() => { this.#expire(entry); }, this.#options.horizonMs);
    if (retry.paceMs !== undefined) {
      this.#pace = { intervalMs: Math.max(this.#pace?.intervalMs ?? 0, retry.paceMs), lastWriteAt: this.#pace?.lastWriteAt ?? 0, refusedAt: Date.now() };
    }
    // Answers come in send order: a refused send with nothing before it is
    // the oldest, and waits; one behind it goes after it, in order.
    if (this.#entries[0] === entry) {
      entry.resendTimer = setTimeout(() => {
        entry.resendTimer = undefined;
        this.#probe = entry;
        this.#pump();
      }, retry.delayMs);
    }
    this.#delayChanged();
    this.#pump();
    return true;
  }

  /** The client is closed: every send is rejected, with its last refusal if it had one. */
  close(error: ParleyClientError): void {
    clearTimeout(this.#paceTimer);
    for (const entry of this.#entries.splice(0)) {
      clearTimeout(entry.resendTimer);
      clearTimeout(entry.horizonTimer);
      entry.reject(entry.lastError ?? error);
    }
    this.#inflight = 0;
    this.#probe = undefined;
    this.#pace = undefined;
    this.#delayedBy = undefined;
  }

  /** Writes waiting sends, oldest first, as far as the window, a waiting send, a probe or the pace allow. */
  #pump(): void {
    clearTimeout(this.#paceTimer);
    this.#paceTimer = undefined;
    if (!this.#options.writable()) return;
    for (const entry of this.#entries) {
      if (entry.requestId !== "") {
        if (entry === this.#probe) return;
        continue;
      }
      if (entry.resendTimer !== undefined) return;
      if (this.#inflight >= this.#window) return;
      // Paced (one at a time) only for a while after the last rate refusal:
      // a client that goes on sending near the rate would otherwise stay
      // stop-and-wait for good, its queue and delay growing. Past the rate
      // again, it is refused again and paced again.
      if (this.#pace !== undefined && Date.now() - this.#pace.refusedAt > PACE_HOLD_MS + this.#pace.intervalMs) this.#pace = undefined;
      const pace = this.#pace;
      if (pace !== undefined) {
        if (this.#inflight > 0) return;
        const wait = pace.lastWriteAt + pace.intervalMs - Date.now();
        if (wait > 0) {
          this.#paceTimer = setTimeout(() => { this.#pump(); }, wait);
          return;
        }
        pace.lastWriteAt = Date.now();
      }
      entry.requestId = this.#options.write(entry);
      this.#inflight++;
      if (entry === this.#probe || pace !== undefined) return;
    }
  }

  /** The entry `requestId` carried, now off the wire (undefined: none). */
  #answered(requestId: string): Entry | undefined {
    const entry = this.#entries.find((candidate) => candidate.requestId === requestId);
    if (entry === undefined) return undefined;
    entry.requestId = "";
    this.#inflight--;
    if (this.#probe === entry) this.#probe = undefined;
    return entry;
  }

  /** Takes every entry off the wire; returns those that were on it. */
  #offTheWire(): Entry[] {
    const were = this.#entries.filter((entry) => entry.requestId !== "");
    for (const entry of were) entry.requestId = "";
    this.#inflight = 0;
    return were;
  }

  /** The horizon of a refused send: given up now, or after the answer of the attempt on the wire. */
  #expire(entry: Entry): void {
    entry.horizonTimer = undefined;
    if (entry.requestId !== "") {
      entry.expired = true;
      return;
    }
    this.#settle(entry, () => { entry.reject(lastRefusal(entry)); });
    this.#pump();
  }

  /** Removes a send that is not on the wire and tells its caller (`tell`). */
  #settle(entry: Entry, tell: () => void): void {
    const index = this.#entries.indexOf(entry);
    if (index < 0) return;
    this.#entries.splice(index, 1);
    clearTimeout(entry.resendTimer);
    clearTimeout(entry.horizonTimer);
    if (this.#probe === entry) this.#probe = undefined;
    if (this.#entries.length === 0) this.#pace = undefined;
    tell();
    this.#delayChanged();
  }

  #delayChanged(): void {
    const reason = this.#entries.find((entry) => entry.lastError !== undefined)?.lastError;
    if (reason === this.#delayedBy) return;
    this.#delayedBy = reason;
    this.#options.delayed(reason);
  }
}

/** A send given up is rejected with its last refusal: it is given up only after one. */
function lastRefusal(entry: Entry): ParleyClientError {
  return entry.lastError ?? new ParleyClientError("UNAVAILABLE", "send given up");
}
