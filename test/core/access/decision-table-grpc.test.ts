import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { decide, type Membership, ROOM_ACTIONS, type RoomAction } from "../../../src/core/access/permissions.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { startTestCore, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

// Every rule of the decision table, through the real gRPC API: for each room
// kind, each standing of the actor, each action and (for actions on another
// member) each standing of the target, a room is set up with exactly those
// standings, the action is called, and the answer must be what decide()
// says — a refusal PERMISSION_DENIED with nothing written.
//
// Changes already in effect (joining when joined, kicking the kicked) are
// answered without writing and are tested in room-service.test.ts; they are
// left out here, where every allowed call must write its event.

let db: TestDatabase;
let core: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

const KINDS = [RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT];
const STANDINGS: (Membership | undefined)[] = [
  undefined,
  { state: MembershipState.INVITED, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.LEFT, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.KICKED, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.BANNED, role: RoomRole.UNSPECIFIED },
  ...[RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER].map((role) => ({ state: MembershipState.JOINED, role })),
];
const TARGETED: ReadonlySet<RoomAction> = new Set(["invite", "kick", "ban", "unban", "set_role"]);
const ROLES = [RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER];

interface Case {
  readonly room: string;
  readonly kind: RoomKind;
  readonly actor: Membership | undefined;
  readonly action: RoomAction;
  readonly target: Membership | undefined;
  readonly newRole?: RoomRole;
  readonly newKind?: RoomKind;
}

const show = (m: Membership | undefined) => (m === undefined ? "none" : m.state === MembershipState.JOINED ? `JOINED:${RoomRole[m.role]}` : MembershipState[m.state]);

/** True when the call would find its change already in effect (those write nothing, by design). */
function settled(c: Case): boolean {
  const t = c.action === "join" || c.action === "leave" ? c.actor : c.target;
  switch (c.action) {
    case "join":
      return t?.state === MembershipState.JOINED;
    case "leave":
      return t?.state === MembershipState.LEFT || t?.state === MembershipState.KICKED;
    case "invite":
      return t?.state === MembershipState.INVITED;
    case "kick":
      return t?.state === MembershipState.KICKED;
    case "ban":
      return t?.state === MembershipState.BANNED;
    case "unban":
      return t?.state !== MembershipState.BANNED;
    case "set_role":
      return t?.state === MembershipState.JOINED && t.role === c.newRole;
    case "read":
    case "send":
    case "mark_read":
    case "update_room":
    case "change_kind":
      return false;
  }
}

function cases(): Case[] {
  const all: Case[] = [];
  let n = 0;
  for (const kind of KINDS) {
    for (const actor of STANDINGS) {
      for (const action of ROOM_ACTIONS) {
        const targets = TARGETED.has(action) ? STANDINGS : [undefined];
        for (const target of targets) {
          const roles = action === "set_role" ? ROLES : [undefined];
          for (const newRole of roles) {
            const newKind = action === "change_kind" ? (kind === RoomKind.PUBLIC ? RoomKind.PRIVATE : kind === RoomKind.PRIVATE ? RoomKind.PUBLIC : RoomKind.PRIVATE) : undefined;
            const c: Case = { room: `t-${n++}`, kind, actor, action, target, newRole, newKind };
            if (!settled(c)) all.push(c);
          }
        }
      }
    }
  }
  return all;
}

/** The rooms, each with a founding owner (so that no last-owner rule applies), the actor and the target. */
async function setUp(all: readonly Case[]): Promise<void> {
  for (let start = 0; start < all.length; start += 500) {
    const chunk = all.slice(start, start + 500);
    await db.sql(`insert into rooms (id, kind, created_by) select * from unnest($1::text[], $2::smallint[], $3::text[])`, [
      chunk.map((c) => c.room),
      chunk.map((c) => c.kind),
      chunk.map(() => "founder"),
    ]);
    const members: [string, string, number, number][] = [];
    for (const c of chunk) {
      members.push([c.room, "founder", MembershipState.JOINED, c.kind === RoomKind.DIRECT ? RoomRole.MEMBER : RoomRole.OWNER]);
      if (c.actor) members.push([c.room, "actor", c.actor.state, c.actor.role]);
      if (c.target) members.push([c.room, "target", c.target.state, c.target.role]);
    }
    await db.sql(`insert into room_members (room_id, user_id, state, role) select * from unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[])`, [
      members.map((m) => m[0]),
      members.map((m) => m[1]),
      members.map((m) => m[2]),
      members.map((m) => m[3]),
    ]);
  }
}

type Clients = { rooms: Awaited<ReturnType<TestCore["rooms"]>>; chat: Awaited<ReturnType<TestCore["chat"]>> };

function call(c: Case, { rooms, chat }: Clients): Promise<unknown> {
  const room = c.room;
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
      return rooms.invite({ room, user: "target" });
    case "kick":
      return rooms.kick({ room, user: "target" });
    case "ban":
      return rooms.ban({ room, user: "target" });
    case "unban":
      return rooms.unban({ room, user: "target" });
    case "set_role":
      return rooms.setRole({ room, user: "target", role: c.newRole ?? RoomRole.UNSPECIFIED });
    case "update_room":
      return rooms.updateRoom({ room, name: "renamed" });
    case "change_kind":
      return rooms.updateRoom({ room, kind: c.newKind ?? RoomKind.UNSPECIFIED });
  }
}

/** What a call may have written in its room: the head, the events, the messages, the members. */
async function snapshot(): Promise<Map<string, string>> {
  const rows = await db.sql<{ id: string; state: string }>(
    `select r.id, concat_ws('|', r.head_seq, r.kind, r.name,
        (select string_agg(concat(m.user_id, ':', m.state, ':', m.role, ':', m.read_seq), ',' order by m.user_id) from room_members m where m.room_id = r.id),
        (select count(*) from room_events e where e.room_id = r.id),
        (select count(*) from chat_messages c where c.room_id = r.id)) as state
     from rooms r where r.id like 't-%'`,
  );
  return new Map(rows.map((row) => [row.id, row.state]));
}

describe("the decision table through gRPC", () => {
  it("answers every kind × actor × action × target as decide() does, and a refusal writes nothing", { timeout: 240_000 }, async () => {
    const all = cases();
    await setUp(all);
    const before = await snapshot();
    const clients = { rooms: await core.rooms("actor"), chat: await core.chat("actor") };
    const outcomes = new Map<string, { allowed: boolean; category?: ErrorCategory }>();
    let next = 0;
    const worker = async () => {
      for (let index = next++; index < all.length; index = next++) {
        const c = all[index] as Case;
        try {
          await call(c, clients);
          outcomes.set(c.room, { allowed: true });
        } catch (error) {
          outcomes.set(c.room, { allowed: false, category: error instanceof ParleyError ? error.category : ErrorCategory.UNSPECIFIED });
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const after = await snapshot();

    const wrong: string[] = [];
    for (const c of all) {
      const expected = decide(c.kind, c.actor, c.action, { membership: c.target, newRole: c.newRole, newKind: c.newKind }).allowed;
      const got = outcomes.get(c.room);
      const label = `${RoomKind[c.kind]} actor=${show(c.actor)} ${c.action}${c.newRole ? `→${RoomRole[c.newRole]}` : ""} target=${show(c.target)}`;
      if (got?.allowed !== expected) wrong.push(`${label}: expected ${expected ? "allowed" : "refused"}, got ${got?.allowed === true ? "allowed" : `refused (${ErrorCategory[got?.category ?? 0]})`}`);
      else if (!expected && got.category !== ErrorCategory.PERMISSION_DENIED) wrong.push(`${label}: refused with ${ErrorCategory[got.category ?? 0]}, not PERMISSION_DENIED`);
      else if (!expected && after.get(c.room) !== before.get(c.room)) wrong.push(`${label}: refused but wrote ${before.get(c.room)} → ${after.get(c.room)}`);
      else if (expected && c.action !== "read" && c.action !== "mark_read" && after.get(c.room) === before.get(c.room)) wrong.push(`${label}: allowed but wrote nothing`);
    }
    expect(wrong).toEqual([]);
    expect(all.length).toBeGreaterThan(1500);
  });
});
