import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { type ErrorDetail, ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ClientFrameSchema, type ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { WsTestClient } from "../support/ws-client.js";

// Frames whose types the schema takes but whose values parley must refuse,
// fed to a real bridge in front of a real core: each gets an error frame
// naming its request and field, the socket stays open, nothing is stored.

let db: TestDatabase;
let core: TestCore;
let bridge: RunningBridge;
const clients: WsTestClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
  bridge = await startBridge({
    httpAddress: "127.0.0.1:0",
    coreAddress: core.core.address,
    relayToken: TEST_RELAY_TOKEN,
    logger: new LogCapture("info").logger,
    // Many bad frames in a row on one socket, on purpose.
    limits: { maxConsecutiveErrors: 1_000 },
  });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

afterAll(async () => {
  await bridge.stop(500);
  await core.stop();
  await db.drop();
});

async function connect(user: string): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${bridge.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, user) });
  clients.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

/** Sends raw text or bytes and waits for the frame answering `requestId`. */
async function answer(client: WsTestClient, requestId: string, data: string | Uint8Array): Promise<ServerFrame> {
  const from = client.received.length;
  client.sendRaw(data);
  return (await client.waitFor((frame) => frame.requestId === requestId, { from, what: `the answer to ${requestId}` })).frame;
}

function errorOf(frame: ServerFrame): ErrorDetail {
  if (frame.kind.case !== "error") throw new Error(`expected an error frame, got ${frame.kind.case ?? "none"}`);
  return frame.kind.value;
}

async function stillOpen(client: WsTestClient): Promise<void> {
  expect(client.isOpen).toBe(true);
  expect((await client.request({ requestId: `alive-${client.received.length}`, request: { case: "ping", value: {} } })).kind.case).toBe("pong");
}

async function storedIn(room: string): Promise<number> {
  const rows = await db.sql<{ n: string }>("select count(*) as n from chat_messages where room_id = $1", [room]);
  return Number(rows[0]?.n ?? "NaN");
}

const SEVEN = 7 as unknown as ListDirection;

describe("enum numbers outside their enum", () => {
  it("a JSON history frame with direction 7 is VALIDATION naming history.direction", async () => {
    const client = await connect("ws-enum-alice");
    const error = errorOf(await answer(client, "h-json", '{"requestId":"h-json","history":{"room":"enum-room","direction":7}}'));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("history.direction");
    expect(error.message).toMatch(/7 is not a defined value/);
    await stillOpen(client);
  });

  it("binary history and list_notifications frames with direction 7 are refused the same way", async () => {
    const client = await connect("ws-enum-bob");
    const history = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId: "h-bin", request: { case: "history", value: { room: "enum-room", direction: SEVEN } } }));
    expect(errorOf(await answer(client, "h-bin", history))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "history.direction" });
    const inbox = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId: "n-bin", request: { case: "listNotifications", value: { direction: SEVEN } } }));
    expect(errorOf(await answer(client, "n-bin", inbox))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "list_notifications.direction" });
    await stillOpen(client);
  });
});

describe("integer fields given as strings that are not decimal integers", () => {
  const LOOSE = ["0x10", "1e3", " 5", "+5", "010", "0b1"];

  it.each(LOOSE)("history cursor_seq and page_size %j are VALIDATION naming the field", async (text) => {
    const client = await connect("ws-int-carol");
    const value = JSON.stringify(text);
    const cursor = errorOf(await answer(client, "c-1", `{"requestId":"c-1","history":{"room":"int-room","cursorSeq":${value}}}`));
    expect(cursor).toMatchObject({ category: ErrorCategory.VALIDATION, field: "history.cursor_seq" });
    const page = errorOf(await answer(client, "c-2", `{"requestId":"c-2","history":{"room":"int-room","page_size":${value}}}`));
    expect(page).toMatchObject({ category: ErrorCategory.VALIDATION, field: "history.page_size" });
    await stillOpen(client);
  });

  it("a send frame whose seq is such a string is VALIDATION naming send.seq, and nothing is stored", async () => {
    const client = await connect("ws-int-dave");
    for (const [index, text] of LOOSE.entries()) {
      const requestId = `s-${index}`;
      const frame = `{"requestId":"${requestId}","send":{"seq":${JSON.stringify(text)},"room":"int-send-room","body":"hi","clientMsgId":"m-${index}"}}`;
      expect(errorOf(await answer(client, requestId, frame))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.seq" });
    }
    await stillOpen(client);
    expect(await storedIn("int-send-room")).toBe(0);
    // The decimal form of the same frame is taken.
    const ok = await answer(client, "s-ok", '{"requestId":"s-ok","send":{"seq":"16","room":"int-send-room","body":"hi","clientMsgId":"m-ok"}}');
    expect(ok.kind.case).toBe("sendAck");
    expect(await storedIn("int-send-room")).toBe(1);
  });
});
