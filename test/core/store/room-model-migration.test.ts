// The room model's migration on a database with today's data: every room
// becomes public, its senders and readers its joined members, its first
// sender (or first reader) its owner, and nothing is lost.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { migrate, migratorOf, openOrm, type Orm } from "../../../src/core/store/orm.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

let db: TestDatabase;
let orm: Orm;

beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ databaseUrl: db.url });
  // The schema as it was before the room model, with rows in it.
  await (await migratorOf(orm)).up({ to: "Migration20261129000000_chat_store_answers" });
  await db.sql(`insert into rooms (id, head_seq) values ('lobby', 3), ('quiet', 0)`);
  await db.sql(`insert into chat_messages (id, room_id, seq, sender, body, client_msg_id) values
    (gen_random_uuid(), 'lobby', 1, 'alice', 'first', 'a1'),
    (gen_random_uuid(), 'lobby', 2, 'bob', 'second', 'b1'),
    (gen_random_uuid(), 'lobby', 3, 'alice', 'third', 'a2')`);
  await db.sql(`insert into room_members (room_id, user_id, read_seq, updated_at) values
    ('lobby', 'carol', 2, now()), ('lobby', 'bob', 1, now()), ('quiet', 'erin', 0, now()), ('quiet', 'dave', 0, now() - interval '1 day')`);
  await migrate(orm);
});

afterAll(async () => {
  await orm.close();
  await db.drop();
});

describe("the room model's migration of existing rooms", () => {
  it("makes every room public, its first sender (or, without messages, its first reader) its creator", async () => {
    const rooms = await db.sql<{ id: string; kind: number; name: string; created_by: string; head_seq: string }>("select id, kind, name, created_by, head_seq from rooms order by id");
    expect(rooms).toEqual([
      { id: "lobby", kind: RoomKind.PUBLIC, name: "", created_by: "alice", head_seq: "3" },
      { id: "quiet", kind: RoomKind.PUBLIC, name: "", created_by: "dave", head_seq: "0" },
    ]);
  });

  it("joins every sender and reader as a member, the creator as owner; a sender's read position is at least their last message", async () => {
    const members = await db.sql<{ room_id: string; user_id: string; state: number; role: number; read_seq: string }>(
      "select room_id, user_id, state, role, read_seq from room_members order by room_id, user_id",
    );
    expect(members).toEqual([
      { room_id: "lobby", user_id: "alice", state: MembershipState.JOINED, role: RoomRole.OWNER, read_seq: "3" },
      { room_id: "lobby", user_id: "bob", state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: "2" },
      { room_id: "lobby", user_id: "carol", state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: "2" },
      { room_id: "quiet", user_id: "dave", state: MembershipState.JOINED, role: RoomRole.OWNER, read_seq: "0" },
      { room_id: "quiet", user_id: "erin", state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: "0" },
    ]);
  });

  it("keeps every message, in its seq", async () => {
    const messages = await db.sql<{ seq: string; sender: string; body: string }>("select seq, sender, body from chat_messages where room_id = 'lobby' order by seq");
    expect(messages).toEqual([
      { seq: "1", sender: "alice", body: "first" },
      { seq: "2", sender: "bob", body: "second" },
      { seq: "3", sender: "alice", body: "third" },
    ]);
  });
});
