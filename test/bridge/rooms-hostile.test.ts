// Attacks on room permissions through the real WebSocket bridge: follows racing a kick, resumes after one, refused follows; each asserts the secure behaviour.
// Each test asserts the SECURE behaviour: a failing test is a finding.
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import { RoomKind } from "../../gen/parley/v1/rooms_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ClientFrameInit, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
let core: TestCore;
let bridge: RunningBridge;
const clients: WsTestClient[] = [];
let n = 0;
const id = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  bridge = await startBridge({
    httpAddress: "127.0.0.1:0",
    coreAddress: core.core.address,
    relayToken: TEST_RELAY_TOKEN,
    logger: new LogCapture("info").logger,
    limits: { maxConsecutiveErrors: 100_000, framesPerSecond: 100_000, frameBurst: 100_000 },
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

async function session(user: string): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${bridge.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, user) });
  clients.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

let q = 0;
const ask = (client: WsTestClient, request: ClientFrameInit["request"]): Promise<ServerFrame> => client.request({ requestId: `q${++q}`, request });

function bodiesOf(client: WsTestClient, room: string): string[] {
  return client.received.flatMap(({ frame }) => (frame.kind.case === "message" && frame.kind.value.room === room ? [frame.kind.value.body] : []));
}

describe("bridge", () => {
  it("B1: subscribes racing a kick (live-only and after_seq = head + 1) never deliver what came after the kick", async () => {
    for (let round = 0; round < 15; round++) {
      const room = id("vault");
      const alice = await session("alice");
      const mallory = await session("mallory");
      await ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room, members: ["mallory"] } });
      await ask(mallory, { case: "join", value: { room } });
      const head = (await ask(alice, { case: "getRoom", value: { room } })).kind;
      const headSeq = head.case === "getRoom" ? (head.value.room?.headSeq ?? 0n) : 0n;
      // Many subscribes in flight at once, while the kick commits.
      for (let i = 0; i < 20; i++) {
        mallory.sendJson({ requestId: `s${round}-${i}`, request: { case: "subscribe", value: { room, afterSeq: i % 2 === 0 ? undefined : headSeq + 1n } } });
      }
      await ask(alice, { case: "kick", value: { room, user: "mallory" } });
      await ask(alice, { case: "send", value: { seq: BigInt(round + 1), room, body: `after kick ${round}`, clientMsgId: id("m") } });
      await ask(mallory, { case: "ping", value: {} });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(bodiesOf(mallory, room)).toEqual([]);
      await alice.close();
      await mallory.close();
    }
  }, 60_000);

  it("B1b: a resume point past the room's head is refused (VALIDATION on subscribe.after_seq): it would skip, unchecked, what lies between", async () => {
    const room = id("vault");
    const alice = await session("alice");
    const mallory = await session("mallory");
    await ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room, members: ["mallory"] } });
    await ask(mallory, { case: "join", value: { room } });
    const head = (await ask(mallory, { case: "getRoom", value: { room } })).kind;
    const headSeq = head.case === "getRoom" ? (head.value.room?.headSeq ?? 0n) : 0n;
    const answer = await ask(mallory, { case: "subscribe", value: { room, afterSeq: headSeq + 1n } });
    expect(answer.kind.case === "error" ? { category: answer.kind.value.category, field: answer.kind.value.field } : answer.kind.case).toEqual({ category: ErrorCategory.VALIDATION, field: "subscribe.after_seq" });
    await ask(alice, { case: "send", value: { seq: 1n, room, body: "later", clientMsgId: id("m") } });
    await ask(mallory, { case: "ping", value: {} });
    expect(bodiesOf(mallory, room)).toEqual([]);
  });

  it("B2: a kicked user resuming from an old seq (subscribe, history, room_events) is refused", async () => {
    const room = id("vault");
    const alice = await session("alice");
    const mallory = await session("mallory");
    await ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room, members: ["mallory"] } });
    await ask(mallory, { case: "join", value: { room } });
    await ask(alice, { case: "kick", value: { room, user: "mallory" } });
    await ask(alice, { case: "send", value: { seq: 1n, room, body: "after", clientMsgId: id("m") } });
    const answers = await Promise.all([
      ask(mallory, { case: "subscribe", value: { room, afterSeq: 0n } }),
      ask(mallory, { case: "history", value: { room } }),
      ask(mallory, { case: "roomEvents", value: { room } }),
      ask(mallory, { case: "getRoom", value: { room } }),
      ask(mallory, { case: "listMembers", value: { room } }),
      ask(mallory, { case: "markRead", value: { room, seq: 1n } }),
      ask(mallory, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room } }),
    ]);
    expect(answers.every((a) => a.kind.case === "error")).toBe(true);
  });

  it("B3: subscribing to rooms one may not read does not keep core feeds open", async () => {
    // A user of its own: the subscribe rate is per user, and earlier tests spent mallory's.
    const mallory = await session(id("mallory"));
    const alice = await session("alice");
    const room = id("vault");
    await ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room } });
    const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => ask(mallory, { case: "subscribe", value: { room: i === 0 ? room : `nope-${i}` } })));
    expect(answers.every((a) => a.kind.case === "error")).toBe(true);
    const messages = new Set(answers.map((a) => (a.kind.case === "error" ? a.kind.value.message : "")));
    expect(messages.size).toBe(1);
  });
});
