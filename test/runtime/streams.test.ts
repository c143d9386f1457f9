import { describe, expect, it } from "vitest";
import { timestampFromPg } from "../../src/core/store/pg-timestamp.js";
import { backoffCap, backoffDelay, DEFAULT_BACKOFF } from "../../src/wire/backoff.js";
import { OrderedQueue } from "../../src/runtime/streams/ordered-queue.js";
import { mintToken, TokenVerifier } from "../../src/runtime/auth/tokens.js";
import { hmacRules } from "../../src/runtime/auth/key-sources.js";
import { OrderedRelease } from "../../src/runtime/streams/ordered-release.js";
import { atEndOfTurn } from "../../src/runtime/streams/end-of-turn.js";
import { follow } from "../../src/runtime/streams/follow.js";
import { FanoutHub } from "../../src/runtime/streams/hub.js";
import { type FollowPosition, followResumably } from "../../src/runtime/streams/resumable-follow.js";
import { ErrorCategory } from "../../src/wire/errors/category.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";

describe("timestampFromPg", () => {
  it.each([
    ["2026-11-28 16:30:00.123456+00", 1795883400n, 123_456_000],
    ["2026-11-28 18:30:00.123456+02", 1795883400n, 123_456_000],
    ["2026-11-28 12:00:00.5-04:30", 1795883400n, 500_000_000],
    ["2026-11-28 16:30:00+00", 1795883400n, 0],
    ["2026-11-28T16:30:00.000001Z", 1795883400n, 1_000],
    ["1969-12-31 23:59:59.999999+00", -1n, 999_999_000],
  ])("parses %s with microseconds and zone", (text, seconds, nanos) => {
    expect(timestampFromPg(text)).toMatchObject({ seconds, nanos });
  });

  it("refuses what is not a timestamptz", () => {
    expect(() => timestampFromPg("yesterday")).toThrow(/not a PostgreSQL timestamptz/);
  });
});

describe("backoff", () => {
  it("stays within [0, cap] and the cap grows by the multiplier up to the maximum", () => {
    for (let attempt = 1; attempt <= 20; attempt++) {
      const cap = backoffCap(attempt);
      expect(cap).toBeLessThanOrEqual(DEFAULT_BACKOFF.maxMs);
      expect(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0)).toBe(0);
      expect(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.999999)).toBeLessThanOrEqual(cap);
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(cap);
      }
    }
    expect(backoffCap(1)).toBe(DEFAULT_BACKOFF.initialMs);
    expect(backoffCap(2)).toBeCloseTo(DEFAULT_BACKOFF.initialMs * DEFAULT_BACKOFF.multiplier);
    expect(backoffCap(100)).toBe(DEFAULT_BACKOFF.maxMs);
  });
});

describe("OrderedQueue", () => {
  it("yields in push order whatever order the entries settle in, and pushes back when full", async () => {
    const queue = new OrderedQueue<number>(2);
    const resolvers: ((n: number) => void)[] = [];
    const entry = () => new Promise<number>((resolve) => resolvers.push(resolve));
    await queue.push(entry());
    await queue.push(entry());
    let thirdPushed = false;
    const third = queue.push(entry()).then(() => (thirdPushed = true));
    await Promise.resolve();
    expect(thirdPushed).toBe(false); // full: the producer waits
    const out: number[] = [];
    const reading = (async () => {
      for await (const value of queue) out.push(value);
    })();
    resolvers[1]?.(2);
    resolvers[0]?.(1);
    await third;
    resolvers[2]?.(3);
    queue.close();
    await reading;
    expect(out).toEqual([1, 2, 3]);
  });
});

describe("OrderedQueue.offer", () => {
  it("queues at once while there is room, refuses when full or closed, and keeps push order with push", async () => {
    const queue = new OrderedQueue<number>(2);
    expect(queue.offer(Promise.resolve(1))).toBe(true);
    expect(queue.offer(Promise.resolve(2))).toBe(true);
    expect(queue.offer(Promise.resolve(3))).toBe(false); // full: the caller awaits push instead
    const out: number[] = [];
    const reading = (async () => {
      for await (const value of queue) out.push(value);
    })();
    await queue.push(Promise.resolve(3));
    queue.close();
    expect(queue.offer(Promise.resolve(4))).toBe(false);
    await reading;
    expect(out).toEqual([1, 2, 3]);
  });
});

describe("TokenVerifier.cachedIdentity", () => {
  it("knows a token only once verified, and forgets it when it expires", async () => {
    let now = Date.now();
    const verifier = new TokenVerifier(hmacRules("unit-secret-that-is-long-enough-for-hs256"), { clockToleranceSeconds: 0, now: () => now });
    const token = await mintToken("unit-secret-that-is-long-enough-for-hs256", "ada", { expiresInSeconds: 60 });
    expect(verifier.cachedIdentity(token)).toBeUndefined();
    const identity = await verifier.verify(token);
    expect(verifier.cachedIdentity(token)).toBe(identity);
    now += 61_000;
    expect(verifier.cachedIdentity(token)).toBeUndefined();
    await expect(verifier.verify(token)).rejects.toThrow();
  });
});

describe("OrderedQueue.batches", () => {
  it("waits for the head, then takes every entry behind it that has settled, in push order", async () => {
    const queue = new OrderedQueue<number>(16);
    const resolvers: ((n: number) => void)[] = [];
    const entry = () => new Promise<number>((resolve) => resolvers.push(resolve));
    for (let i = 0; i < 5; i++) await queue.push(entry());
    // 2, 3 and 5 are done; 1 (the head) and 4 are not.
    resolvers[1]?.(2);
    resolvers[2]?.(3);
    resolvers[4]?.(5);
    const batches: number[][] = [];
    const reading = (async () => {
      for await (const batch of queue.batches(2)) batches.push(batch);
    })();
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([]); // nothing overtakes the head
    resolvers[0]?.(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([[1, 2], [3]]); // at most 2 per batch; 4 is not done
    resolvers[3]?.(4);
    queue.close();
    await reading;
    expect(batches).toEqual([[1, 2], [3], [4, 5]]);
  });
});

describe("OrderedRelease", () => {
  it("runs completions in slot order, holding later ones until every earlier slot is done", () => {
    const line = new OrderedRelease();
    const ran: string[] = [];
    const [a, b, c, d] = [line.take(), line.take(), line.take(), line.take()];
    line.complete(c, () => ran.push("c"));
    line.complete(b, () => ran.push("b"));
    expect(ran).toEqual([]); // a is still running
    expect(line.size).toBe(4);
    line.complete(a, () => ran.push("a"));
    expect(ran).toEqual(["a", "b", "c"]);
    expect(line.size).toBe(1);
    // A release that completes a later slot (an answer that triggers another) keeps the order.
    const e = line.take();
    line.complete(d, () => {
      ran.push("d");
      line.complete(e, () => ran.push("e"));
    });
    expect(ran).toEqual(["a", "b", "c", "d", "e"]);
    expect(line.size).toBe(0);
  });
});

describe("follow (replay, then live)", () => {
  interface Item {
    readonly seq: bigint;
  }
  const items = (...seqs: number[]): Item[] => seqs.map((seq) => ({ seq: BigInt(seq) }));

  /** A topic whose stored items are `stored`; follows it from `afterSeq`, recording what is passed on. */
  function following(stored: Item[], options: { afterSeq?: bigint; send?: (item: Item) => void | Promise<void> } = {}) {
    const hub = new FanoutHub<Item>(16);
    const sent: bigint[] = [];
    const controller = new AbortController();
    let caughtUp: bigint | undefined;
    const done = follow<Item>({
      hub,
      topic: "room",
      afterSeq: options.afterSeq ?? 0n,
      readAfter: (after, limit) => Promise.resolve(stored.filter((item) => item.seq > after).slice(0, limit)),
      readHead: () => Promise.resolve(stored.at(-1)?.seq ?? 0n),
      send: (item) => {
        sent.push(item.seq);
        return options.send?.(item);
      },
      caughtUp: (head) => {
        caughtUp = head;
        return Promise.resolve();
      },
      signal: controller.signal,
    });
    const settle = () => new Promise((resolve) => setTimeout(resolve, 10));
    return { hub, sent, controller, done, settle, caughtUp: () => caughtUp };
  }

  it("passes live items on from the hub's own call when the sender is synchronous", async () => {
    const stored = items(1, 2);
    const f = following(stored);
    await f.settle();
    expect(f.sent).toEqual([1n, 2n]);
    expect(f.caughtUp()).toBe(2n);
    stored.push(...items(3, 4));
    f.hub.publish("room", items(3, 4));
    // No await between publish and this check: delivered synchronously.
    expect(f.sent).toEqual([1n, 2n, 3n, 4n]);
    f.hub.publish("room", items(4)); // a duplicate is skipped
    expect(f.sent).toEqual([1n, 2n, 3n, 4n]);
    f.controller.abort();
    await f.done;
  });

  it("reads a gap from the database, then goes on live", async () => {
    const stored = items(1);
    const f = following(stored);
    await f.settle();
    stored.push(...items(2, 3, 4));
    f.hub.publish("room", items(4)); // 2 and 3 were never published here
    await f.settle();
    expect(f.sent).toEqual([1n, 2n, 3n, 4n]);
    stored.push(...items(5));
    f.hub.publish("room", items(5));
    expect(f.sent).toEqual([1n, 2n, 3n, 4n, 5n]);
    f.controller.abort();
    await f.done;
  });

  it("waits for a sender that pushes back, keeping order", async () => {
    const stored = items(1);
    const releases: (() => void)[] = [];
    const f = following(stored, { send: () => new Promise<void>((resolve) => releases.push(resolve)) });
    await f.settle();
    releases.shift()?.();
    await f.settle();
    stored.push(...items(2, 3));
    f.hub.publish("room", items(2, 3));
    await f.settle();
    expect(f.sent).toEqual([1n, 2n]); // 3 waits for 2's send to finish
    releases.shift()?.();
    await f.settle();
    expect(f.sent).toEqual([1n, 2n, 3n]);
    releases.shift()?.();
    f.controller.abort();
    await f.done;
  });

  it("resyncs from the database when its queue overflows", async () => {
    const stored = items(1);
    const f = following(stored);
    await f.settle();
    const burst = Array.from({ length: 40 }, (_, i) => ({ seq: BigInt(i + 2) }));
    stored.push(...burst);
    // More than the queue holds in one delivery: the follower is told to resync.
    f.hub.publish("room", burst);
    await f.settle();
    expect(f.sent).toEqual([1n, ...burst.map((item) => item.seq)]);
    f.controller.abort();
    await f.done;
  });

  it("ends with the hub's reason when the hub closes it, and quietly when aborted", async () => {
    const closed = following(items(1));
    await closed.settle();
    const reason = new Error("shutting down");
    closed.hub.closeAll(reason);
    await expect(closed.done).rejects.toBe(reason);

    const aborted = following(items(1));
    await aborted.settle();
    aborted.controller.abort();
    await expect(aborted.done).resolves.toBeUndefined();
    expect(aborted.hub.hasSubscribers("room")).toBe(false);
  });
});

describe("follow on a covered hub (FanoutHub.cover)", () => {
  interface Item {
    readonly seq: bigint;
  }
  const items = (...seqs: number[]): Item[] => seqs.map((seq) => ({ seq: BigInt(seq) }));

  /** Follows "room" of `hub` (stored items `stored`) from `afterSeq`, or live from the stored head; counts database reads. */
  function following(hub: FanoutHub<Item>, stored: Item[], afterSeq?: bigint) {
    const sent: bigint[] = [];
    const reads = { after: 0, head: 0 };
    const controller = new AbortController();
    const done = follow<Item>({
      hub,
      topic: "room",
      afterSeq,
      readAfter: (after, limit) => {
        reads.after++;
        return Promise.resolve(stored.filter((item) => item.seq > after).slice(0, limit));
      },
      readHead: () => {
        reads.head++;
        return Promise.resolve(stored.at(-1)?.seq ?? 0n);
      },
      send: (item) => {
        sent.push(item.seq);
      },
      caughtUp: () => Promise.resolve(),
      signal: controller.signal,
    });
    return { sent, reads, controller, done };
  }
  const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

  it("a follower at or past everything published reads nothing from the database and gets what comes next live", async () => {
    const hub = new FanoutHub<Item>(16);
    const stored = items(1, 2, 3);
    hub.cover("room", 2n);
    hub.publish("room", items(3));
    const f = following(hub, stored);
    await settle();
    expect(f.reads.after).toBe(0);
    stored.push(...items(4));
    hub.publish("room", items(4));
    expect(f.sent).toEqual([4n]);
    f.controller.abort();
    await f.done;
  });

  it("a follower behind what was published before it came reads it from the database", async () => {
    const hub = new FanoutHub<Item>(16);
    const stored = items(1, 2, 3, 4);
    hub.cover("room", 2n);
    hub.publish("room", items(3, 4));
    const f = following(hub, stored, 2n);
    await settle();
    expect(f.reads.after).toBeGreaterThan(0);
    expect(f.sent).toEqual([3n, 4n]);
    f.controller.abort();
    await f.done;
  });

  it("a resume point is still checked against the head, and one beyond it is refused", async () => {
    const hub = new FanoutHub<Item>(16);
    hub.cover("room", 3n);
    const at = following(hub, items(1, 2, 3), 3n);
    await settle();
    expect(at.reads).toEqual({ after: 0, head: 1 });
    at.controller.abort();
    await at.done;
    hub.cover("room", 9n);
    const beyond = following(hub, items(1, 2, 3), 9n);
    await expect(beyond.done).rejects.toMatchObject({ field: "after_seq" });
  });

  it("once uncovered, and after an overflow while covered, followers read again", async () => {
    const hub = new FanoutHub<Item>(4);
    const stored = items(1);
    hub.cover("room", 1n);
    const f = following(hub, stored);
    await settle();
    expect(f.reads.after).toBe(0);
    const burst = Array.from({ length: 10 }, (_, i) => ({ seq: BigInt(i + 2) }));
    stored.push(...burst);
    hub.publish("room", burst); // more than the queue holds: dropped, read back
    await settle();
    expect(f.sent).toEqual(burst.map((item) => item.seq));
    expect(f.reads.after).toBeGreaterThan(0);
    f.controller.abort();
    await f.done;

    hub.uncover("room");
    const later = following(hub, stored);
    await settle();
    expect(later.reads.after).toBe(1);
    later.controller.abort();
    await later.done;
  });
});

describe("atEndOfTurn", () => {
  it("runs every callback of a turn once, together, after the turn", async () => {
    const ran: string[] = [];
    atEndOfTurn(() => ran.push("a"));
    atEndOfTurn(() => ran.push("b"));
    expect(ran).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toEqual(["a", "b"]);
    atEndOfTurn(() => ran.push("c"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toEqual(["a", "b", "c"]);
  });
});

describe("followResumably", () => {
  const SHORT = { initialMs: 20, maxMs: 60, multiplier: 2 };
  const unavailable = () => new ParleyError(ErrorCategory.UNAVAILABLE, "stream broke");

  /** A scripted stream: attempt n passes on `script[n].items` (seq values), then ends or throws `script[n].then`. */
  function scripted(script: readonly { readonly items: readonly number[]; readonly then?: ParleyError }[], signal?: AbortSignal) {
    const passed: bigint[] = [];
    const resumedAfter: (bigint | undefined)[] = [];
    const openedAt: number[] = [];
    const open = (position: FollowPosition): Promise<void> => {
      openedAt.push(performance.now());
      resumedAfter.push(position.last);
      const step = script[resumedAfter.length - 1];
      if (step === undefined) return untilAborted(signal); // stays open
      for (const seq of step.items) {
        const item = { seq: BigInt(seq) };
        if (!position.isNew(item)) continue;
        position.passed(item);
        passed.push(item.seq);
      }
      return step.then ? Promise.reject(step.then) : Promise.resolve();
    };
    return { passed, resumedAfter, openedAt, open };
  }

  it("resumes after the last seq passed on, skipping a repeated seam, with delays within the backoff's bounds", async () => {
    const controller = new AbortController();
    const stream = scripted(
      [
        { items: [1, 2, 3], then: unavailable() },
        { items: [], then: unavailable() },
        { items: [3, 4], then: unavailable() },
      ],
      controller.signal,
    );
    const breaks: { attempt: number; delayMs: number }[] = [];
    const done = followResumably({
      afterSeq: 0n,
      signal: controller.signal,
      onEnd: "done",
      open: stream.open,
      backoff: SHORT,
      interrupted: (error, attempt, delayMs) => {
        expect(error?.category).toBe(ErrorCategory.UNAVAILABLE);
        breaks.push({ attempt, delayMs });
      },
    });
    await eventuallyTrue(() => stream.resumedAfter.length === 4);
    controller.abort();
    await expect(done).resolves.toBeUndefined();

    expect(stream.passed).toEqual([1n, 2n, 3n, 4n]);
    expect(stream.resumedAfter).toEqual([0n, 3n, 3n, 4n]);
    // Progress starts the backoff over; a break without progress grows it.
    expect(breaks.map((b) => b.attempt)).toEqual([1, 2, 1]);
    const caps = [20, 40, 20];
    for (const [index, { delayMs }] of breaks.entries()) {
      expect(delayMs).toBeGreaterThanOrEqual(0);
      expect(delayMs).toBeLessThanOrEqual(caps[index] ?? 0);
      // Real timers: the next attempt opened no sooner than its delay.
      const waited = (stream.openedAt[index + 1] ?? 0) - (stream.openedAt[index] ?? 0);
      expect(waited).toBeGreaterThanOrEqual(delayMs - 2);
    }
  });

  it("rejects with the first failure not worth resuming after, without retrying it", async () => {
    const refused = new ParleyError(ErrorCategory.PERMISSION_DENIED, "not a member");
    const stream = scripted([{ items: [1], then: unavailable() }, { items: [2], then: refused }]);
    const done = followResumably({ afterSeq: undefined, signal: new AbortController().signal, onEnd: "done", open: stream.open, backoff: SHORT });
    await expect(done).rejects.toBe(refused);
    expect(stream.resumedAfter).toEqual([undefined, 1n]);
  });

  it("a stream that ends is done, or re-opened after a backoff with onEnd \"resume\"; caught_up sets the resume point", async () => {
    const once = scripted([{ items: [5] }]);
    await followResumably({ afterSeq: undefined, signal: new AbortController().signal, onEnd: "done", open: once.open, backoff: SHORT });
    expect(once.resumedAfter).toEqual([undefined]);

    const controller = new AbortController();
    const ends: (ParleyError | undefined)[] = [];
    let opened = 0;
    const done = followResumably({
      afterSeq: undefined,
      signal: controller.signal,
      onEnd: "resume",
      backoff: SHORT,
      retryable: () => true,
      open: (position) => {
        opened++;
        if (opened === 1) position.caughtUp(9n); // nothing passed: resume from the head
        if (opened === 2) expect(position.last).toBe(9n);
        if (opened === 3) return Promise.reject(new ParleyError(ErrorCategory.PERMISSION_DENIED, "retried anyway"));
        return opened < 4 ? Promise.resolve() : untilAborted(controller.signal);
      },
      interrupted: (error) => ends.push(error),
    });
    await eventuallyTrue(() => opened === 4);
    expect(ends.map((error) => error?.category)).toEqual([undefined, undefined, ErrorCategory.PERMISSION_DENIED]);
    controller.abort();
    await expect(done).resolves.toBeUndefined();
  });

  it("an abort during the backoff ends the follow at once, before another attempt", async () => {
    const stream = scripted([{ items: [1], then: unavailable() }]);
    const controller = new AbortController();
    const done = followResumably({
      afterSeq: undefined,
      signal: controller.signal,
      onEnd: "done",
      open: stream.open,
      backoff: { initialMs: 60_000, maxMs: 60_000, multiplier: 1 },
      interrupted: () => {
        controller.abort();
      },
    });
    const started = performance.now();
    await expect(done).resolves.toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(stream.resumedAfter).toEqual([undefined]);
  });
});

/** An attempt that stays open until the follow is stopped, as a real stream does. */
function untilAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => signal?.addEventListener("abort", () => { resolve(); }, { once: true }));
}

/** Waits (bounded, polling every few ms) until `check` holds. */
async function eventuallyTrue(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
