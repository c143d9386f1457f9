// Every rule of the decision table through the WebSocket bridge: the cases of
// test/core/access/decision-table-grpc.test.ts (test/support/decision-cases.ts),
// each sent as the ClientFrames of its action to a real bridge in front of a
// real core and PostgreSQL. An allowed action is answered by its own frame, a
// refused one by an `error` frame with PERMISSION_DENIED and nothing
// written, and every connection stays open through all the refusals.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import type { ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import { RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { ACTOR, type Case, crossDisagreements, inLanes, OTHER_PRIVATE, type Outcome, tableDisagreements } from "../support/decision-cases.js";
import { LogCapture } from "../support/logs.js";
import { type ClientFrameInit, WsTestClient } from "../support/ws-client.js";

/**
 * Connections of the actor, each taking one case at a time. The bridge's
 * limits stay at their defaults: a case has at most five requests in flight
 * (max_inflight_requests 32), and a connection sends a few hundred frames in
 * all, fewer than the frame burst (2,000), so the frame rate limit cannot
 * bite however fast the answers come.
 */
const LANES = 8;

let db: TestDatabase;
let core: TestCore;
let bridge: RunningBridge;
const bridgeLogs = new LogCapture("info");

/** One connection and what its frames need: strictly increasing send seqs, unique request ids. */
interface Lane {
  readonly client: WsTestClient;
  sendSeq: bigint;
  requests: number;
}

let lanes: Lane[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  bridge = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger });
  const token = await mintToken(TEST_JWT_SECRET, ACTOR);
  lanes = await Promise.all(
    Array.from({ length: LANES }, async () => {
      const client = await WsTestClient.connect(`http://${bridge.address}`, "/ws", { token });
      await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
      return { client, sendSeq: 0n, requests: 0 };
    }),
  );
});

afterAll(async () => {
  await Promise.all(lanes.map((lane) => lane.client.close()));
  await bridge.stop(500);
  await core.stop();
  await db.drop();
});

type FrameKind = NonNullable<ServerFrame["kind"]["case"]>;

/** A request of a case and the frame that answers it when allowed. */
interface Ask {
  readonly request: ClientFrameInit["request"];
  readonly answer: FrameKind;
}

/** The frames of a case's action: read is every way of reading a room. */
function asks(c: Case, lane: Lane): Ask[] {
  const { room, user } = c;
  switch (c.action) {
    case "read":
      return [
        { request: { case: "subscribe", value: { room } }, answer: "caughtUp" },
        { request: { case: "history", value: { room } }, answer: "history" },
        { request: { case: "roomEvents", value: { room } }, answer: "roomEvents" },
        { request: { case: "getRoom", value: { room } }, answer: "getRoom" },
        { request: { case: "listMembers", value: { room } }, answer: "listMembers" },
      ];
    case "send":
      return [{ request: { case: "send", value: { seq: ++lane.sendSeq, room, body: "hello", clientMsgId: `send-${room}` } }, answer: "sendAck" }];
    case "mark_read":
      return [{ request: { case: "markRead", value: { room, seq: 0n } }, answer: "markRead" }];
    case "join":
      return [{ request: { case: "join", value: { room } }, answer: "join" }];
    case "leave":
      return [{ request: { case: "leave", value: { room } }, answer: "leave" }];
    case "invite":
      return [{ request: { case: "invite", value: { room, user } }, answer: "invite" }];
    case "kick":
      return [{ request: { case: "kick", value: { room, user } }, answer: "kick" }];
    case "ban":
      return [{ request: { case: "ban", value: { room, user } }, answer: "ban" }];
    case "unban":
      return [{ request: { case: "unban", value: { room, user } }, answer: "unban" }];
    case "set_role":
      return [{ request: { case: "setRole", value: { room, user, role: c.newRole ?? RoomRole.UNSPECIFIED } }, answer: "setRole" }];
    case "update_room":
      return [{ request: { case: "updateRoom", value: { room, name: "renamed" } }, answer: "updateRoom" }];
    case "change_kind":
      return [{ request: { case: "updateRoom", value: { room, kind: c.newKind ?? RoomKind.UNSPECIFIED } }, answer: "updateRoom" }];
  }
}

function ask(lane: Lane, request: ClientFrameInit["request"]): Promise<ServerFrame> {
  return lane.client.request({ requestId: `r${++lane.requests}`, request });
}

/**
 * Sends a case's frames at once and reads their answers as one outcome:
 * allowed when each is its own frame, refused when each is an error (of
 * one category); anything else is a refusal of no category, with details.
 * A follow that was allowed is ended again, so that no connection comes
 * near max_subscriptions.
 */
async function run(c: Case, lane: Lane): Promise<Outcome> {
  const wanted = asks(c, lane);
  const frames = await Promise.all(wanted.map((w) => ask(lane, w.request)));
  const subscribed = frames.some((frame) => frame.kind.case === "caughtUp");
  if (subscribed) {
    const ended = await ask(lane, { case: "unsubscribe", value: { room: c.room } });
    if (ended.kind.case !== "unsubscribed") return { allowed: false, detail: `unsubscribe answered ${ended.kind.case ?? "none"}` };
  }
  const errors = frames.flatMap((frame) => (frame.kind.case === "error" ? [frame.kind.value] : []));
  if (frames.every((frame, i) => frame.kind.case === wanted[i]?.answer)) return { allowed: true };
  const categories = new Set(errors.map((e) => e.category));
  const message = [...new Set(errors.map((e) => e.message))].sort().join(" | ");
  if (errors.length === frames.length && categories.size === 1) return { allowed: false, category: errors[0]?.category, message };
  const each = frames.map((frame, i) => `${wanted[i]?.request?.case ?? "?"} → ${frame.kind.case === "error" ? ErrorCategory[frame.kind.value.category] : (frame.kind.case ?? "none")}`);
  return { allowed: false, category: ErrorCategory.UNSPECIFIED, message, detail: each.join(", ") };
}

async function outcomesOf(all: readonly Case[]): Promise<Map<Case, Outcome>> {
  const outcomes = new Map<Case, Outcome>();
  await inLanes(all, LANES, async (c, index) => {
    outcomes.set(c, await run(c, lanes[index] as Lane));
  });
  return outcomes;
}

/** Every connection is open, answers a ping, and was sent nothing it did not ask for (no event, no revocation, no go_away). */
async function expectLanesHealthy(): Promise<void> {
  for (const lane of lanes) {
    expect(lane.client.closeInfo).toBeUndefined();
    expect((await ask(lane, { case: "ping", value: {} })).kind.case).toBe("pong");
    expect(lane.client.frames.filter((frame) => frame.requestId === "" && frame.kind.case !== "welcome")).toEqual([]);
  }
}

describe("the decision table through the WebSocket bridge", () => {
  it("answers every kind × actor × action × target as decide() does, a refusal is an error frame with nothing written, and the connections stay open", { timeout: 60_000 }, async () => {
    expect(await tableDisagreements(db, outcomesOf)).toEqual([]);
    await expectLanesHealthy();
  });

  it("refuses acting on another room, on other users' direct room, and on a user of another room, writing nothing anywhere; hidden rooms answer as missing ones", async () => {
    // Taking another user's room id too (test/core/rooms/room-service.test.ts has it through gRPC).
    const takeTheirRoom = async () => {
      const taken = await ask(lanes[0] as Lane, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room: OTHER_PRIVATE, name: "mine now" } });
      return taken.kind.case === "error" && taken.kind.value.category === ErrorCategory.PERMISSION_DENIED ? [] : [`create_room on ${OTHER_PRIVATE} answered ${taken.kind.case ?? "none"}`];
    };
    expect(await crossDisagreements(db, outcomesOf, takeTheirRoom)).toEqual([]);
    await expectLanesHealthy();
  });
});
