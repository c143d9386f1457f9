import type { ClientDuplexStream } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage, SendBatchesResponse, SendStreamResponse } from "../../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { collect, range, startTestCore, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { rejection } from "../../support/assertions.js";

let db: TestDatabase;
let core: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

async function storedSeqs(room: string): Promise<bigint[]> {
  const rows = await db.sql<{ seq: string }>("select seq from chat_messages where room_id = $1 order by seq", [room]);
  return rows.map((row) => BigInt(row.seq));
}


describe("ordering", () => {
  it("32 concurrent senders into one room get seqs 1..N without gap or duplicate", async () => {
    const room = "ordering-32";
    const perSender = 10;
    const senders = await Promise.all(range(1, 32).map((i) => core.chat(`sender-${i}`)));
    const answers = await Promise.all(
      senders.flatMap((chat, s) =>
        Array.from({ length: perSender }, (_, i) => chat.sendMessage({ room, body: `s${s}-m${i}`, clientMsgId: `s${s}-m${i}` })),
      ),
    );
    const total = 32 * perSender;
    const answered = answers.map((a) => a.message?.seq ?? 0n).sort((a, b) => (a < b ? -1 : 1));
    expect(answered).toEqual(range(1, total));
    expect(await storedSeqs(room)).toEqual(range(1, total));
    // Each sender's own messages are in its send order... for one sender sending sequentially:
    const sequential = senders[0];
    if (sequential === undefined) throw new Error("no sender");
    const seqs: bigint[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await sequential.sendMessage({ room, body: `seq-${i}`, clientMsgId: `sequential-${i}` });
      seqs.push(answer.message?.seq ?? 0n);
    }
    expect(seqs).toEqual(range(total + 1, total + 20));
  });
});

describe("idempotency", () => {
  it("the same client_msg_id sent 5 times concurrently and again after success stores one message", async () => {
    const chat = await core.chat("idem-user");
    const request = { room: "idempotent", body: "only once", clientMsgId: "idem-1" };
    const concurrent = await Promise.all(range(1, 5).map(() => chat.sendMessage(request)));
    const again = await chat.sendMessage(request);
    const all = [...concurrent, again];
    const first = all[0]?.message;
    for (const answer of all) {
      expect(answer.message).toEqual(first);
    }
    expect(all.filter((answer) => !answer.duplicate)).toHaveLength(1);
    const rows = await db.sql("select * from chat_messages where client_msg_id = 'idem-1'");
    expect(rows).toHaveLength(1);
    expect(await storedSeqs("idempotent")).toEqual([1n]);
  });

  it("keys are per sender: another user may use the same client_msg_id", async () => {
    const [a, b] = await Promise.all([core.chat("key-a"), core.chat("key-b")]);
    const fromA = await a.sendMessage({ room: "keys", body: "a", clientMsgId: "shared" });
    const fromB = await b.sendMessage({ room: "keys", body: "b", clientMsgId: "shared" });
    expect(fromA.message?.id).not.toBe(fromB.message?.id);
    expect([fromA.duplicate, fromB.duplicate]).toEqual([false, false]);
  });

  it("reusing a key for a different message is a VALIDATION error that stores nothing", async () => {
    const chat = await core.chat("reuse-user");
    await chat.sendMessage({ room: "reuse", body: "first", clientMsgId: "k" });
    const error = await rejection(chat.sendMessage({ room: "reuse", body: "second", clientMsgId: "k" }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("client_msg_id");
    expect(await storedSeqs("reuse")).toEqual([1n]);
  });
});

describe("validation before any database work", () => {
  it.each([
    ["an empty room", { room: "", body: "x", clientMsgId: "c" }, "room"],
    ["a room with a space", { room: "has space", body: "x", clientMsgId: "c" }, "room"],
    ["a 129-character room", { room: "r".repeat(129), body: "x", clientMsgId: "c" }, "room"],
    ["an empty body", { room: "valid", body: "", clientMsgId: "c" }, "body"],
    ["a 4097-character body", { room: "valid", body: "x".repeat(4097), clientMsgId: "c" }, "body"],
    ["a body with NUL", { room: "valid", body: "nul\u0000byte", clientMsgId: "c" }, "body"],
    ["an empty client_msg_id", { room: "valid", body: "x", clientMsgId: "" }, "client_msg_id"],
    ["a client_msg_id with symbols", { room: "valid", body: "x", clientMsgId: "bad id!" }, "client_msg_id"],
  ])("rejects %s, naming the field", async (_label, request, field) => {
    const chat = await core.chat("validator");
    const error = await rejection(chat.sendMessage(request));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe(field);
    expect(await db.sql("select 1 from rooms where id = 'valid'")).toHaveLength(0);
  });

  it("accepts 4096 code points of astral characters (limits count code points)", async () => {
    const chat = await core.chat("validator");
    const answer = await chat.sendMessage({ room: "astral", body: "😀".repeat(4096), clientMsgId: "astral" });
    expect(answer.message?.body).toBe("😀".repeat(4096));
  });
});

describe("history and read positions", () => {
  it("answers a send with the very message history returns, created_at to the microsecond", async () => {
    const chat = await core.chat("archivist");
    const answers = [];
    for (let i = 1; i <= 3; i++) answers.push((await chat.sendMessage({ room: "archive", body: `a${i}`, clientMsgId: `a${i}` })).message);
    const page = await chat.listMessages({ room: "archive" });
    expect(page.messages).toEqual(answers);
    expect(answers.every((message) => (message?.createdAt?.nanos ?? 0) % 1000 === 0 && message?.createdAt !== undefined)).toBe(true);
  });

  it("pages through history in both directions with bounded page size", async () => {
    const chat = await core.chat("historian");
    const room = "history";
    for (let i = 1; i <= 25; i++) await chat.sendMessage({ room, body: `h${i}`, clientMsgId: `h${i}` });

    const forward: bigint[] = [];
    let cursor = 0n;
    for (;;) {
      const page = await chat.listMessages({ room, cursorSeq: cursor, pageSize: 10 });
      forward.push(...page.messages.map((m) => m.seq));
      expect(page.headSeq).toBe(25n);
      cursor = page.nextCursorSeq;
      if (!page.hasMore) break;
    }
    expect(forward).toEqual(range(1, 25));

    const backward: bigint[] = [];
    cursor = 0n;
    for (;;) {
      const page = await chat.listMessages({ room, direction: ListDirection.BACKWARD, cursorSeq: cursor, pageSize: 7 });
      backward.push(...page.messages.map((m) => m.seq));
      cursor = page.nextCursorSeq;
      if (!page.hasMore) break;
    }
    expect(backward).toEqual(range(1, 25).reverse());

    const defaults = await chat.listMessages({ room });
    expect(defaults.messages).toHaveLength(25);
    expect((await rejection(chat.listMessages({ room, pageSize: 501 }))).field).toBe("page_size");
    expect((await rejection(chat.listMessages({ room, cursorSeq: -1n }))).field).toBe("cursor_seq");
    const empty = await chat.listMessages({ room: "never-used" });
    expect(empty).toMatchObject({ messages: [], hasMore: false, headSeq: 0n });
  });

  it("stores read positions that never move backwards and returns unread counts", async () => {
    const [writer, reader] = await Promise.all([core.chat("writer"), core.chat("reader")]);
    const room = "unread";
    for (let i = 1; i <= 10; i++) await writer.sendMessage({ room, body: `u${i}`, clientMsgId: `u${i}` });
    expect(await reader.markRead({ room, seq: 4n })).toMatchObject({ readSeq: 4n, unreadCount: 6n, headSeq: 10n });
    expect(await reader.markRead({ room, seq: 2n })).toMatchObject({ readSeq: 4n, unreadCount: 6n });
    expect(await reader.markRead({ room, seq: 10n })).toMatchObject({ readSeq: 10n, unreadCount: 0n });
    // The sender's own messages count as read.
    expect(await writer.markRead({ room, seq: 0n })).toMatchObject({ readSeq: 10n, unreadCount: 0n });
    const beyond = await rejection(reader.markRead({ room, seq: 11n }));
    expect(beyond).toMatchObject({ category: ErrorCategory.VALIDATION, field: "seq" });
    expect(await reader.markRead({ room, seq: 0n })).toMatchObject({ readSeq: 10n });
  });
});

describe("subscriptions", () => {
  it("replays, marks the seam, then goes live", async () => {
    const chat = await core.chat("live");
    const room = "live";
    for (let i = 1; i <= 5; i++) await chat.sendMessage({ room, body: `l${i}`, clientMsgId: `l${i}` });
    const controller = new AbortController();
    const received = collect(chat.subscribe({ room, afterSeq: 2n }, { signal: controller.signal }), 6);
    for (let i = 6; i <= 8; i++) await chat.sendMessage({ room, body: `l${i}`, clientMsgId: `l${i}` });
    const result = await received;
    controller.abort();
    expect(result.seqs).toEqual(range(3, 8));
    expect(result.caughtUp).toBeGreaterThanOrEqual(5n);
  });

  it("batched: replay and live messages arrive in groups, in seq order, with caught_up at the seam", async () => {
    const chat = await core.chat("batched-follower");
    const room = "batched-follow";
    for (let i = 1; i <= 20; i++) await chat.sendMessage({ room, body: `b${i}`, clientMsgId: `b${i}` });
    const controller = new AbortController();
    const events: { case: string | undefined; seqs: bigint[] }[] = [];
    let caughtUp!: () => void;
    const atSeam = new Promise<void>((resolve) => (caughtUp = resolve));
    const following = (async () => {
      for await (const { event } of chat.subscribe({ room, afterSeq: 5n, batched: true }, { signal: controller.signal })) {
        if (event.case === "messages") events.push({ case: event.case, seqs: event.value.messages.map((message) => message.seq) });
        else if (event.case === "message") events.push({ case: event.case, seqs: [event.value.seq] });
        else events.push({ case: event.case, seqs: event.case === "caughtUp" ? [event.value.headSeq] : [] });
        if (event.case === "caughtUp") caughtUp();
        if (events.flatMap((e) => (e.case === "caughtUp" ? [] : e.seqs)).length >= 95) break;
      }
    })();
    // Live from here: the replay is done before the next messages are sent.
    await atSeam;
    // 80 live messages, committed together in a few batches.
    const stream = chat.sendBatches();
    stream.on("data", () => undefined);
    const ended = new Promise((resolve) => stream.on("end", resolve));
    stream.write({ items: range(21, 100).map((seq) => ({ streamSeq: seq, room, body: `b${seq}`, clientMsgId: `b${seq}` })) });
    stream.end();
    await ended;
    await following;
    controller.abort();
    const seam = events.findIndex((e) => e.case === "caughtUp");
    expect(events.slice(0, seam).every((e) => e.case === "messages")).toBe(true);
    expect(events[seam]?.seqs[0]).toBeGreaterThanOrEqual(20n);
    const delivered = events.filter((e) => e.case !== "caughtUp").flatMap((e) => e.seqs);
    expect(delivered).toEqual(range(6, 100)); // no gap, no duplicate across the seam
    expect(events.length).toBeLessThan(40); // 95 messages, grouped
  });

  it("batched: a follower that stops reading while 6 MB are stored then gets every message once, in order", async () => {
    const chat = await core.chat("batched-laggard");
    const room = "batched-laggard";
    const total = 3_000;
    const controller = new AbortController();
    const iterator = chat.subscribe({ room, batched: true }, { signal: controller.signal })[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done !== true && first.value.event.case).toBe("caughtUp");
    // The follower reads nothing while 3,000 messages of 2 KB are stored by
    // 30 concurrent senders: about a hundred commits, so a hundred events,
    // more than the client buffers and HTTP/2 flow control lets through.
    const senders = 30;
    await Promise.all(
      range(1, senders).map(async (sender) => {
        for (let n = Number(sender); n <= total; n += senders) {
          await chat.sendMessage({ room, body: `${n} `.padEnd(2_000, "x"), clientMsgId: `l${n}` });
        }
      }),
    );
    const bodies = new Map<bigint, string>();
    const seqs: bigint[] = [];
    while (seqs.length < total) {
      const next = await iterator.next();
      if (next.done === true) break;
      const { event } = next.value;
      const messages = event.case === "messages" ? event.value.messages : event.case === "message" ? [event.value] : [];
      for (const message of messages) {
        seqs.push(message.seq);
        bodies.set(message.seq, message.body);
      }
    }
    controller.abort();
    expect(seqs).toEqual(range(1, total));
    expect(new Set([...bodies.values()].map((body) => body.split(" ")[0])).size).toBe(total);
  });

  it("refuses to resume from beyond the room's head instead of skipping", async () => {
    const chat = await core.chat("ahead");
    const room = "ahead";
    for (let i = 1; i <= 3; i++) await chat.sendMessage({ room, body: `a${i}`, clientMsgId: `a${i}` });
    const iterator = chat.subscribe({ room, afterSeq: 10n })[Symbol.asyncIterator]();
    const error = await rejection(iterator.next());
    expect(error).toMatchObject({ category: ErrorCategory.VALIDATION, field: "after_seq" });
  });

  it("live-only subscriptions start after the head", async () => {
    const chat = await core.chat("live-only");
    const room = "live-only";
    for (let i = 1; i <= 3; i++) await chat.sendMessage({ room, body: `x${i}`, clientMsgId: `x${i}` });
    const controller = new AbortController();
    const iterator = chat.subscribe({ room }, { signal: controller.signal })[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value).toMatchObject({ event: { case: "caughtUp", value: { headSeq: 3n } } });
    await chat.sendMessage({ room, body: "x4", clientMsgId: "x4" });
    const next = await iterator.next();
    expect(next.value).toMatchObject({ event: { case: "message", value: { seq: 4n, body: "x4" } } });
    controller.abort();
  });

  it("a subscriber that disconnects after seq k and resumes with k gets exactly k+1..N while sends continue", async () => {
    const sender = await core.chat("resume-sender");
    const subscriber = await core.chat("resume-subscriber");
    const room = "resume";
    const total = 300;
    let sent = 0;
    const sending = (async () => {
      for (; sent < total; sent++) await sender.sendMessage({ room, body: `r${sent + 1}`, clientMsgId: `r${sent + 1}` });
    })();

    const firstController = new AbortController();
    const first = await collect(subscriber.subscribe({ room, afterSeq: 0n }, { signal: firstController.signal }), 40);
    firstController.abort();
    expect(first.seqs).toEqual(range(1, 40));
    const k = first.seqs.at(-1) ?? 0n;
    expect(sent).toBeLessThan(total); // still sending while we resume

    const secondController = new AbortController();
    const second = await collect(subscriber.subscribe({ room, afterSeq: k }, { signal: secondController.signal }), total - Number(k));
    secondController.abort();
    await sending;
    expect(second.seqs).toEqual(range(Number(k) + 1, total));
    expect(second.bodies.at(-1)).toBe(`r${total}`);
  });

  it("delivers to a subscriber on instance A, in order, the messages sent through instance B", async () => {
    const other = await startTestCore(db, { migrate: false });
    try {
      const onA = await core.chat("watcher");
      const onB = await other.chat("remote-sender");
      const room = "two-instances";
      const controller = new AbortController();
      const iterator = onA.subscribe({ room, afterSeq: 0n }, { signal: controller.signal })[Symbol.asyncIterator]();
      expect((await iterator.next()).value).toMatchObject({ event: { case: "caughtUp" } });
      const count = 100;
      const sends = Promise.all(range(1, count).map((i) => onB.sendMessage({ room, body: `b${i}`, clientMsgId: `b${i}` })));
      const seqs: bigint[] = [];
      while (seqs.length < count) {
        const next = await iterator.next();
        if (next.done === true) break;
        if (next.value.event.case === "message") seqs.push(next.value.event.value.seq);
      }
      controller.abort();
      await sends;
      expect(seqs).toEqual(range(1, count));
    } finally {
      await other.stop();
    }
  });

  it("ends subscriptions with UNAVAILABLE when core stops, so callers resubscribe", async () => {
    const own = await startTestCore(db, { migrate: false });
    const chat = await own.chat("stopper");
    const iterator = chat.subscribe({ room: "stopping", afterSeq: 0n })[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ event: { case: "caughtUp" } });
    const ended = iterator.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    await own.stop();
    const error = await ended;
    expect(error).toBeInstanceOf(ParleyError);
    expect((error as ParleyError).category).toBe(ErrorCategory.UNAVAILABLE);
  });
});

/** Writes items on a SendStream and collects answers until `count` arrived or the stream ended. */
function answersOf<In>(stream: ClientDuplexStream<In, SendStreamResponse>): { answers: SendStreamResponse[]; ended: Promise<unknown> } {
  const answers: SendStreamResponse[] = [];
  const ended = new Promise<unknown>((resolve) => {
    stream.on("data", (answer: SendStreamResponse) => answers.push(answer));
    stream.on("error", (error) => {
      resolve(error);
    });
    stream.on("end", () => {
      resolve(undefined);
    });
  });
  return { answers, ended };
}

describe("SendStream", () => {
  const item = (i: number, room: string) => ({ streamSeq: BigInt(i), room, body: `item ${i}`, clientMsgId: `${room}-${i}` });

  it("answers every item in stream order, each with its own result or error", async () => {
    const chat = await core.chat("streamer");
    const stream = chat.sendStream();
    const { answers, ended } = answersOf(stream);
    for (let i = 1; i <= 200; i++) stream.write(i === 50 ? { ...item(i, "stream-a"), body: "" } : item(i, "stream-a"));
    stream.end();
    expect(await ended).toBeUndefined();
    expect(answers.map((a) => a.streamSeq)).toEqual(range(1, 200));
    const bad = answers[49];
    expect(bad?.result.case).toBe("error");
    expect(bad?.result.value).toMatchObject({ category: ErrorCategory.VALIDATION, field: "body" });
    const stored = answers.filter((a) => a.result.case === "message").map((a) => (a.result.value as ChatMessage).seq);
    expect(stored).toEqual(range(1, 199));
  });

  it("stores items in stream order even when they carry acting tokens not verified yet", async () => {
    const { mintToken } = await import("../../../src/runtime/auth/tokens.js");
    const { TEST_JWT_SECRET } = await import("../../support/core.js");
    const chat = await core.chat("opener");
    const stream = chat.sendStream();
    const { answers, ended } = answersOf(stream);
    const room = "stream-acting-order";
    for (let i = 1; i <= 30; i++) {
      // Every other item acts for a user whose token nobody has verified yet.
      const actingToken = i % 2 === 1 ? await mintToken(TEST_JWT_SECRET, `acting-${i}`) : "";
      stream.write({ ...item(i, room), actingToken });
    }
    stream.end();
    expect(await ended).toBeUndefined();
    const seqs = answers.map((a) => (a.result.value as ChatMessage).seq);
    expect(seqs).toEqual(range(1, 30));
    const senders = answers.map((a) => (a.result.value as ChatMessage).sender);
    expect(senders.slice(0, 2)).toEqual(["acting-1", "opener"]);
  });

  it("ends the stream with VALIDATION when stream_seq goes backwards, after answering what came before", async () => {
    const chat = await core.chat("streamer");
    const stream = chat.sendStream();
    const { answers, ended } = answersOf(stream);
    stream.write(item(5, "stream-order"));
    stream.write(item(4, "stream-order"));
    const error = await ended;
    expect(answers.map((a) => a.streamSeq)).toEqual([5n]);
    expect(error).toMatchObject({ code: 3 }); // INVALID_ARGUMENT
  });

  async function resendUnanswered(chatUser: string, room: string, total: number, sent: SendStreamResponse[]): Promise<SendStreamResponse[]> {
    const answered = new Set(sent.map((a) => a.streamSeq));
    const chat = await core.chat(chatUser);
    const stream = chat.sendStream();
    const { answers, ended } = answersOf(stream);
    for (let i = 1; i <= total; i++) if (!answered.has(BigInt(i))) stream.write(item(i, room));
    stream.end();
    expect(await ended).toBeUndefined();
    return answers;
  }

  it("after the client breaks the stream, resending the un-answered items stores every item once, in order", async () => {
    const room = "stream-client-break";
    const total = 2000;
    const chat = await core.chat("breaker");
    const stream = chat.sendStream();
    const { answers } = answersOf(stream);
    for (let i = 1; i <= total; i++) stream.write(item(i, room));
    // Break as soon as some, but not all, answers are in.
    await new Promise<void>((resolve) => {
      const check = () => {
        if (answers.length >= 100) {
          stream.cancel();
          resolve();
        } else setImmediate(check);
      };
      check();
    });
    const firstAnswers = [...answers];
    expect(firstAnswers.length).toBeLessThan(total);
    const resent = await resendUnanswered("breaker", room, total, firstAnswers);
    const all = [...firstAnswers, ...resent];
    expect(new Set(all.map((a) => a.streamSeq)).size).toBe(total);
    expect(all.every((a) => a.result.case === "message")).toBe(true);
    const rows = await db.sql<{ seq: string; client_msg_id: string }>(
      "select seq, client_msg_id from chat_messages where room_id = $1 order by seq",
      [room],
    );
    expect(rows.map((r) => r.client_msg_id)).toEqual(range(1, total).map((i) => `${room}-${i}`));
    expect(rows.map((r) => BigInt(r.seq))).toEqual(range(1, total));
  });

  it("after the server breaks the stream (core restart), resending the un-answered items stores every item once, in order", async () => {
    const room = "stream-server-break";
    const total = 2000;
    const own = await startTestCore(db, { migrate: false });
    const chat = await own.chat("restarted");
    const stream = chat.sendStream();
    const { answers, ended } = answersOf(stream);
    for (let i = 1; i <= total; i++) stream.write(item(i, room));
    await new Promise<void>((resolve) => {
      const check = () => {
        if (answers.length >= 100) resolve();
        else setImmediate(check);
      };
      check();
    });
    await own.stop(0); // no grace: in-flight streams are cut
    await ended;
    const firstAnswers = [...answers];
    expect(firstAnswers.length).toBeLessThan(total);
    const resent = await resendUnanswered("restarted", room, total, firstAnswers);
    const all = [...firstAnswers, ...resent];
    expect(new Set(all.map((a) => a.streamSeq)).size).toBe(total);
    expect(resent.some((a) => a.duplicate)).toBe(true); // committed but unanswered before the stop
    const rows = await db.sql<{ seq: string; client_msg_id: string }>(
      "select seq, client_msg_id from chat_messages where room_id = $1 order by seq",
      [room],
    );
    expect(rows.map((r) => r.client_msg_id)).toEqual(range(1, total).map((i) => `${room}-${i}`));
    expect(rows.map((r) => BigInt(r.seq))).toEqual(range(1, total));
  });
});

describe("SendBatches", () => {
  const item = (i: number, room: string) => ({ streamSeq: BigInt(i), room, body: `batched ${i}`, clientMsgId: `${room}-${i}` });

  /** Collects a SendBatches stream's responses until it ends. */
  function responsesOf<In>(stream: ClientDuplexStream<In, SendBatchesResponse>): { responses: SendBatchesResponse[]; ended: Promise<unknown> } {
    const responses: SendBatchesResponse[] = [];
    const ended = new Promise<unknown>((resolve) => {
      stream.on("data", (response: SendBatchesResponse) => responses.push(response));
      stream.on("error", resolve);
      stream.on("end", () => {
        resolve(undefined);
      });
    });
    return { responses, ended };
  }

  it("answers items from many requests in stream order, grouping answers that are ready together", async () => {
    const chat = await core.chat("batcher");
    const stream = chat.sendBatches();
    const { responses, ended } = responsesOf(stream);
    const room = "batches-order";
    // 10 requests of 30 items; item 77 is invalid and answered on its own.
    for (let first = 1; first <= 300; first += 30) {
      const items = range(first, first + 29).map((seq) => (seq === 77n ? { ...item(Number(seq), room), body: "" } : item(Number(seq), room)));
      stream.write({ items });
    }
    stream.end();
    expect(await ended).toBeUndefined();
    const answers = responses.flatMap((response) => response.answers);
    expect(answers.map((a) => a.streamSeq)).toEqual(range(1, 300));
    expect(answers[76]?.result).toMatchObject({ case: "error", value: { category: ErrorCategory.VALIDATION, field: "body" } });
    const stored = answers.filter((a) => a.result.case === "message").map((a) => (a.result.value as ChatMessage).seq);
    expect(stored).toEqual(range(1, 299));
    expect(await storedSeqs(room)).toEqual(range(1, 299));
    // Group commit stores many items per transaction, and their answers share responses.
    expect(responses.every((response) => response.answers.length > 0)).toBe(true);
    expect(responses.length).toBeLessThan(150);
  });

  it("answers each item of a 500-item request over three rooms with its own stored row, repeats with their originals", async () => {
    const chat = await core.chat("big-batcher");
    const rooms = ["big-a", "big-b", "big-c"];
    // Seed: items 1..20 stored first, then repeated (same keys) inside the big request.
    const seed = chat.sendBatches();
    const seeded = responsesOf(seed);
    seed.write({ items: range(1, 20).map((i) => item(Number(i), rooms[Number(i) % 3] ?? "big-a")) });
    seed.end();
    expect(await seeded.ended).toBeUndefined();

    const stream = chat.sendBatches();
    const { responses, ended } = responsesOf(stream);
    const items = range(1, 500).map((i) => item(Number(i), rooms[Number(i) % 3] ?? "big-a"));
    stream.write({ items });
    stream.end();
    expect(await ended).toBeUndefined();
    const answers = responses.flatMap((response) => response.answers);
    expect(answers.map((a) => a.streamSeq)).toEqual(range(1, 500));

    const rows = await db.sql<{ id: string; room_id: string; seq: string; body: string; client_msg_id: string; micros: string }>(
      "select id, room_id, seq, body, client_msg_id, (extract(epoch from created_at) * 1000000)::bigint::text as micros from chat_messages where room_id = any($1)",
      [rooms],
    );
    const byKey = new Map(rows.map((row) => [row.client_msg_id, row]));
    expect(rows).toHaveLength(500);
    answers.forEach((answer, index) => {
      const sent = items[index];
      expect(answer.result.case).toBe("message");
      const message = answer.result.value as ChatMessage;
      const row = byKey.get(sent?.clientMsgId ?? "");
      expect(answer.duplicate).toBe(index < 20);
      expect({ id: message.id, room: message.room, seq: message.seq, body: message.body }).toEqual({ id: row?.id, room: sent?.room, seq: BigInt(row?.seq ?? -1), body: sent?.body });
      const micros = (message.createdAt?.seconds ?? 0n) * 1_000_000n + BigInt((message.createdAt?.nanos ?? 0) / 1000);
      expect(micros.toString()).toBe(row?.micros);
    });
    // Each room's fresh messages are numbered in item order, after its seeded ones.
    for (const room of rooms) {
      const seqs = answers.filter((_, index) => index >= 20 && items[index]?.room === room).map((a) => (a.result.value as ChatMessage).seq);
      const seeded = BigInt(range(1, 20).filter((i) => rooms[Number(i) % 3] === room).length);
      expect(seqs).toEqual(range(Number(seeded) + 1, Number(seeded) + seqs.length));
    }
  });

  it("ends the stream with VALIDATION for a request with no items or more than 512, after answering what came before", async () => {
    const chat = await core.chat("batcher");
    for (const size of [0, 513]) {
      const room = `batches-size-${size}`;
      const stream = chat.sendBatches();
      const { responses, ended } = responsesOf(stream);
      stream.write({ items: [item(1, room), item(2, room)] });
      stream.write({ items: range(3, 2 + size).map((seq) => item(Number(seq), room)) });
      const error = await ended;
      expect(error).toMatchObject({ code: 3 }); // INVALID_ARGUMENT
      expect((error as Error).message).toContain("items");
      expect(responses.flatMap((response) => response.answers).map((a) => a.streamSeq)).toEqual([1n, 2n]);
      expect(await storedSeqs(room)).toEqual([1n, 2n]);
    }
  });

  it("ends the stream with VALIDATION when stream_seq goes backwards across requests", async () => {
    const chat = await core.chat("batcher");
    const stream = chat.sendBatches();
    const { responses, ended } = responsesOf(stream);
    stream.write({ items: [item(7, "batches-backwards"), item(8, "batches-backwards")] });
    stream.write({ items: [item(8, "batches-backwards")] });
    const error = await ended;
    expect(error).toMatchObject({ code: 3 });
    expect(responses.flatMap((response) => response.answers).map((a) => a.streamSeq)).toEqual([7n, 8n]);
  });
});
