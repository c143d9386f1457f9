import { describe, expect, it } from "vitest";
import { TopicFanout } from "../../../src/core/store/topic-fanout.js";
import { LogCapture } from "../../support/logs.js";

interface Item {
  readonly topic: string;
  readonly seq: bigint;
}

describe("TopicFanout: other instances' commits", () => {
  it("reads the ranges of many notifications that arrive together once per topic per round, and publishes every item of each topic in seq order", async () => {
    const reads: { topic: string; from: bigint; to: bigint }[] = [];
    const fanout = new TopicFanout<Item>({
      origin: "here",
      topicOf: (item) => item.topic,
      // The stored rows: every seq of the range (a read takes a while, as a query does).
      readRange: async (topic, from, to) => {
        reads.push({ topic, from, to });
        await new Promise((resolve) => setTimeout(resolve, 20));
        const items: Item[] = [];
        for (let seq = from; seq <= to; seq++) items.push({ topic, seq });
        return items;
      },
      logger: new LogCapture("warn").logger,
    });
    const seen = new Map<string, bigint[]>();
    for (const topic of ["r", "s"]) {
      const subscription = fanout.hub.subscribe(topic);
      const list: bigint[] = [];
      seen.set(topic, list);
      subscription.listen(() => {
        for (let event = subscription.take(); event !== undefined; event = subscription.take()) {
          if (event.kind === "items") list.push(...event.items.map((item) => item.seq));
        }
      });
    }
    // 200 commits of room r and 50 of room s by another instance, notified one by one.
    for (let seq = 1; seq <= 200; seq++) {
      fanout.notified(JSON.stringify({ topic: "r", from: String(seq), to: String(seq), origin: "there" }));
      if (seq % 4 === 0) fanout.notified(JSON.stringify({ topic: "s", from: String(seq / 4), to: String(seq / 4), origin: "there" }));
      if (seq % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // A notification of this instance's own commit, and one of a topic nobody here follows, read nothing.
    fanout.notified(JSON.stringify({ topic: "r", from: "201", to: "201", origin: "here" }));
    fanout.notified(JSON.stringify({ topic: "nobody", from: "1", to: "1", origin: "there" }));
    const deadline = Date.now() + 5_000;
    while ((seen.get("r")?.length ?? 0) < 200 || (seen.get("s")?.length ?? 0) < 50) {
      if (Date.now() > deadline) throw new Error("not everything was published");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(seen.get("r")).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(i + 1)));
    expect(seen.get("s")).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i + 1)));
    expect(reads.length).toBeLessThan(20);
    expect(reads.every((read) => read.topic !== "nobody")).toBe(true);
  });
});
