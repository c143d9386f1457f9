import { describe, expect, it } from "vitest";
import { timestampFromPg } from "../src/core/db/pg-timestamp.js";
import { backoffCap, backoffDelay, DEFAULT_BACKOFF } from "../src/util/backoff.js";
import { OrderedQueue } from "../src/util/ordered-queue.js";

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
