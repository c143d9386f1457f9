import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { rejection } from "../support/assertions.js";
import { startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

// Requests whose types protobuf-es takes but whose values parley must refuse,
// fed to a real core over real gRPC (binary protobuf, as every gRPC caller sends).

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

const UNDEFINED_DIRECTION = 7 as unknown as ListDirection;

async function count(table: string, where = "true", params: unknown[] = []): Promise<number> {
  const rows = await db.sql<{ n: string }>(`select count(*) as n from ${table} where ${where}`, params);
  return Number(rows[0]?.n ?? "NaN");
}

describe("enum numbers outside their enum", () => {
  it("ListMessages with direction 7 is VALIDATION naming direction", async () => {
    const chat = await core.chat("enum-alice");
    await chat.sendMessage({ room: "enum-room", body: "hello", clientMsgId: "e-1" });
    const error = await rejection(chat.listMessages({ room: "enum-room", direction: UNDEFINED_DIRECTION }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("direction");
    expect(error.message).toMatch(/7 is not a defined value of parley\.v1\.ListDirection/);
    expect(error.retryable).toBe(false);
  });

  it("ListNotifications with direction 7 is VALIDATION naming direction", async () => {
    const inbox = await core.notifications("enum-bob");
    const error = await rejection(inbox.listNotifications({ direction: UNDEFINED_DIRECTION }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("direction");
  });
});

describe("Notification.data numbers that JSON cannot hold", () => {
  it.each([
    ["NaN", { score: Number.NaN }, "data.score"],
    ["Infinity, nested", { stats: { max: Number.POSITIVE_INFINITY } }, "data.stats.max"],
    ["-Infinity in a list", { samples: [1, 2, Number.NEGATIVE_INFINITY] }, "data.samples[2]"],
  ])("%s is VALIDATION naming the value, and nothing is stored", async (_what, data, field) => {
    const sender = await core.notifications("metrics-service", { sender: true });
    const before = await count("notifications");
    const error = await rejection(
      sender.sendNotification({ recipients: ["nan-carol"], kind: "metrics", title: "numbers", data, idempotencyKey: `nan-${field}` }),
    );
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe(field);
    expect(await count("notifications")).toBe(before);
    expect(await count("notification_sends")).toBe(0);
  });
});

describe("a request over the server's receive limit", () => {
  it("is the caller's VALIDATION error, not retryable, and nothing is stored", async () => {
    const chat = await core.chat("big-dave");
    // grpc-js refuses it before any parley code runs (default limit 4 MiB).
    const error = await rejection(chat.sendMessage({ room: "big-room", body: "x".repeat(4 * 1024 * 1024 + 1), clientMsgId: "big-1" }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.retryable).toBe(false);
    expect(await count("chat_messages", "room_id = $1", ["big-room"])).toBe(0);
  });
});
