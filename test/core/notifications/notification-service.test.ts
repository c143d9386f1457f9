import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { range, startTestCore, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { rejection } from "../../support/assertions.js";

let db: TestDatabase;
let core: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { webhook: { url: "http://127.0.0.1:9/unused", secret: "s".repeat(16), graceMs: 60_000 } });
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});


const notice = (key: string, recipients: string[]) => ({ recipients, kind: "test.notice", title: `t ${key}`, body: "b", idempotencyKey: key });

describe("SendNotification", () => {
  it("one notification to 100 recipients gives each their previous seq + 1; the same key resent stores nothing", async () => {
    const service = await core.notifications("billing-service", { sender: true });
    const recipients = range(1, 100).map((i) => `fan-${i}`);
    // Give every recipient a different history first.
    for (let i = 0; i < 100; i += 7) await service.sendNotification(notice(`warmup-${i}`, recipients.slice(i, i + 20)));
    const before = new Map<string, bigint>();
    for (const row of await db.sql<{ user_id: string; head_seq: string }>("select user_id, head_seq from inboxes")) {
      before.set(row.user_id, BigInt(row.head_seq));
    }

    const sent = await service.sendNotification({ ...notice("fan-out", recipients), data: { invoice: "inv-1", amount: 12.5, tags: ["a"] } });
    expect(sent.duplicate).toBe(false);
    expect(sent.notifications.map((n) => n.recipient)).toEqual(recipients);
    for (const notification of sent.notifications) {
      expect(notification.seq).toBe((before.get(notification.recipient) ?? 0n) + 1n);
      expect(notification.sender).toBe("billing-service");
      expect(notification.data).toEqual({ invoice: "inv-1", amount: 12.5, tags: ["a"] });
      expect(notification.readAt).toBeUndefined();
    }

    const count = async () => Number((await db.sql<{ n: string }>("select count(*) as n from notifications"))[0]?.n);
    const stored = await count();
    const again = await service.sendNotification({ ...notice("fan-out", recipients), data: { invoice: "inv-1", amount: 12.5, tags: ["a"] } });
    expect(again.duplicate).toBe(true);
    expect(again.notifications).toEqual(sent.notifications);
    expect(await count()).toBe(stored);
  });

  it("concurrent repeats of one key store once; every answer is the same", async () => {
    const service = await core.notifications("ops-service", { sender: true });
    const answers = await Promise.all(range(1, 5).map(() => service.sendNotification(notice("concurrent", ["con-a", "con-b"]))));
    const ids = new Set(answers.flatMap((a) => a.notifications.map((n) => n.id)));
    expect(ids.size).toBe(2);
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
  });

  it("reusing a key for a different notification is VALIDATION", async () => {
    const service = await core.notifications("ops-service", { sender: true });
    await service.sendNotification(notice("reused", ["reuse-a"]));
    const error = await rejection(service.sendNotification({ ...notice("reused", ["reuse-a"]), title: "different" }));
    expect(error).toMatchObject({ category: ErrorCategory.VALIDATION, field: "idempotency_key" });
  });

  it("needs the notifications:send scope", async () => {
    const user = await core.notifications("plain-user");
    const error = await rejection(user.sendNotification(notice("no-scope", ["victim"])));
    expect(error.category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect(await db.sql("select 1 from inboxes where user_id = 'victim'")).toHaveLength(0);
  });

  it.each([
    ["no recipients", { recipients: [] }, "recipients"],
    ["1001 recipients", { recipients: range(1, 1001).map((i) => `u${i}`) }, "recipients"],
    ["a repeated recipient", { recipients: ["dup", "dup"] }, "recipients[1]"],
    ["an invalid recipient", { recipients: ["ok", "not ok"] }, "recipients[1]"],
    ["an empty kind", { kind: "" }, "kind"],
    ["an empty title", { title: "" }, "title"],
    ["a 257-character title", { title: "t".repeat(257) }, "title"],
    ["a 4097-character body", { body: "b".repeat(4097) }, "body"],
    ["data over 16 KiB", { data: { blob: "x".repeat(17 * 1024) } }, "data"],
    ["no idempotency key", { idempotencyKey: "" }, "idempotency_key"],
  ])("rejects %s, naming the field", async (_label, change, field) => {
    const service = await core.notifications("validating-service", { sender: true });
    const error = await rejection(service.sendNotification({ ...notice("valid-key", ["someone"]), ...change }));
    expect(error).toMatchObject({ category: ErrorCategory.VALIDATION, field });
  });
});

describe("inbox", () => {
  it("lists all or unread only, paged both ways, and acknowledges by seq and by id", async () => {
    const service = await core.notifications("inbox-service", { sender: true });
    const reader = await core.notifications("reader");
    for (let i = 1; i <= 12; i++) await service.sendNotification(notice(`inbox-${i}`, ["reader"]));

    const forward = await reader.listNotifications({ pageSize: 5 });
    expect(forward.notifications.map((n) => n.seq)).toEqual(range(1, 5));
    expect(forward).toMatchObject({ hasMore: true, nextCursorSeq: 5n, headSeq: 12n, unreadCount: 12n });
    const backward = await reader.listNotifications({ direction: ListDirection.BACKWARD, pageSize: 3 });
    expect(backward.notifications.map((n) => n.seq)).toEqual([12n, 11n, 10n]);

    expect(await reader.ackNotifications({ upToSeq: 4n })).toEqual(expect.objectContaining({ ackedCount: 4n, unreadCount: 8n }));
    const idOf7 = (await reader.listNotifications({ cursorSeq: 6n, pageSize: 1 })).notifications[0]?.id ?? "";
    expect(await reader.ackNotifications({ ids: [idOf7] })).toEqual(expect.objectContaining({ ackedCount: 1n, unreadCount: 7n }));
    expect(await reader.ackNotifications({ upToSeq: 4n, ids: [idOf7] })).toEqual(expect.objectContaining({ ackedCount: 0n }));

    const unread = await reader.listNotifications({ unreadOnly: true });
    expect(unread.notifications.map((n) => n.seq)).toEqual([5n, 6n, 8n, 9n, 10n, 11n, 12n]);
    const all = await reader.listNotifications({});
    expect(all.notifications.filter((n) => n.readAt !== undefined).map((n) => n.seq)).toEqual([1n, 2n, 3n, 4n, 7n]);

    // Acknowledged notifications need no webhook any more.
    const statuses = await db.sql<{ seq: string; status: string }>(
      `select n.seq, d.status from notifications n join webhook_deliveries d on d.notification_id = n.id
        where n.recipient_id = 'reader' order by n.seq`,
    );
    expect(statuses.filter((s) => s.status === "cancelled").map((s) => s.seq)).toEqual(["1", "2", "3", "4", "7"]);
    expect(statuses.filter((s) => s.status === "pending")).toHaveLength(7);

    expect((await rejection(reader.ackNotifications({ ids: ["not-a-uuid"] }))).field).toBe("ids[0]");
    expect((await rejection(reader.ackNotifications({ ids: ["00000000-0000-4000-8000-000000000000"] }))).field).toBe("ids[0]");
  });

  it("another user cannot read, acknowledge or follow someone's notifications", async () => {
    const service = await core.notifications("private-service", { sender: true });
    const owner = await core.notifications("owner");
    const intruder = await core.notifications("intruder");
    const sent = await service.sendNotification(notice("private", ["owner"]));
    const id = sent.notifications[0]?.id ?? "";

    expect((await rejection(intruder.listNotifications({ recipient: "owner" }))).category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect((await rejection(intruder.ackNotifications({ ids: [id] }))).category).toBe(ErrorCategory.PERMISSION_DENIED);
    const subscribe = intruder.subscribe({ recipient: "owner", afterSeq: 0n })[Symbol.asyncIterator]();
    expect((await rejection(subscribe.next())).category).toBe(ErrorCategory.PERMISSION_DENIED);
    // The intruder's own inbox is empty, and the owner's notification is untouched.
    expect((await intruder.listNotifications({})).notifications).toEqual([]);
    const mine = await owner.listNotifications({ recipient: "owner" });
    expect(mine.notifications.map((n) => n.id)).toEqual([id]);
    expect(mine.unreadCount).toBe(1n);
  });
});

describe("AckNotifications with an id that is not the caller's", () => {
  it("answers the same for another user's notification and for an id that does not exist, and marks nothing", async () => {
    const service = await core.notifications("probe-service", { sender: true });
    const prober = await core.notifications("prober");
    const victim = (await service.sendNotification(notice("probe-victim", ["probed"]))).notifications[0]?.id ?? "";
    await service.sendNotification(notice("probe-own", ["prober"]));
    const nowhere = "7d3f0b9e-5c1a-4e2b-9f80-0123456789ab";

    // up_to_seq too: a refused call must not mark the prober's own inbox either.
    const answers = [];
    for (const id of [victim, nowhere]) {
      const error = await rejection(prober.ackNotifications({ upToSeq: 10n, ids: [id] }));
      const wire = error.cause as { code: number; details: string };
      answers.push({ category: error.category, message: error.message, field: error.field, retryable: error.retryable, retryAfterMs: error.retryAfterMs, code: wire.code, details: wire.details });
    }
    expect(answers[0]).toEqual(answers[1]);
    expect(answers[0]).toMatchObject({ code: 7, details: "ids[0]: not a notification of your inbox", category: ErrorCategory.PERMISSION_DENIED, field: "ids[0]", message: "ids[0]: not a notification of your inbox", retryable: false });
    // Its position in the list, not its owner, is what the answer names.
    const second = await rejection(prober.ackNotifications({ ids: [nowhere, victim] }));
    expect(second.message).toBe("ids[0]: not a notification of your inbox");

    const unread = await db.sql<{ recipient_id: string; read: boolean; status: string }>(
      `select n.recipient_id, n.read_at is not null as read, d.status from notifications n join webhook_deliveries d on d.notification_id = n.id
        where n.recipient_id in ('probed', 'prober')`,
    );
    expect(unread).toHaveLength(2);
    expect(unread.every((row) => !row.read && row.status === "pending")).toBe(true);
  });
});

describe("Subscribe", () => {
  it("a subscriber that drops after seq k and resumes gets k+1..N exactly", async () => {
    const service = await core.notifications("resume-service", { sender: true });
    const user = await core.notifications("resumer");
    const total = 60;
    const sending = (async () => {
      for (let i = 1; i <= total; i++) await service.sendNotification(notice(`resume-${i}`, ["resumer"]));
    })();
    const seqs = async (afterSeq: bigint, count: number) => {
      const controller = new AbortController();
      const out: bigint[] = [];
      for await (const { event } of user.subscribe({ afterSeq }, { signal: controller.signal })) {
        if (event.case === "notification") out.push(event.value.seq);
        if (out.length === count) break;
      }
      controller.abort();
      return out;
    };
    const first = await seqs(0n, 15);
    expect(first).toEqual(range(1, 15));
    const rest = await seqs(15n, total - 15);
    await sending;
    expect(rest).toEqual(range(16, total));
  });

  it("delivers live across instances, and a live delivery cancels the webhook", async () => {
    const other = await startTestCore(db, { migrate: false, webhook: { url: "http://127.0.0.1:9/unused", secret: "s".repeat(16), graceMs: 60_000 } });
    try {
      const listener = await core.notifications("live-user");
      const remoteService = await other.notifications("remote-service", { sender: true });
      const controller = new AbortController();
      const events = listener.subscribe({ afterSeq: 0n }, { signal: controller.signal })[Symbol.asyncIterator]();
      expect((await events.next()).value).toMatchObject({ event: { case: "caughtUp" } });
      const sent = await remoteService.sendNotification(notice("live-1", ["live-user"]));
      const next = await events.next();
      expect(next.value).toMatchObject({ event: { case: "notification", value: { id: sent.notifications[0]?.id, seq: 1n } } });
      const deadline = Date.now() + 5_000;
      let status = "";
      while (Date.now() < deadline) {
        status = (await db.sql<{ status: string }>("select status from webhook_deliveries where notification_id = $1", [sent.notifications[0]?.id]))[0]?.status ?? "";
        if (status === "cancelled") break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(status).toBe("cancelled");
      controller.abort();
    } finally {
      await other.stop();
    }
  });
});
