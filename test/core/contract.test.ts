import { create, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService, SendMessageRequestSchema } from "../../gen/parley/v1/chat_pb.js";
import type { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { rejection } from "../support/assertions.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../support/core.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { fromGrpcError } from "../../src/runtime/grpc/status.js";
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

describe("a message over a gRPC size limit", () => {
  const LIMIT = 4 * 1024 * 1024;
  const bigBody = "x".repeat(LIMIT + 1);

  it("is the caller's VALIDATION error naming the sizes, not retryable, and nothing is stored", async () => {
    const chat = await core.chat("big-dave");
    // grpc-js refuses it before any parley code runs (default limit 4 MiB).
    const error = await rejection(chat.sendMessage({ room: "big-room", body: bigBody, clientMsgId: "big-1" }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(new RegExp(`^message of \\d+ bytes exceeds the limit of ${LIMIT} bytes$`));
    expect(await count("chat_messages", "room_id = $1", ["big-room"])).toBe(0);
  });

  it("reaches a plain grpc-js client as INVALID_ARGUMENT with a VALIDATION detail, and is logged", async () => {
    // No parley client code on this side: what any gRPC client reads off the wire.
    const token = await mintToken(TEST_JWT_SECRET, "big-erin");
    const request = toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, { room: "big-room-2", body: bigBody, clientMsgId: "big-2" }));
    const client = new Client(core.core.address, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const failure = await new Promise<ServiceError>((resolve, reject) => {
      const identity = (bytes: Buffer) => bytes;
      client.makeUnaryRequest("/parley.v1.ChatService/SendMessage", identity, identity, Buffer.from(request), metadata, (error) => {
        if (error) resolve(error);
        else reject(new Error("an over-limit request was accepted"));
      });
    });
    client.close();
    expect(failure.code).toBe(status.INVALID_ARGUMENT);
    expect(failure.details).toBe(`message of ${request.length} bytes exceeds the limit of ${LIMIT} bytes`);
    const parsed = fromGrpcError(failure);
    expect(parsed.category).toBe(ErrorCategory.VALIDATION);
    expect(parsed.retryable).toBe(false);
    expect(core.logs.find({ category: "VALIDATION", rpc: "/parley.v1.ChatService/SendMessage", level: "warn" }).length).toBeGreaterThan(0);
    expect(await count("chat_messages", "room_id = $1", ["big-room-2"])).toBe(0);
  });

  it("an answer over the client's own receive limit is VALIDATION naming the sizes", async () => {
    const chat = await core.chat("big-frank");
    await chat.sendMessage({ room: "big-room-3", body: "y".repeat(200), clientMsgId: "big-3" });
    const token = await mintToken(TEST_JWT_SECRET, "big-frank");
    const small = createClient(ChatService, core.core.address, {
      headers: () => ({ authorization: `Bearer ${token}` }),
      channelOptions: { "grpc.max_receive_message_length": 64 },
    });
    const error = await rejection(small.listMessages({ room: "big-room-3" }));
    small.close();
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/^message of \d+ bytes exceeds the limit of 64 bytes$/);
  });

  it("parley's own RATE_LIMITED stays retryable", () => {
    const limited = fromGrpcError({ code: status.RESOURCE_EXHAUSTED, details: "too many requests", metadata: new Metadata() });
    expect(limited.category).toBe(ErrorCategory.RATE_LIMITED);
    expect(limited.retryable).toBe(true);
  });
});
