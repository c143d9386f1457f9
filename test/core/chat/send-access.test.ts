// Who may write to a room, through the real gRPC API: sends (SendMessage and
// SendBatches items, decided in parley_store_chat_batch) and read positions
// (MarkRead), under the production policy and under rooms on first use. Rooms
// and memberships are set up with plain SQL; every refusal is checked to
// have written nothing.
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatMessage, MembershipChangeSchema, type SendBatchesResponse, type SendStreamResponse } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { markReadRefused, sendRefused } from "../../../src/core/access/write-access.js";
import { MessageStore } from "../../../src/core/chat/message-store.js";
import { mintToken } from "../../../src/runtime/auth/tokens.js";
import { rejection } from "../../support/assertions.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

let db: TestDatabase;
/** The production policy: rooms exist only when made, writers must be members. */
let core: TestCore;
/** Rooms on first use (the development policy), on the same database. */
let implicit: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  implicit = await startTestCore(db, { implicitRooms: true });
});

afterAll(async () => {
  await implicit.stop();
  await core.stop();
  await db.drop();
});

type Standing = "invited" | "left" | "kicked" | "banned" | "read_only" | "member" | "admin" | "owner";

/** Each standing's room_members state and role; every test user is named after theirs. */
const STANDINGS: Readonly<Record<Standing, readonly [MembershipState, RoomRole]>> = {
  invited: [MembershipState.INVITED, RoomRole.UNSPECIFIED],
  left: [MembershipState.LEFT, RoomRole.ADMIN],
  kicked: [MembershipState.KICKED, RoomRole.MEMBER],
  banned: [MembershipState.BANNED, RoomRole.OWNER],
  read_only: [MembershipState.JOINED, RoomRole.READ_ONLY],
  member: [MembershipState.JOINED, RoomRole.MEMBER],
  admin: [MembershipState.JOINED, RoomRole.ADMIN],
  owner: [MembershipState.JOINED, RoomRole.OWNER],
};
const ALL = Object.keys(STANDINGS) as Standing[];
const KINDS = [RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT] as const;
/** For it.each: each kind with its name first (the title's %s). */
const NAMED_KINDS = KINDS.map((kind) => [RoomKind[kind].toLowerCase(), kind] as const);

/** A room made with plain SQL, with the given members (user → standing). */
async function makeRoom(room: string, kind: RoomKind, members: Readonly<Record<string, Standing>>): Promise<void> {
  await db.sql("insert into rooms (id, kind, created_by) values ($1, $2, 'owner')", [room, kind]);
  for (const [user, standing] of Object.entries(members)) {
    const [state, role] = STANDINGS[standing];
    await db.sql("insert into room_members (room_id, user_id, state, role) values ($1, $2, $3, $4)", [room, user, state, role]);
  }
}

/** A room with one member of each standing, each user named after theirs. */
async function roomOfEveryStanding(room: string, kind: RoomKind): Promise<void> {
  await makeRoom(room, kind, Object.fromEntries(ALL.map((standing) => [standing, standing])));
}

/** Everything a write to `room` could have changed, as text. */
async function written(room: string): Promise<unknown> {
  const [rooms, messages, members, events] = await Promise.all([
    db.sql("select id, head_seq::text, kind, created_by, last_event_at::text from rooms where id = $1", [room]),
    db.sql("select seq::text, sender, client_msg_id from chat_messages where room_id = $1 order by seq", [room]),
    db.sql("select user_id, state, role, read_seq::text, updated_at::text from room_members where room_id = $1 order by user_id", [room]),
    db.sql("select seq::text from room_events where room_id = $1 order by seq", [room]),
  ]);
  return { rooms, messages, members, events };
}

async function member(room: string, user: string): Promise<{ state: number; role: number; read_seq: string } | undefined> {
  const [row] = await db.sql<{ state: number; role: number; read_seq: string }>("select state, role, read_seq::text from room_members where room_id = $1 and user_id = $2", [room, user]);
  return row;
}

async function seqsOf(room: string): Promise<{ seq: string; sender: string }[]> {
  return db.sql<{ seq: string; sender: string }>("select seq::text, sender from chat_messages where room_id = $1 order by seq", [room]);
}

function expectSendRefused(error: { category: ErrorCategory; message: string } | undefined): void {
  expect(error).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, message: sendRefused().message });
}

/** Collects a SendBatches stream's answers until it ends. */
function answersOf<In>(stream: ClientDuplexStream<In, SendBatchesResponse>): { answers: SendStreamResponse[]; ended: Promise<unknown> } {
  const answers: SendStreamResponse[] = [];
  const ended = new Promise<unknown>((resolve) => {
    stream.on("data", (response: SendBatchesResponse) => answers.push(...response.answers));
    stream.on("error", resolve);
    stream.on("end", () => {
      resolve(undefined);
    });
  });
  return { answers, ended };
}

/** Resolves once `condition` holds, polling the database's own view (no sleep decides an order). */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** True while some backend of this database waits for a lock in a statement matching `pattern`. */
async function waitingOnLock(pattern: string): Promise<boolean> {
  const rows = await db.sql(
    `select 1 from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and query like $1`,
    [pattern],
  );
  return rows.length > 0;
}

describe("SendMessage under the production policy", () => {
  const refused: readonly Standing[] = ["invited", "left", "kicked", "banned", "read_only"];

  it.each(NAMED_KINDS)("refuses non-members and the invited, left, kicked, banned and read-only in a %s room, writing nothing", async (_, kind) => {
    const room = `refusals-${kind}`;
    await roomOfEveryStanding(room, kind);
    for (const user of ["stranger", ...refused]) {
      const before = await written(room);
      const chat = await core.chat(user);
      const error = await rejection(chat.sendMessage({ room, body: `from ${user}`, clientMsgId: `${room}-${user}` }));
      expectSendRefused(error);
      expect(await written(room), user).toEqual(before);
    }
    expect(await member(room, "stranger")).toBeUndefined();
  });

  it.each(NAMED_KINDS)("stores the sends of members, admins and owners of a %s room, with gapless seqs", async (_, kind) => {
    const room = `allowed-${kind}`;
    await roomOfEveryStanding(room, kind);
    const seqs: bigint[] = [];
    for (const user of ["member", "admin", "owner"] as const) {
      const chat = await core.chat(user);
      const answer = await chat.sendMessage({ room, body: `from ${user}`, clientMsgId: `${room}-${user}` });
      expect(answer.duplicate).toBe(false);
      seqs.push(answer.message?.seq ?? 0n);
      // The sender's read position moves to their own message; their standing stays.
      expect(await member(room, user)).toEqual({ state: STANDINGS[user][0], role: STANDINGS[user][1], read_seq: String(answer.message?.seq) });
    }
    expect(seqs).toEqual([1n, 2n, 3n]);
    const [head] = await db.sql<{ head_seq: string; moved: boolean }>("select head_seq::text, last_event_at > created_at as moved from rooms where id = $1", [room]);
    expect(head).toEqual({ head_seq: "3", moved: true });
  });

  it("refuses a send to a room that does not exist with the same message, creating neither the room nor a membership", async () => {
    const chat = await core.chat("member");
    const error = await rejection(chat.sendMessage({ room: "nowhere", body: "hello?", clientMsgId: "nowhere-1" }));
    expectSendRefused(error);
    expect(error.message).not.toContain("nowhere");
    expect(await written("nowhere")).toEqual({ rooms: [], messages: [], members: [], events: [] });
  });
});

describe("SendBatches under the production policy", () => {
  it("answers each refused item with the refusal, stores the allowed ones with gapless seqs, and the stream goes on", async () => {
    const room = "batch-mixed";
    await roomOfEveryStanding(room, RoomKind.PRIVATE);
    const opener = await core.chat("member");
    const users = ["member", "stranger", "admin", "invited", "left", "owner", "kicked", "banned", "read_only", "member"];
    const tokens = new Map(await Promise.all([...new Set(users)].map(async (user) => [user, await mintToken(TEST_JWT_SECRET, user)] as const)));
    const before = await written(room);
    const stream = opener.sendBatches();
    const { answers, ended } = answersOf(stream);
    stream.write({
      items: users.map((user, index) => ({ streamSeq: BigInt(index + 1), room, body: `item ${index + 1}`, clientMsgId: `${room}-${index + 1}`, actingToken: tokens.get(user) ?? "" })),
    });
    // The stream goes on after its refusals: a missing room's item, then an allowed one.
    stream.write({
      items: [
        { streamSeq: 11n, room: "batch-nowhere", body: "lost", clientMsgId: "batch-nowhere-1" },
        { streamSeq: 12n, room, body: "item 12", clientMsgId: `${room}-12` },
      ],
    });
    stream.end();
    expect(await ended).toBeUndefined();
    expect(answers.map((answer) => answer.streamSeq)).toEqual(users.map((_, index) => BigInt(index + 1)).concat([11n, 12n]));
    const storedSeqs = answers.map((answer) => (answer.result.case === "message" ? answer.result.value.seq : undefined));
    expect(storedSeqs).toEqual([1n, undefined, 2n, undefined, undefined, 3n, undefined, undefined, undefined, 4n, undefined, 5n]);
    for (const answer of answers.filter((candidate) => candidate.result.case === "error")) {
      expectSendRefused(answer.result.value as { category: ErrorCategory; message: string });
    }
    expect(await seqsOf(room)).toEqual([
      { seq: "1", sender: "member" },
      { seq: "2", sender: "admin" },
      { seq: "3", sender: "owner" },
      { seq: "4", sender: "member" },
      { seq: "5", sender: "member" },
    ]);
    // Nothing of the refused: no message, no membership, standings unchanged.
    const after = (await written(room)) as { members: { user_id: string }[] };
    const unchanged = (rows: { user_id: string }[]) => rows.filter((row) => !["member", "admin", "owner"].includes(row.user_id));
    expect(unchanged(after.members)).toEqual(unchanged((before as { members: { user_id: string }[] }).members));
    expect(await member(room, "stranger")).toBeUndefined();
    expect(await written("batch-nowhere")).toEqual({ rooms: [], messages: [], members: [], events: [] });
  });
});

describe("the log decides, not timing", () => {
  it("sends waiting on a ban's transaction are all refused once it commits, and none takes a seq after the ban", async () => {
    const room = "ban-ordering";
    await makeRoom(room, RoomKind.PUBLIC, { victim: "member", bystander: "member", owner: "owner" });
    const victim = await core.chat("victim");
    const bystander = await core.chat("bystander");
    const earlier = await victim.sendMessage({ room, body: "before the ban", clientMsgId: "victim-before" });
    expect(earlier.message?.seq).toBe(1n);
    // Warm the acting token's verification so that the stream's items need no await.
    const victimToken = await mintToken(TEST_JWT_SECRET, "victim");

    // The ban, as the room service writes it: the room's row locked first,
    // the head moved, the event and the membership written; held open.
    const banner = new pg.Client({ connectionString: db.url });
    await banner.connect();
    let sends: Promise<unknown>[] = [];
    try {
      await banner.query("begin");
      const locked = await banner.query<{ head_seq: string }>("select head_seq::text from rooms where id = $1 for update", [room]);
      const banSeq = BigInt(locked.rows[0]?.head_seq ?? "0") + 1n;
      await banner.query("update rooms set head_seq = $2, last_event_at = now() where id = $1", [room, banSeq.toString()]);
      const change = create(MembershipChangeSchema, { user: "victim", state: MembershipState.BANNED, previousState: MembershipState.JOINED, previousRole: RoomRole.MEMBER });
      await banner.query("insert into room_events (room_id, seq, type, actor, payload) values ($1, $2, 11, 'owner', $3)", [room, banSeq.toString(), Buffer.from(toBinary(MembershipChangeSchema, change))]);
      await banner.query("update room_members set state = $3, role = $4, updated_at = now() where room_id = $1 and user_id = $2", [room, "victim", MembershipState.BANNED, RoomRole.UNSPECIFIED]);

      const unary = [1, 2, 3].map((i) => victim.sendMessage({ room, body: `after ${i}`, clientMsgId: `victim-after-${i}` }).then(() => undefined, (error: unknown) => error));
      const stream = core.chat("victim").then((chat) => {
        const batches = chat.sendBatches();
        const collected = answersOf(batches);
        batches.write({ items: [4, 5].map((i) => ({ streamSeq: BigInt(i), room, body: `after ${i}`, clientMsgId: `victim-after-${i}`, actingToken: victimToken })) });
        batches.end();
        return collected.ended.then(() => collected.answers);
      });
      const allowed = bystander.sendMessage({ room, body: "after the ban, allowed", clientMsgId: "bystander-after" });
      sends = [...unary, stream, allowed];
      await waitFor("the sends to wait on the room's lock", () => waitingOnLock("%parley_store_chat_batch%"));
      await banner.query("commit");

      for (const outcome of await Promise.all(unary)) expectSendRefused(outcome as { category: ErrorCategory; message: string });
      const streamed = await stream;
      expect(streamed.map((answer) => answer.streamSeq)).toEqual([4n, 5n]);
      for (const answer of streamed) {
        expect(answer.result.case).toBe("error");
        expectSendRefused(answer.result.value as { category: ErrorCategory; message: string });
      }
      expect((await allowed).message?.seq).toBe(banSeq + 1n);
      expect(await seqsOf(room)).toEqual([
        { seq: "1", sender: "victim" },
        { seq: (banSeq + 1n).toString(), sender: "bystander" },
      ]);
      expect(await member(room, "victim")).toMatchObject({ state: MembershipState.BANNED, read_seq: "1" });
    } finally {
      await Promise.allSettled(sends);
      await banner.query("rollback").catch(() => undefined);
      await banner.end();
    }

    // A repeat of what was stored before the ban is still its original.
    const repeat = await victim.sendMessage({ room, body: "before the ban", clientMsgId: "victim-before" });
    expect(repeat.duplicate).toBe(true);
    expect(repeat.message).toEqual(earlier.message);
    expect(await db.sql("select 1 from chat_messages where sender = 'victim'")).toHaveLength(1);
  });

  it("a read position waiting on a ban's transaction is refused once it commits", async () => {
    const room = "ban-mark-read";
    await makeRoom(room, RoomKind.PUBLIC, { reader: "member", owner: "owner" });
    const owner = await core.chat("owner");
    await owner.sendMessage({ room, body: "one", clientMsgId: `${room}-1` });
    const reader = await core.chat("reader");
    const banner = new pg.Client({ connectionString: db.url });
    await banner.connect();
    let marking: Promise<unknown> = Promise.resolve();
    try {
      await banner.query("begin");
      await banner.query("select 1 from rooms where id = $1 for update", [room]);
      await banner.query("update rooms set head_seq = head_seq + 1 where id = $1", [room]);
      await banner.query("update room_members set state = $2, role = 0 where room_id = $1 and user_id = 'reader'", [room, MembershipState.BANNED]);
      marking = reader.markRead({ room, seq: 1n }).then(() => undefined, (error: unknown) => error);
      await waitFor("the mark_read to wait on the member's row", () => waitingOnLock("%room_members%"));
      await banner.query("commit");
      expect(await marking).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, message: markReadRefused().message });
      expect(await member(room, "reader")).toMatchObject({ state: MembershipState.BANNED, read_seq: "0" });
    } finally {
      await marking;
      await banner.query("rollback").catch(() => undefined);
      await banner.end();
    }
  });
});

describe("MarkRead under the production policy", () => {
  it.each(NAMED_KINDS)("refuses non-members and the invited, left, kicked and banned of a %s room, writing nothing; joined members of every role may", async (_, kind) => {
    const room = `mark-read-${kind}`;
    await roomOfEveryStanding(room, kind);
    const owner = await core.chat("owner");
    for (let i = 1; i <= 3; i++) await owner.sendMessage({ room, body: `m${i}`, clientMsgId: `${room}-${i}` });
    for (const user of ["stranger", "invited", "left", "kicked", "banned"]) {
      const before = await written(room);
      const chat = await core.chat(user);
      const error = await rejection(chat.markRead({ room, seq: 2n }));
      expect(error, user).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, message: markReadRefused().message });
      expect(await written(room), user).toEqual(before);
    }
    for (const user of ["read_only", "member", "admin"]) {
      const chat = await core.chat(user);
      expect(await chat.markRead({ room, seq: 2n })).toMatchObject({ readSeq: 2n, headSeq: 3n, unreadCount: 1n });
      expect(await member(room, user)).toMatchObject({ read_seq: "2" });
    }
  });

  it("refuses a room that does not exist with the same message, creating nothing", async () => {
    const chat = await core.chat("member");
    const error = await rejection(chat.markRead({ room: "unread-nowhere", seq: 0n }));
    expect(error).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, message: markReadRefused().message });
    expect(await written("unread-nowhere")).toEqual({ rooms: [], messages: [], members: [], events: [] });
  });

  it("answers a refused caller PERMISSION_DENIED even for a seq beyond the head (the head is not theirs to learn)", async () => {
    const room = "mark-read-beyond";
    await roomOfEveryStanding(room, RoomKind.PRIVATE);
    const error = await rejection((await core.chat("stranger")).markRead({ room, seq: 99n }));
    expect(error.category).toBe(ErrorCategory.PERMISSION_DENIED);
    const beyond = await rejection((await core.chat("member")).markRead({ room, seq: 99n }));
    expect(beyond).toMatchObject({ category: ErrorCategory.VALIDATION, field: "seq" });
    expect(await member(room, "member")).toMatchObject({ read_seq: "0" });
  });
});

describe("rooms on first use (the development policy)", () => {
  it("a send to a missing room creates it public, its first sender its owner; later senders join as members; no room event", async () => {
    const room = "first-use";
    const alice = await implicit.chat("alice");
    const bob = await implicit.chat("bob");
    expect((await alice.sendMessage({ room, body: "first", clientMsgId: `${room}-alice` })).message?.seq).toBe(1n);
    expect((await bob.sendMessage({ room, body: "second", clientMsgId: `${room}-bob` })).message?.seq).toBe(2n);
    expect(await db.sql("select kind, created_by, head_seq::text from rooms where id = $1", [room])).toEqual([{ kind: RoomKind.PUBLIC, created_by: "alice", head_seq: "2" }]);
    expect(await member(room, "alice")).toEqual({ state: MembershipState.JOINED, role: RoomRole.OWNER, read_seq: "1" });
    expect(await member(room, "bob")).toEqual({ state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: "2" });
    expect(await db.sql("select 1 from room_events where room_id = $1", [room])).toEqual([]);
  });

  it("in one batch, each new room's first sender in batch order is its owner and the others its members", async () => {
    const store = new MessageStore("test", { implicitRooms: true });
    const message = (room: string, sender: string, key: string) => ({ id: crypto.randomUUID(), room, sender, body: key, clientMsgId: key });
    const outcomes = await store.storeBatch(implicit.core.orm.em.fork(), [
      message("batch-new-b", "dora", "dora-1"),
      message("batch-new-a", "erin", "erin-1"),
      message("batch-new-b", "erin", "erin-2"),
      message("batch-new-a", "dora", "dora-2"),
    ]);
    expect(outcomes.map((outcome) => (outcome.kind === "stored" ? `${outcome.message.room}:${outcome.message.seq}` : outcome.kind))).toEqual([
      "batch-new-b:1",
      "batch-new-a:1",
      "batch-new-b:2",
      "batch-new-a:2",
    ]);
    expect(await db.sql("select id, created_by from rooms where id like 'batch-new-%' order by id")).toEqual([
      { id: "batch-new-a", created_by: "erin" },
      { id: "batch-new-b", created_by: "dora" },
    ]);
    expect(await db.sql("select room_id, user_id, state, role from room_members where room_id like 'batch-new-%' order by room_id, user_id")).toEqual([
      { room_id: "batch-new-a", user_id: "dora", state: MembershipState.JOINED, role: RoomRole.MEMBER },
      { room_id: "batch-new-a", user_id: "erin", state: MembershipState.JOINED, role: RoomRole.OWNER },
      { room_id: "batch-new-b", user_id: "dora", state: MembershipState.JOINED, role: RoomRole.OWNER },
      { room_id: "batch-new-b", user_id: "erin", state: MembershipState.JOINED, role: RoomRole.MEMBER },
    ]);
  });

  it("joins a public room's non-members, invited, left and kicked as members; the banned and read-only stay refused", async () => {
    const room = "implicit-public";
    await roomOfEveryStanding(room, RoomKind.PUBLIC);
    let seq = 0n;
    for (const user of ["stranger", "invited", "left", "kicked"]) {
      const answer = await (await implicit.chat(user)).sendMessage({ room, body: `from ${user}`, clientMsgId: `${room}-${user}` });
      expect(answer.message?.seq, user).toBe(++seq);
      expect(await member(room, user), user).toEqual({ state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: seq.toString() });
    }
    for (const user of ["banned", "read_only"]) {
      const before = await written(room);
      expectSendRefused(await rejection((await implicit.chat(user)).sendMessage({ room, body: `from ${user}`, clientMsgId: `${room}-${user}` })));
      expect(await written(room), user).toEqual(before);
    }
    expect(await db.sql("select 1 from room_events where room_id = $1", [room])).toEqual([]);
  });

  it.each(NAMED_KINDS.filter(([, kind]) => kind !== RoomKind.PUBLIC))("joins no one to a %s room: non-members and the invited are refused and nothing is written", async (_, kind) => {
    const room = `implicit-closed-${kind}`;
    await roomOfEveryStanding(room, kind);
    for (const user of ["stranger", "invited", "left", "kicked", "banned"]) {
      const before = await written(room);
      const chat = await implicit.chat(user);
      expectSendRefused(await rejection(chat.sendMessage({ room, body: `from ${user}`, clientMsgId: `${room}-${user}` })));
      expect(await rejection(chat.markRead({ room, seq: 0n }))).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED });
      expect(await written(room), user).toEqual(before);
    }
    expect((await (await implicit.chat("member")).sendMessage({ room, body: "member", clientMsgId: `${room}-member` })).message?.seq).toBe(1n);
  });

  it("mark_read creates a missing room with the caller its owner, joins a public room's non-members, refuses the banned", async () => {
    const alice = await implicit.chat("alice");
    expect(await alice.markRead({ room: "read-first", seq: 0n })).toMatchObject({ readSeq: 0n, headSeq: 0n, unreadCount: 0n });
    expect(await db.sql("select kind, created_by from rooms where id = 'read-first'")).toEqual([{ kind: RoomKind.PUBLIC, created_by: "alice" }]);
    expect(await member("read-first", "alice")).toEqual({ state: MembershipState.JOINED, role: RoomRole.OWNER, read_seq: "0" });

    const room = "implicit-read";
    await roomOfEveryStanding(room, RoomKind.PUBLIC);
    await (await implicit.chat("owner")).sendMessage({ room, body: "one", clientMsgId: `${room}-1` });
    expect(await (await implicit.chat("stranger")).markRead({ room, seq: 1n })).toMatchObject({ readSeq: 1n, unreadCount: 0n });
    expect(await member(room, "stranger")).toEqual({ state: MembershipState.JOINED, role: RoomRole.MEMBER, read_seq: "1" });
    const before = await written(room);
    const error = await rejection((await implicit.chat("banned")).markRead({ room, seq: 1n }));
    expect(error).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, message: markReadRefused().message });
    expect(await written(room)).toEqual(before);
    expect(await db.sql("select 1 from room_events where room_id in ('read-first', $1)", [room])).toEqual([]);
  });

  it("answers a repeat of a message as a duplicate whatever the sender's standing now", async () => {
    const room = "implicit-repeat";
    const chat = await implicit.chat("repeater");
    const first = await chat.sendMessage({ room, body: "once", clientMsgId: `${room}-1` });
    await db.sql("update room_members set state = $2 where room_id = $1 and user_id = 'repeater'", [room, MembershipState.BANNED]);
    const again = await chat.sendMessage({ room, body: "once", clientMsgId: `${room}-1` });
    expect(again).toMatchObject({ duplicate: true, message: first.message as ChatMessage });
    expectSendRefused(await rejection(chat.sendMessage({ room, body: "twice", clientMsgId: `${room}-2` })));
  });
});
