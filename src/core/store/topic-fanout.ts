import { context, type SpanContext, trace } from "@opentelemetry/api";
import { ParleyError } from "../../wire/index.js";
import { failSpan, FanoutHub, logError, type Logger, rememberOrigin, type Sequenced, tracer } from "../../runtime/index.js";

/** Topics read at once when notifications of many arrive together. */
const READS_AT_ONCE = 8;

/** The payload of a NOTIFY: which topic moved, by which seqs, from which instance. */
export interface TopicAdvanced {
  readonly topic: string;
  /** First and last seq committed by the transaction (decimal strings). */
  readonly from: string;
  readonly to: string;
  /** The core instance that committed it. */
  readonly origin: string;
}

export interface TopicFanoutOptions<T extends Sequenced> {
  /** This instance's id, as written in NOTIFY payloads. */
  readonly origin: string;
  /** The topic (room, inbox) an item belongs to. */
  readonly topicOf: (item: T) => string;
  /** Reads the stored items of `topic` with seq in [from, to]. */
  readonly readRange: (topic: string, from: bigint, to: bigint) => Promise<readonly T[]>;
  readonly logger: Logger;
}

/**
 * Delivers committed items to this instance's subscribers: directly for its
 * own commits, and through PostgreSQL NOTIFY for other instances' (the rows
 * are read once per notification, then fanned out in memory).
 */
export class TopicFanout<T extends Sequenced> {
  readonly hub = new FanoutHub<T>();
  /** Ranges notified and not yet read, per topic, merged (see notified()). */
  readonly #pending = new Map<string, TopicAdvanced>();
  #draining: Promise<void> | undefined;

  constructor(private readonly options: TopicFanoutOptions<T>) {}

  /** This instance committed `items` (in seq order per topic) in the span `origin`. */
  committed(items: readonly T[], origin?: SpanContext): void {
    const byTopic = new Map<string, T[]>();
    for (const item of items) {
      if (origin) rememberOrigin(item, origin);
      const topic = this.options.topicOf(item);
      const list = byTopic.get(topic);
      if (list) list.push(item);
      else byTopic.set(topic, [item]);
    }
    for (const [topic, list] of byTopic) this.hub.publish(topic, list);
  }

  /**
   * A NOTIFY payload. The ranges of one topic that arrive while earlier ones
   * are being read merge into one range, read once: a listener catching up
   * after a stall, or a busy instance next door, costs a read per topic per
   * round, not one per notification. A topic's commits are serialized by
   * its head row, so a merged range holds nothing uncommitted, and each
   * topic's items are published in seq order.
   */
  notified(payload: string): void {
    let advanced: TopicAdvanced;
    try {
      advanced = JSON.parse(payload) as TopicAdvanced;
    } catch (error) {
      this.options.logger.error({ category: "SERIALIZATION", payload, err: error }, "unreadable fan-out notification");
      return;
    }
    if (advanced.origin === this.options.origin || !this.hub.hasSubscribers(advanced.topic)) return;
    const pending = this.#pending.get(advanced.topic);
    this.#pending.set(
      advanced.topic,
      pending === undefined
        ? advanced
        : {
            topic: advanced.topic,
            from: BigInt(advanced.from) < BigInt(pending.from) ? advanced.from : pending.from,
            to: BigInt(advanced.to) > BigInt(pending.to) ? advanced.to : pending.to,
            origin: pending.origin === advanced.origin ? pending.origin : "several",
          },
    );
    if (this.#draining !== undefined) return;
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  /** Reads what is pending, a round at a time, at most READS_AT_ONCE topics together. */
  async #drain(): Promise<void> {
    while (this.#pending.size > 0) {
      const round = [...this.#pending.values()];
      this.#pending.clear();
      for (let start = 0; start < round.length; start += READS_AT_ONCE) {
        await Promise.all(round.slice(start, start + READS_AT_ONCE).map((advanced) => this.#deliverRemote(advanced)));
      }
    }
  }

  /** Notifications may have been missed: every follower re-reads the database. */
  resyncAll(): void {
    this.hub.resyncAll();
  }

  async #deliverRemote(advanced: TopicAdvanced): Promise<void> {
    const span = tracer().startSpan("fanout.notification", {
      attributes: { "parley.topic": advanced.topic, "parley.seq.from": advanced.from, "parley.seq.to": advanced.to, "parley.origin": advanced.origin },
    });
    try {
      const items = await context.with(trace.setSpan(context.active(), span), () =>
        this.options.readRange(advanced.topic, BigInt(advanced.from), BigInt(advanced.to)),
      );
      for (const item of items) rememberOrigin(item, span.spanContext());
      this.hub.publish(advanced.topic, items);
    } catch (error) {
      failSpan(span, ParleyError.from(error));
      // The followers will find the rows themselves.
      logError(this.options.logger, ParleyError.from(error), { topic: advanced.topic }, "fan-out read failed; followers resync");
      this.hub.resync(advanced.topic);
    } finally {
      span.end();
    }
  }
}
