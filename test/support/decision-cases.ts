// The cases of the decision table as rooms in a real database, shared by the
// tests that call them through each API (gRPC, WebSocket): one room per
// case set up with plain SQL, attempts across rooms and users, a snapshot of
// everything a call may write, and the comparison of the answers with
// decide(). Each test supplies only how its API makes the calls.
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";
import { decide, type Membership, ROOM_ACTIONS, type RoomAction } from "../../src/core/access/permissions.js";
import { directRoomId } from "../../src/core/rooms/room-service.js";
import type { TestDatabase } from "./database.js";

/** The user every case acts as; the API clients of a test are this user's. */
export const ACTOR = "actor";

const KINDS = [RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT];
const ROLES = [RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER];
const STANDINGS: (Membership | undefined)[] = [
  undefined,
  { state: MembershipState.INVITED, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.LEFT, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.KICKED, role: RoomRole.UNSPECIFIED },
  { state: MembershipState.BANNED, role: RoomRole.UNSPECIFIED },
  ...ROLES.map((role) => ({ state: MembershipState.JOINED, role })),
];
const TARGETED: ReadonlySet<RoomAction> = new Set(["invite", "kick", "ban", "unban", "set_role"]);

/** One call of the actor: an action in `room`, as the table sees it (the actor's and the target's standing there). */
export interface Case {
  readonly room: string;
  readonly kind: RoomKind;
  readonly actor: Membership | undefined;
  readonly action: RoomAction;
  /** The user acted on (invite, kick, ban, unban, set_role). */
  readonly user: string;
  /** That user's standing in `room`. */
  readonly target: Membership | undefined;
  readonly newRole?: RoomRole;
  readonly newKind?: RoomKind;
  /** What a cross-room or cross-user case is about. */
  readonly about?: string;
}

/** What one case's call(s) answered. `detail` says more when the answer was neither the expected one nor an error. */
export interface Outcome {
  readonly allowed: boolean;
  readonly category?: ErrorCategory;
  /** The refusal's words (of each call, when a case makes several). */
  readonly message?: string;
  readonly detail?: string;
}

const show = (m: Membership | undefined) => (m === undefined ? "none" : m.state === MembershipState.JOINED ? `JOINED:${RoomRole[m.role]}` : MembershipState[m.state]);

/** A case in words, for failure messages. */
function describeCase(c: Case): string {
  const target = TARGETED.has(c.action) ? ` target=${c.user}:${show(c.target)}` : "";
  return `${c.about === undefined ? "" : `${c.about}: `}${c.room} ${RoomKind[c.kind]} actor=${show(c.actor)} ${c.action}${c.newRole ? `→${RoomRole[c.newRole]}` : ""}${target}`;
}

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

/** The kind change_kind asks for: the other group kind (a direct room asks for private). */
const otherKind = (kind: RoomKind) => (kind === RoomKind.PRIVATE ? RoomKind.PUBLIC : RoomKind.PRIVATE);

/**
 * Every kind × actor standing × action × target standing (× new role), each
 * in a room of its own named `t-<n>`. Changes already in effect (joining
 * when joined, kicking the kicked) are answered without writing and are
 * tested in room-service.test.ts; they are left out here, where every
 * allowed call must write its event.
 */
function tableCases(): Case[] {
  const all: Case[] = [];
  let n = 0;
  for (const kind of KINDS) {
    for (const actor of STANDINGS) {
      for (const action of ROOM_ACTIONS) {
        const targets = TARGETED.has(action) ? STANDINGS : [undefined];
        for (const target of targets) {
          for (const newRole of action === "set_role" ? ROLES : [undefined]) {
            const newKind = action === "change_kind" ? otherKind(kind) : undefined;
            const c: Case = { room: `t-${n++}`, kind, actor, action, user: "target", target, newRole, newKind };
            if (!settled(c)) all.push(c);
          }
        }
      }
    }
  }
  return all;
}

/** The rooms of `all`, each with a founding owner (so that no last-owner rule applies), the actor and the target. */
async function setUpTable(db: TestDatabase, all: readonly Case[]): Promise<void> {
  for (let start = 0; start < all.length; start += 500) {
    const chunk = all.slice(start, start + 500);
    const members: Row[] = [];
    for (const c of chunk) {
      members.push([c.room, "founder", MembershipState.JOINED, c.kind === RoomKind.DIRECT ? RoomRole.MEMBER : RoomRole.OWNER]);
      if (c.actor) members.push([c.room, ACTOR, c.actor.state, c.actor.role]);
      if (c.target) members.push([c.room, c.user, c.target.state, c.target.role]);
    }
    await insert(
      db,
      chunk.map((c) => ({ id: c.room, kind: c.kind, createdBy: "founder" })),
      members,
    );
  }
}

type Row = [room: string, user: string, state: MembershipState, role: RoomRole];

async function insert(db: TestDatabase, rooms: readonly { id: string; kind: RoomKind; createdBy: string }[], members: readonly Row[]): Promise<void> {
  await db.sql(`insert into rooms (id, kind, created_by) select * from unnest($1::text[], $2::smallint[], $3::text[])`, [rooms.map((r) => r.id), rooms.map((r) => r.kind), rooms.map((r) => r.createdBy)]);
  await db.sql(`insert into room_members (room_id, user_id, state, role) select * from unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[])`, [
    members.map((m) => m[0]),
    members.map((m) => m[1]),
    members.map((m) => m[2]),
    members.map((m) => m[3]),
  ]);
}

const joinedAs = (role: RoomRole): Membership => ({ state: MembershipState.JOINED, role });

/** The rooms of the cross-room and cross-user cases (see crossCases). */
const HOME = "x-home";
/** A private room of someone else's, where the actor has no standing. */
export const OTHER_PRIVATE = "x-other-private";
const OTHER_PUBLIC = "x-other-public";
/** The direct room of yuri and zoe, under the id core gives it. */
const THEIR_DM = directRoomId(["yuri", "zoe"]);

/** Who a cross case acts on: a user and their standing in the case's room. */
type On = readonly [user: string, standing: Membership | undefined];

/**
 * Attempts across rooms and users, every one of which the table refuses:
 * the owner of one room (x-home) acting on rooms where they have no standing
 * (a private and a public room, on a member there, or a banned user for
 * unban), on the direct room of two other users, and in their own room on a
 * user who is a member of another room only. Set up by setUpCross; none may
 * write anything anywhere. Attempts already in effect (unbanning a user who
 * is not banned) are left out, as in tableCases.
 */
function crossCases(): Case[] {
  const all: Case[] = [];
  const add = (about: string, room: string, kind: RoomKind, actor: Membership | undefined, on: { member: On; banned?: On }, actions: readonly RoomAction[]) => {
    for (const action of actions) {
      const [user, target] = action === "unban" && on.banned !== undefined ? on.banned : on.member;
      for (const newRole of action === "set_role" ? ROLES : [undefined]) {
        const newKind = action === "change_kind" ? otherKind(kind) : undefined;
        const c: Case = { room, kind, actor, action, user, target, newRole, newKind, about };
        if (!settled(c) && !decide(kind, actor, action, { membership: target, newRole, newKind }).allowed) all.push(c);
      }
    }
  };
  const groupRoom = { member: ["elsewhere", joinedAs(RoomRole.MEMBER)], banned: ["outcast", { state: MembershipState.BANNED, role: RoomRole.UNSPECIFIED }] } as const;
  add("owner of another room, on a private room", OTHER_PRIVATE, RoomKind.PRIVATE, undefined, groupRoom, ROOM_ACTIONS);
  // What a public room lets anyone do (read, join) is not a refusal and is left out.
  add("owner of another room, on a public room", OTHER_PUBLIC, RoomKind.PUBLIC, undefined, groupRoom, ROOM_ACTIONS);
  add("a stranger, on the direct room of two others", THEIR_DM, RoomKind.DIRECT, undefined, { member: ["zoe", joinedAs(RoomRole.MEMBER)] }, ROOM_ACTIONS);
  add("an owner, on a user of another room", HOME, RoomKind.PRIVATE, joinedAs(RoomRole.OWNER), { member: ["elsewhere", undefined] }, ["kick", "set_role"]);
  return all;
}

/** The rooms of crossCases: the actor owns x-home; "elsewhere" is a member of the other two group rooms only, "outcast" banned from them. */
async function setUpCross(db: TestDatabase): Promise<void> {
  await insert(
    db,
    [
      { id: HOME, kind: RoomKind.PRIVATE, createdBy: ACTOR },
      { id: OTHER_PRIVATE, kind: RoomKind.PRIVATE, createdBy: "founder" },
      { id: OTHER_PUBLIC, kind: RoomKind.PUBLIC, createdBy: "founder" },
      { id: THEIR_DM, kind: RoomKind.DIRECT, createdBy: "yuri" },
    ],
    [
      [HOME, ACTOR, MembershipState.JOINED, RoomRole.OWNER],
      [OTHER_PRIVATE, "founder", MembershipState.JOINED, RoomRole.OWNER],
      [OTHER_PRIVATE, "elsewhere", MembershipState.JOINED, RoomRole.MEMBER],
      [OTHER_PRIVATE, "outcast", MembershipState.BANNED, RoomRole.UNSPECIFIED],
      [OTHER_PUBLIC, "founder", MembershipState.JOINED, RoomRole.OWNER],
      [OTHER_PUBLIC, "elsewhere", MembershipState.JOINED, RoomRole.MEMBER],
      [OTHER_PUBLIC, "outcast", MembershipState.BANNED, RoomRole.UNSPECIFIED],
      [THEIR_DM, "yuri", MembershipState.JOINED, RoomRole.MEMBER],
      [THEIR_DM, "zoe", MembershipState.JOINED, RoomRole.MEMBER],
    ],
  );
}

/**
 * The same call on a room that does not exist, for each case whose actor
 * has no standing in a room they may not read: core must answer those
 * alike, so that the names of private rooms do not leak.
 */
function missingTwins(all: readonly Case[]): Map<Case, Case> {
  const twins = new Map<Case, Case>();
  for (const c of all) if (c.actor === undefined && !decide(c.kind, undefined, "read").allowed) twins.set(c, { ...c, room: `x-missing-${twins.size}` });
  return twins;
}

/** Where a refusal in a hidden room reads differently from the refusal of its twin on a missing room. */
function leaks(twins: ReadonlyMap<Case, Case>, outcomes: ReadonlyMap<Case, Outcome>): string[] {
  const wrong: string[] = [];
  for (const [c, twin] of twins) {
    const [hidden, missing] = [outcomes.get(c), outcomes.get(twin)];
    if (missing?.allowed !== false || missing.category !== ErrorCategory.PERMISSION_DENIED || !missing.message) wrong.push(`${describeCase(twin)}: not PERMISSION_DENIED with words`);
    else if (hidden?.message !== missing.message) wrong.push(`${describeCase(c)}: answered "${hidden?.message ?? ""}", a missing room "${missing.message ?? ""}"`);
  }
  return wrong;
}

/** What a call may have written, per room: the head, kind and name, the members, the events, the messages. */
async function snapshot(db: TestDatabase): Promise<Map<string, string>> {
  const rows = await db.sql<{ id: string; state: string }>(
    `select r.id, concat_ws('|', r.head_seq, r.kind, r.name, r.topic,
        (select string_agg(concat(m.user_id, ':', m.state, ':', m.role, ':', m.read_seq), ',' order by m.user_id) from room_members m where m.room_id = r.id),
        (select count(*) from room_events e where e.room_id = r.id),
        (select count(*) from chat_messages c where c.room_id = r.id)) as state
     from rooms r`,
  );
  return new Map(rows.map((row) => [row.id, row.state]));
}

/**
 * Where the outcomes differ from decide(): an answer other than the table's,
 * a refusal that is not PERMISSION_DENIED or wrote something in its room, an
 * allowed change that wrote nothing. Empty when all is as it should be.
 */
function disagreements(all: readonly Case[], outcomes: ReadonlyMap<Case, Outcome>, before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] {
  const wrong: string[] = [];
  for (const c of all) {
    const expected = decide(c.kind, c.actor, c.action, { membership: c.target, newRole: c.newRole, newKind: c.newKind }).allowed;
    const got = outcomes.get(c);
    const label = describeCase(c);
    const answer = got === undefined ? "no answer" : got.allowed ? "allowed" : `refused (${ErrorCategory[got.category ?? 0]})`;
    const detail = got?.detail === undefined ? "" : `: ${got.detail}`;
    if (got?.allowed !== expected) wrong.push(`${label}: expected ${expected ? "allowed" : "refused"}, got ${answer}${detail}`);
    else if (!expected && got.category !== ErrorCategory.PERMISSION_DENIED) wrong.push(`${label}: ${answer}, not PERMISSION_DENIED${detail}`);
    else if (!expected && after.get(c.room) !== before.get(c.room)) wrong.push(`${label}: refused but wrote ${before.get(c.room)} → ${after.get(c.room)}`);
    else if (expected && c.action !== "read" && c.action !== "mark_read" && after.get(c.room) === before.get(c.room)) wrong.push(`${label}: allowed but wrote nothing`);
  }
  return wrong;
}

/** Calls every case through one API, and returns what each answered. */
type CallAll = (cases: readonly Case[]) => Promise<ReadonlyMap<Case, Outcome>>;

/**
 * The table through one API: sets up a room per case, calls every case,
 * and returns where the answers or the database disagree with decide()
 * (empty when all agree).
 */
export async function tableDisagreements(db: TestDatabase, callAll: CallAll): Promise<string[]> {
  const all = tableCases();
  await setUpTable(db, all);
  const before = await snapshot(db);
  const outcomes = await callAll(all);
  const wrong = disagreements(all, outcomes, before, await snapshot(db));
  if (all.length < 1500) wrong.push(`only ${all.length} cases`);
  return wrong;
}

/**
 * The cross-room and cross-user attempts through one API, with their twins
 * on missing rooms, and `alsoTry` (attempts of that API alone, returning
 * what went wrong): every one refused, nothing written in any room, hidden
 * rooms answered in the words of missing ones. Returns what went wrong.
 */
export async function crossDisagreements(db: TestDatabase, callAll: CallAll, alsoTry: () => Promise<string[]> = () => Promise.resolve([])): Promise<string[]> {
  await setUpCross(db);
  const all = crossCases();
  const twins = missingTwins(all);
  const before = await snapshot(db);
  const outcomes = await callAll([...all, ...twins.values()]);
  const also = await alsoTry();
  const after = await snapshot(db);
  const wrong = [...disagreements(all, outcomes, before, after), ...leaks(twins, outcomes), ...also];
  for (const [room, state] of after) if (before.get(room) !== state) wrong.push(`${room} changed: ${before.get(room) ?? "(no room)"} → ${state}`);
  if (all.length < 40 || twins.size < 20) wrong.push(`only ${all.length} cases and ${twins.size} twins`);
  return wrong;
}

/** Runs `work` on every item, `width` at a time; `lane` (0 to width-1) names the worker, for per-worker clients. */
export async function inLanes<T>(items: readonly T[], width: number, work: (item: T, lane: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (index: number) => {
    for (let i = next++; i < items.length; i = next++) await work(items[i] as T, index);
  };
  await Promise.all(Array.from({ length: width }, (_, index) => lane(index)));
}
