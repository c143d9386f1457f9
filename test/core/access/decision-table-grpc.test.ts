import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { startTestCore, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { ACTOR, type Case, crossDisagreements, inLanes, type Outcome, tableDisagreements } from "../../support/decision-cases.js";

// Every rule of the decision table, through the real gRPC API: for each room
// kind, each standing of the actor, each action and (for actions on another
// member) each standing of the target, a room is set up with exactly those
// standings (test/support/decision-cases.ts), the action is called, and the
// answer must be what decide() says — a refusal PERMISSION_DENIED with
// nothing written. The same cases go through the WebSocket bridge in
// test/bridge/decision-table-ws.test.ts.

let db: TestDatabase;
let core: TestCore;
let clients: Clients;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  clients = { rooms: await core.rooms(ACTOR), chat: await core.chat(ACTOR) };
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

type Clients = { rooms: Awaited<ReturnType<TestCore["rooms"]>>; chat: Awaited<ReturnType<TestCore["chat"]>> };

function call(c: Case, { rooms, chat }: Clients): Promise<unknown> {
  const { room, user } = c;
  switch (c.action) {
    case "read":
      return Promise.all([rooms.getRoom({ room }), chat.listRoomEvents({ room }), chat.listMessages({ room }), rooms.listMembers({ room })]);
    case "send":
      return chat.sendMessage({ room, body: "hello", clientMsgId: `send-${room}` });
    case "mark_read":
      return chat.markRead({ room, seq: 0n });
    case "join":
      return rooms.join({ room });
    case "leave":
      return rooms.leave({ room });
    case "invite":
      return rooms.invite({ room, user });
    case "kick":
      return rooms.kick({ room, user });
    case "ban":
      return rooms.ban({ room, user });
    case "unban":
      return rooms.unban({ room, user });
    case "set_role":
      return rooms.setRole({ room, user, role: c.newRole ?? RoomRole.UNSPECIFIED });
    case "update_room":
      return rooms.updateRoom({ room, name: "renamed" });
    case "change_kind":
      return rooms.updateRoom({ room, kind: c.newKind ?? RoomKind.UNSPECIFIED });
  }
}

/** Calls every case, 16 at a time, and returns what each answered. */
async function outcomesOf(all: readonly Case[]): Promise<Map<Case, Outcome>> {
  const outcomes = new Map<Case, Outcome>();
  await inLanes(all, 16, async (c) => {
    try {
      await call(c, clients);
      outcomes.set(c, { allowed: true });
    } catch (error) {
      outcomes.set(c, error instanceof ParleyError ? { allowed: false, category: error.category, message: error.message } : { allowed: false, category: ErrorCategory.UNSPECIFIED, detail: String(error) });
    }
  });
  return outcomes;
}

describe("the decision table through gRPC", () => {
  it("answers every kind × actor × action × target as decide() does, and a refusal writes nothing", { timeout: 240_000 }, async () => {
    expect(await tableDisagreements(db, outcomesOf)).toEqual([]);
  });

  it("refuses acting on another room, on other users' direct room, and on a user of another room, writing nothing anywhere; hidden rooms answer as missing ones", async () => {
    expect(await crossDisagreements(db, outcomesOf)).toEqual([]);
  });
});
