// Rooms through the WebSocket bridge, against a real core (rooms on first use
// off, as in production) and a real PostgreSQL: every room operation as a
// frame, the refusals (with nothing written), following a room (authorized
// per connection, room events in their seq places, replayed on resume) and
// the bridge's own revocation of a follow when a user loses the right to read.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage, RoomEvent } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { type ErrorDetail, ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import type { ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ClientFrameInit, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
let core: TestCore;
/** A second core instance on the same database: the second bridge's. */
let secondCore: TestCore;
let bridge: RunningBridge;
/** A second bridge, in front of the second core: what it delivers crossed instances through NOTIFY. */
let second: RunningBridge;
const bridgeLogs = new LogCapture("info");
const clients: WsTestClient[] = [];
let unique = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  secondCore = await startTestCore(db, { implicitRooms: false });
  const options = { httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger, limits: { maxConsecutiveErrors: 1_000 } };
  bridge = await startBridge(options);
  second = await startBridge({ ...options, coreAddress: secondCore.core.address });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

afterAll(async () => {
  await bridge.stop(500);
  await second.stop(500);
  await core.stop();
  await secondCore.stop();
  await db.drop();
});

/** A room id no other test uses. */
function roomId(what: string): string {
  return `${what}-${process.pid}-${++unique}`;
}

/** A `/ws` session of `user` on `on` (the first bridge by default), once welcomed. */
async function session(user: string, on: RunningBridge = bridge): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${on.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, user) });
  clients.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

let requestNo = 0;

/** Sends one request (JSON, or binary) and returns the frame that answers it. */
function ask(client: WsTestClient, request: ClientFrameInit["request"], binary = false): Promise<ServerFrame> {
  return client.request({ requestId: `q${++requestNo}`, request }, { binary });
}

type FrameKind = NonNullable<ServerFrame["kind"]["case"]>;
type AnswerOf<K extends FrameKind> = Extract<ServerFrame["kind"], { case: K }>["value"];

/** The answer's value when it is the `kind` expected; throws with the error otherwise. */
async function expectAnswer<K extends FrameKind>(answer: Promise<ServerFrame>, kind: K): Promise<AnswerOf<K>> {
  const frame = await answer;
  if (frame.kind.case !== kind) throw new Error(`expected ${kind}, got ${frame.kind.case ?? "none"}${frame.kind.case === "error" ? `: ${frame.kind.value.message}` : ""}`);
  return frame.kind.value as AnswerOf<K>;
}

async function expectError(answer: Promise<ServerFrame>): Promise<ErrorDetail> {
  return expectAnswer(answer, "error");
}

/** Creates a room as `owner` through the bridge. */
async function createRoom(owner: WsTestClient, kind: RoomKind, members: string[] = []): Promise<string> {
  const room = roomId(RoomKind[kind].toLowerCase());
  const created = await expectAnswer(ask(owner, { case: "createRoom", value: { kind, room, name: `the ${room}`, members } }), "createRoom");
  expect(created.room?.id).toBe(room);
  return room;
}

async function subscribe(client: WsTestClient, room: string, afterSeq?: bigint): Promise<{ requestId: string; caughtUp: bigint }> {
  const requestId = `sub${++requestNo}`;
  const frame = await client.request({ requestId, request: { case: "subscribe", value: { room, afterSeq } } });
  if (frame.kind.case !== "caughtUp") throw new Error(`expected caught_up, got ${frame.kind.case ?? "none"}${frame.kind.case === "error" ? `: ${frame.kind.value.message}` : ""}`);
  return { requestId, caughtUp: frame.kind.value.headSeq };
}

let sendSeq = 0n;

async function send(client: WsTestClient, room: string, body: string): Promise<ChatMessage> {
  const ack = await expectAnswer(ask(client, { case: "send", value: { seq: ++sendSeq, room, body, clientMsgId: `m-${process.pid}-${sendSeq}` } }), "sendAck");
  if (ack.message === undefined) throw new Error("send_ack without a message");
  return ack.message;
}

/** The seqs of a room's log as `client` received them: message and room_event frames, in arrival order. */
function logOf(client: WsTestClient, room: string): { seq: bigint; kind: string }[] {
  const out: { seq: bigint; kind: string }[] = [];
  for (const { frame } of client.received) {
    if (frame.kind.case === "message" && frame.kind.value.room === room) out.push({ seq: frame.kind.value.seq, kind: "message" });
    if (frame.kind.case === "roomEvent" && frame.kind.value.room === room) out.push({ seq: frame.kind.value.seq, kind: frame.kind.value.event.case ?? "none" });
  }
  return out;
}

/** Whether the seqs of `log` go up by exactly 1 from entry to entry. */
function gapless(log: readonly { seq: bigint }[]): boolean {
  return log.every((entry, i) => i === 0 || entry.seq === (log[i - 1]?.seq ?? 0n) + 1n);
}

/** Waits until `client` has seen the room's log up to `seq`. */
function logUpTo(client: WsTestClient, room: string, seq: bigint): Promise<{ seq: bigint; kind: string }[]> {
  return client.until(() => {
    const log = logOf(client, room);
    return log.some((entry) => entry.seq >= seq) ? log : undefined;
  }, { what: `the log of ${room} up to ${seq}` });
}

/** The room's log as core holds it, read by its owner. */
async function storedLog(owner: string, room: string): Promise<RoomEvent[]> {
  const chat = await core.chat(owner);
  return (await chat.listRoomEvents({ room, pageSize: 500 })).events;
}

async function membersRows(room: string): Promise<{ user_id: string; state: number; role: number }[]> {
  return db.sql("select user_id, state, role from room_members where room_id = $1 order by user_id", [room]);
}

/** The frame is pushed, or answers nothing the client asked after `from`. */
function framesAfter(client: WsTestClient, from: number): ServerFrame[] {
  return client.received.slice(from).map((r) => r.frame);
}

describe("room operations as frames", () => {
  it("each operation is the RoomService call of its name, answered by its own case with the request id, in JSON and binary", async () => {
    const alice = await session("alice");
    const bob = await session("bob");
    const room = roomId("ops");
    for (const binary of [false, true]) {
      const id = `${room}-${binary ? "b" : "j"}`;
      const created = await expectAnswer(ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room: id, name: "Ops", topic: "on call" } }, binary), "createRoom");
      expect(created.existing).toBe(false);
      expect(created.room).toMatchObject({ id, kind: RoomKind.PRIVATE, name: "Ops", topic: "on call", createdBy: "alice", myState: MembershipState.JOINED, myRole: RoomRole.OWNER });
      // The same create again (a resend) finds the room.
      expect((await expectAnswer(ask(alice, { case: "createRoom", value: { kind: RoomKind.PRIVATE, room: id, name: "Ops" } }, binary), "createRoom")).existing).toBe(true);

      const invited = await expectAnswer(ask(alice, { case: "invite", value: { room: id, user: "bob" } }, binary), "invite");
      expect(invited.member).toMatchObject({ user: "bob", state: MembershipState.INVITED });
      expect(invited.event?.event.case).toBe("membership");
      const joined = await expectAnswer(ask(bob, { case: "join", value: { room: id } }, binary), "join");
      expect(joined.member).toMatchObject({ user: "bob", state: MembershipState.JOINED, role: RoomRole.MEMBER });
      // Already in effect: answered, nothing written.
      expect((await expectAnswer(ask(bob, { case: "join", value: { room: id } }, binary), "join")).event).toBeUndefined();
      expect((await expectAnswer(ask(alice, { case: "setRole", value: { room: id, user: "bob", role: RoomRole.ADMIN } }, binary), "setRole")).member?.role).toBe(RoomRole.ADMIN);
      const updated = await expectAnswer(ask(alice, { case: "updateRoom", value: { room: id, topic: "off call" } }, binary), "updateRoom");
      expect(updated.room).toMatchObject({ name: "Ops", topic: "off call" });
      expect((await expectAnswer(ask(bob, { case: "getRoom", value: { room: id } }, binary), "getRoom")).room).toMatchObject({ id, myState: MembershipState.JOINED, myRole: RoomRole.ADMIN, memberCount: 2n });
      const members = await expectAnswer(ask(bob, { case: "listMembers", value: { room: id } }, binary), "listMembers");
      expect(members.members.map((m) => [m.user, m.state, m.role])).toEqual([
        ["alice", MembershipState.JOINED, RoomRole.OWNER],
        ["bob", MembershipState.JOINED, RoomRole.ADMIN],
      ]);
      await send(alice, id, "one for bob");
      const mine = await expectAnswer(ask(bob, { case: "listMyRooms", value: { pageSize: 200 } }, binary), "listMyRooms");
      const listed = mine.rooms.find((r) => r.id === id);
      expect(listed).toMatchObject({ kind: RoomKind.PRIVATE, myRole: RoomRole.ADMIN, unreadCount: 1n });
      expect(listed?.lastMessage?.body).toBe("one for bob");
      expect((await expectAnswer(ask(alice, { case: "kick", value: { room: id, user: "bob", reason: "rotation" } }, binary), "kick")).member?.state).toBe(MembershipState.KICKED);
      expect((await expectAnswer(ask(alice, { case: "ban", value: { room: id, user: "bob" } }, binary), "ban")).member?.state).toBe(MembershipState.BANNED);
      expect((await expectAnswer(ask(alice, { case: "unban", value: { room: id, user: "bob" } }, binary), "unban")).member?.state).toBe(MembershipState.LEFT);
      await expectAnswer(ask(alice, { case: "invite", value: { room: id, user: "carol" } }, binary), "invite");
      const carol = await session("carol");
      expect((await expectAnswer(ask(carol, { case: "leave", value: { room: id } }, binary), "leave")).member?.state).toBe(MembershipState.LEFT);

      // The log, as the frames read it: the creation, each change and the message, with no gap.
      const page = await expectAnswer(ask(alice, { case: "roomEvents", value: { room: id, pageSize: 100 } }, binary), "roomEvents");
      expect(page.events.map((e) => e.seq)).toEqual(page.events.map((_, i) => BigInt(i + 1)));
      expect(page.headSeq).toBe(page.events.at(-1)?.seq);
      expect(page.events.map((e) => (e.event.case === "membership" ? `${e.event.value.user}:${MembershipState[e.event.value.state]}` : e.event.case))).toEqual([
        "settings",
        "alice:JOINED",
        "bob:INVITED",
        "bob:JOINED",
        "bob:JOINED", // the role change
        "settings", // the topic
        "message",
        "bob:KICKED",
        "bob:BANNED",
        "bob:LEFT",
        "carol:INVITED",
        "carol:LEFT",
      ]);
      const kick = page.events.find((e) => e.event.case === "membership" && e.event.value.state === MembershipState.KICKED);
      expect(kick?.actor).toBe("alice");
      expect(kick?.event.case === "membership" && kick.event.value.reason).toBe("rotation");
      const backward = await expectAnswer(ask(alice, { case: "roomEvents", value: { room: id, direction: ListDirection.BACKWARD, pageSize: 2 } }, binary), "roomEvents");
      expect(backward.events.map((e) => e.seq)).toEqual([page.headSeq, page.headSeq - 1n]);
      expect(backward.hasMore).toBe(true);
    }
  });

  it("room_events without a room reads the room of a /ws/chat/{room} path, like history", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    const onRoute = await WsTestClient.connect(`http://${bridge.address}`, `/ws/chat/${room}`, { token: await mintToken(TEST_JWT_SECRET, "alice") });
    clients.push(onRoute);
    await onRoute.waitFor((frame) => frame.kind.case === "caughtUp", { what: "caught_up" });
    const page = await expectAnswer(ask(onRoute, { case: "roomEvents", value: {} }), "roomEvents");
    expect(page.events[0]?.room).toBe(room);
    expect(page.events[0]?.event.case).toBe("settings");
    // On /ws there is no room to default to.
    expect((await expectError(ask(alice, { case: "roomEvents", value: {} }))).field).toBe("room_events.room");
  });

  it("refusals are PERMISSION_DENIED (the same words for a private room and a missing one), and nothing is written", async () => {
    const alice = await session("alice");
    const carol = await session("carol");
    const room = await createRoom(alice, RoomKind.PRIVATE, ["bob"]);
    const missing = roomId("missing");
    const before = { log: await storedLog("alice", room), members: await membersRows(room) };

    const hidden = await expectError(ask(carol, { case: "getRoom", value: { room } }));
    const absent = await expectError(ask(carol, { case: "getRoom", value: { room: missing } }));
    expect(hidden.category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect(absent.category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect(hidden.message).toBe(absent.message);
    expect(hidden.message).not.toContain(room);

    for (const request of [
      { case: "join", value: { room } },
      { case: "invite", value: { room, user: "carol" } },
      { case: "kick", value: { room, user: "bob" } },
      { case: "ban", value: { room, user: "alice" } },
      { case: "setRole", value: { room, user: "carol", role: RoomRole.OWNER } },
      { case: "updateRoom", value: { room, kind: RoomKind.PUBLIC } },
      { case: "listMembers", value: { room } },
      { case: "roomEvents", value: { room } },
      { case: "history", value: { room } },
      { case: "markRead", value: { room, seq: 1n } },
      { case: "send", value: { seq: ++sendSeq, room, body: "let me in", clientMsgId: `carol-${process.pid}-${sendSeq}` } },
    ] as const satisfies readonly ClientFrameInit["request"][]) {
      const error = await expectError(ask(carol, request));
      expect(error.category, request.case).toBe(ErrorCategory.PERMISSION_DENIED);
    }
    // Bob, invited, may not yet do what members do either.
    const bob = await session("bob");
    expect((await expectError(ask(bob, { case: "invite", value: { room, user: "carol" } }))).category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect((await expectError(ask(bob, { case: "send", value: { seq: ++sendSeq, room, body: "early", clientMsgId: `bob-${process.pid}-${sendSeq}` } }))).category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect((await expectError(ask(bob, { case: "markRead", value: { room, seq: 1n } }))).category).toBe(ErrorCategory.PERMISSION_DENIED);

    expect(await storedLog("alice", room)).toEqual(before.log);
    expect(await membersRows(room)).toEqual(before.members);
    expect(await db.sql("select 1 from rooms where id = $1", [missing])).toEqual([]);
    expect(carol.isOpen && bob.isOpen).toBe(true);
  });

  it("malformed and hostile room frames are VALIDATION naming the field in the frame; the socket stays open", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    const cases: [string, string][] = [
      [`{"requestId":"v1","createRoom":{"kind":7}}`, "create_room.kind"],
      [`{"requestId":"v2","createRoom":{"kind":"ROOM_KIND_PUBLIC","room":"no spaces"}}`, "create_room.room"],
      [`{"requestId":"v3","createRoom":{"kind":"ROOM_KIND_PUBLIC","name":"${"n".repeat(129)}"}}`, "create_room.name"],
      [`{"requestId":"v4","createRoom":{"kind":"ROOM_KIND_DIRECT","members":[]}}`, "create_room.members"],
      [`{"requestId":"v5","getRoom":{"room":""}}`, "get_room.room"],
      [`{"requestId":"v6","updateRoom":{"room":"${room}"}}`, "update_room"],
      [`{"requestId":"v7","updateRoom":{"room":"${room}","kind":"ROOM_KIND_SIDEWAYS"}}`, "update_room.kind"],
      [`{"requestId":"v8","invite":{"room":"${room}","user":"not a user!"}}`, "invite.user"],
      [`{"requestId":"v9","kick":{"room":"${room}","user":"bob","reason":"${"r".repeat(513)}"}}`, "kick.reason"],
      [`{"requestId":"v10","ban":{"room":"${room}","user":"bob","sender":"mallory"}}`, "ban.sender"],
      [`{"requestId":"v11","setRole":{"room":"${room}","user":"bob","role":9}}`, "set_role.role"],
      [`{"requestId":"v12","setRole":{"room":"${room}","user":"bob"}}`, "set_role.role"],
      [`{"requestId":"v13","listMembers":{"room":"${room}","pageSize":501}}`, "list_members.page_size"],
      [`{"requestId":"v14","listMembers":{"room":"${room}","states":[6]}}`, "list_members.states"],
      [`{"requestId":"v15","listMyRooms":{"pageToken":"not-a-token"}}`, "list_my_rooms.page_token"],
      [`{"requestId":"v16","listMyRooms":{"pageSize":"0x10"}}`, "list_my_rooms.page_size"],
      [`{"requestId":"v17","roomEvents":{"room":"${room}","pageSize":-1}}`, "room_events.page_size"],
      [`{"requestId":"v18","roomEvents":{"room":"${room}","cursorSeq":"-1"}}`, "room_events.cursor_seq"],
      [`{"requestId":"v19","join":{"room":"${room}","user":"mallory"}}`, "join.user"],
      [`{"requestId":"v20","leave":{"room":"${room}"},"unban":{"room":"${room}","user":"bob"}}`, ""],
    ];
    for (const [text, field] of cases) {
      const from = alice.received.length;
      alice.sendRaw(text);
      const requestId = /"requestId":"(v\d+)"/.exec(text)?.[1] ?? "";
      const { frame } = await alice.waitFor((f) => f.requestId === requestId, { from, what: `the answer to ${requestId}` });
      const error = frame.kind.case === "error" ? frame.kind.value : undefined;
      expect(error?.category, text).toBe(ErrorCategory.VALIDATION);
      if (field !== "") expect(error?.field ?? "", text).toMatch(new RegExp(`^${field.replace(/\./g, "\\.")}`));
    }
    // Nothing was written by any of them: the room's log is its creation alone.
    expect((await storedLog("alice", room)).map((e) => e.event.case)).toEqual(["settings", "membership"]);
    expect((await expectAnswer(ask(alice, { case: "ping", value: {} }), "pong"))).toBeDefined();
  });
});

describe("following a room", () => {
  it("a user who may not read the room is refused the subscribe, with the same words as for a missing room, and follows nothing", async () => {
    const alice = await session("alice");
    const carol = await session("carol");
    const room = await createRoom(alice, RoomKind.PRIVATE);
    const hidden = await expectError(carol.request({ requestId: "s-hidden", request: { case: "subscribe", value: { room, afterSeq: 0n } } }));
    const absent = await expectError(carol.request({ requestId: "s-absent", request: { case: "subscribe", value: { room: roomId("missing") } } }));
    expect(hidden.category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect(hidden.message).toBe(absent.message);
    await subscribe(alice, room);
    const sent = await send(alice, room, "members only");
    await logUpTo(alice, room, sent.seq);
    // Carol's connection asked for nothing since: a pong proves nothing of the room is on its way.
    await expectAnswer(ask(carol, { case: "ping", value: {} }), "pong");
    expect(logOf(carol, room)).toEqual([]);
    // A banned user is refused a public room too.
    const open = await createRoom(alice, RoomKind.PUBLIC);
    await expectAnswer(ask(alice, { case: "ban", value: { room: open, user: "carol" } }), "ban");
    expect((await expectError(carol.request({ requestId: "s-banned", request: { case: "subscribe", value: { room: open } } }))).category).toBe(ErrorCategory.PERMISSION_DENIED);
  });

  it("membership and settings changes arrive as room_event frames in their seq places; replay and live count them (seq +1 across both)", async () => {
    const alice = await session("alice");
    const bob = await session("bob");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    await send(alice, room, "first");
    await expectAnswer(ask(bob, { case: "join", value: { room } }), "join");
    await send(bob, room, "second");
    // Replay from the start, then live.
    const watcher = await session("watcher");
    const { caughtUp } = await subscribe(watcher, room, 0n);
    expect(caughtUp).toBe(5n);
    expect(logOf(watcher, room)).toEqual([
      { seq: 1n, kind: "settings" },
      { seq: 2n, kind: "membership" },
      { seq: 3n, kind: "message" },
      { seq: 4n, kind: "membership" },
      { seq: 5n, kind: "message" },
    ]);
    await expectAnswer(ask(alice, { case: "updateRoom", value: { room, name: "renamed" } }), "updateRoom");
    await send(alice, room, "third");
    await expectAnswer(ask(alice, { case: "setRole", value: { room, user: "bob", role: RoomRole.READ_ONLY } }), "setRole");
    const live = await logUpTo(watcher, room, 8n);
    expect(live.map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    expect(live.slice(5).map((e) => e.kind)).toEqual(["settings", "message", "membership"]);
    const settings = watcher.frames.find((f) => f.kind.case === "roomEvent" && f.kind.value.seq === 6n);
    expect(settings?.kind.case === "roomEvent" && settings.kind.value.event.case === "settings" && settings.kind.value.event.value.name).toBe("renamed");
    // Resume after a membership event: nothing repeated, nothing skipped.
    const resumed = await session("watcher");
    const again = await subscribe(resumed, room, 6n);
    expect(again.caughtUp).toBe(8n);
    expect(logOf(resumed, room)).toEqual([
      { seq: 7n, kind: "message" },
      { seq: 8n, kind: "membership" },
    ]);
  });

  it("a live-only subscribe starts at GetRoom's head: events committed between the check and the feed are not lost", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    const watcher = await session("watcher");
    const { caughtUp } = await subscribe(watcher, room);
    expect(caughtUp).toBe(2n);
    await send(alice, room, "after");
    expect(await logUpTo(watcher, room, 3n)).toEqual([{ seq: 3n, kind: "message" }]);
  });
});

describe("revocation in the bridge", () => {
  /**
   * Bob follows `room` on `bobs` connections (and another room, to show his
   * socket stays useful); `revoke` takes his right to read; then alice
   * sends once more. Checks, on each of Bob's connections: the revoking
   * event came, then error and unsubscribed with the reason, within 1 s,
   * then nothing more of the room; the other room still flows.
   */
  async function revokes(options: { kind: RoomKind; setUp: (alice: WsTestClient, room: string) => Promise<void>; revoke: (alice: WsTestClient, bob: WsTestClient, room: string) => Promise<unknown>; why: RegExp; eventKind: string }): Promise<void> {
    const alice = await session("alice");
    const room = await createRoom(alice, options.kind);
    const other = await createRoom(alice, RoomKind.PUBLIC);
    await options.setUp(alice, room);
    const bobs = [await session("bob"), await session("bob", second)];
    const bobControl = await session("bob");
    const subscriptions = [];
    for (const bob of bobs) {
      subscriptions.push(await subscribe(bob, room));
      await subscribe(bob, other);
    }
    const before = await send(alice, room, "before");
    for (const bob of bobs) await logUpTo(bob, room, before.seq);

    const started = performance.now();
    await options.revoke(alice, bobControl, room);
    const log = await storedLog("alice", room);
    const revoking = log.at(-1);
    if (revoking === undefined) throw new Error("no revoking event");
    expect(revoking.event.case).toBe(options.eventKind);

    await subscribe(alice, room);
    const after = await send(alice, room, "after the revocation");
    await logUpTo(alice, room, after.seq);
    for (const [index, bob] of bobs.entries()) {
      const requestId = subscriptions[index]?.requestId ?? "";
      const { frame: ended } = await bob.waitFor((f) => f.kind.case === "unsubscribed" && f.kind.value.room === room, { what: "unsubscribed", timeoutMs: 5_000 });
      expect(performance.now() - started, "revoked within 1 s").toBeLessThan(1_000);
      const frames = bob.frames;
      const endAt = frames.indexOf(ended);
      const errorFrame = frames[endAt - 1];
      const eventFrame = frames.slice(0, endAt - 1).findLast((f) => f.kind.case === "roomEvent" && f.kind.value.room === room);
      expect(eventFrame?.kind.case === "roomEvent" && eventFrame.kind.value.seq).toBe(revoking.seq);
      expect(errorFrame?.requestId).toBe(requestId);
      const error = errorFrame?.kind.case === "error" ? errorFrame.kind.value : undefined;
      expect(error?.category).toBe(ErrorCategory.PERMISSION_DENIED);
      expect(error?.message).toMatch(options.why);
      expect(error?.message).toContain(room);
      expect(ended.requestId).toBe(requestId);
      expect(ended.kind.case === "unsubscribed" && ended.kind.value.reason?.message).toBe(error?.message);
      // Nothing of the room after the end: a pong, asked for after alice saw her message, comes first.
      const from = bob.received.length;
      await expectAnswer(ask(bob, { case: "ping", value: {} }), "pong");
      expect(logOf(bob, room).filter((e) => e.seq > revoking.seq)).toEqual([]);
      expect(framesAfter(bob, from).filter((f) => f.kind.case === "error")).toEqual([]);
      // The socket still serves the user's other rooms.
      const elsewhere = await send(alice, other, `still here ${index}`);
      await logUpTo(bob, other, elsewhere.seq);
      expect(bob.isOpen).toBe(true);
    }
  }

  it("kicked from a private room: the kick, then error (kicked) and unsubscribed; nothing after; on two bridges in front of two cores", async () => {
    await revokes({
      kind: RoomKind.PRIVATE,
      setUp: async (alice, room) => {
        await expectAnswer(ask(alice, { case: "invite", value: { room, user: "bob" } }), "invite");
        const bob = await session("bob");
        await expectAnswer(ask(bob, { case: "join", value: { room } }), "join");
      },
      revoke: (alice, _bob, room) => expectAnswer(ask(alice, { case: "kick", value: { room, user: "bob", reason: "off topic" } }), "kick"),
      why: /kicked/,
      eventKind: "membership",
    });
  });

  it("banned from a public room (which he reads without being a member)", async () => {
    await revokes({
      kind: RoomKind.PUBLIC,
      setUp: () => Promise.resolve(),
      revoke: (alice, _bob, room) => expectAnswer(ask(alice, { case: "ban", value: { room, user: "bob" } }), "ban"),
      why: /banned/,
      eventKind: "membership",
    });
  });

  it("left a private room himself (from another connection)", async () => {
    await revokes({
      kind: RoomKind.PRIVATE,
      setUp: async (alice, room) => {
        await expectAnswer(ask(alice, { case: "invite", value: { room, user: "bob" } }), "invite");
        const bob = await session("bob");
        await expectAnswer(ask(bob, { case: "join", value: { room } }), "join");
      },
      revoke: (_alice, bob, room) => expectAnswer(ask(bob, { case: "leave", value: { room } }), "leave"),
      why: /left the room/,
      eventKind: "membership",
    });
  });

  it("a public room he reads without being a member becomes private", async () => {
    await revokes({
      kind: RoomKind.PUBLIC,
      setUp: () => Promise.resolve(),
      revoke: (alice, _bob, room) => expectAnswer(ask(alice, { case: "updateRoom", value: { room, kind: RoomKind.PRIVATE } }), "updateRoom"),
      why: /became private/,
      eventKind: "settings",
    });
  });

  it("under load: a kick in the middle of a stream of sends ends Bob's follows on two bridges (in front of two cores) exactly at the kick; the other followers get everything", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PRIVATE, ["bob", "dave"]);
    for (const user of ["bob", "dave"]) await expectAnswer(ask(await session(user), { case: "join", value: { room } }), "join");
    const bobs = [await session("bob"), await session("bob", second)];
    const others = [await session("alice"), await session("dave"), await session("dave", second)];
    for (const client of [...bobs, ...others]) await subscribe(client, room);
    // Within max_inflight_sends (256): every send is stored.
    const total = 240;
    const sender = await session("alice");
    const acks: Promise<ServerFrame>[] = [];
    let kick: Promise<unknown> | undefined;
    for (let i = 0; i < total; i++) {
      acks.push(ask(sender, { case: "send", value: { seq: ++sendSeq, room, body: `load ${i}`, clientMsgId: `load-${process.pid}-${sendSeq}` } }));
      // Once a quarter is stored, the kick joins the stream of sends.
      if (i === total / 4) {
        await acks[i];
        kick = expectAnswer(ask(alice, { case: "kick", value: { room, user: "bob" } }), "kick");
      }
    }
    await kick;
    const started = performance.now();
    const answers = await Promise.all(acks);
    expect(answers.filter((frame) => frame.kind.case !== "sendAck")).toEqual([]);
    const last = answers.reduce((max, frame) => (frame.kind.case === "sendAck" && (frame.kind.value.message?.seq ?? 0n) > max ? (frame.kind.value.message?.seq ?? 0n) : max), 0n);
    const kickSeq = (await storedLog("alice", room)).find((e) => e.event.case === "membership" && e.event.value.user === "bob" && e.event.value.state === MembershipState.KICKED)?.seq;
    if (kickSeq === undefined) throw new Error("no kick in the log");
    expect(kickSeq).toBeLessThan(last);
    for (const bob of bobs) {
      await bob.waitFor((f) => f.kind.case === "unsubscribed" && f.kind.value.room === room, { what: "unsubscribed" });
      expect(performance.now() - started).toBeLessThan(1_000);
      await expectAnswer(ask(bob, { case: "ping", value: {} }), "pong");
    }
    for (const other of others) {
      const log = await logUpTo(other, room, last);
      expect(gapless(log)).toBe(true);
    }
    for (const bob of bobs) {
      const log = logOf(bob, room);
      // Every event up to the kick, in order, and not one after it.
      expect(log.at(-1)?.seq).toBe(kickSeq);
      expect(gapless(log)).toBe(true);
    }
  });

  it("changes that leave the right to read end nothing: leaving a public room, a role change, another user's kick, a rename", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    const bob = await session("bob");
    await expectAnswer(ask(bob, { case: "join", value: { room } }), "join");
    await subscribe(bob, room);
    await expectAnswer(ask(alice, { case: "setRole", value: { room, user: "bob", role: RoomRole.READ_ONLY } }), "setRole");
    await expectAnswer(ask(alice, { case: "invite", value: { room, user: "carol" } }), "invite");
    await expectAnswer(ask(alice, { case: "kick", value: { room, user: "carol" } }), "kick");
    await expectAnswer(ask(alice, { case: "updateRoom", value: { room, name: "still public" } }), "updateRoom");
    await expectAnswer(ask(bob, { case: "leave", value: { room } }), "leave");
    const last = await send(alice, room, "still reading");
    const log = await logUpTo(bob, room, last.seq);
    expect(gapless(log)).toBe(true);
    expect(bob.frames.filter((f) => f.kind.case === "error" || f.kind.case === "unsubscribed")).toEqual([]);
  });

  it("a user revoked and let in again follows the room anew with a new subscribe", async () => {
    const alice = await session("alice");
    const room = await createRoom(alice, RoomKind.PUBLIC);
    const bob = await session("bob");
    await subscribe(bob, room);
    await expectAnswer(ask(alice, { case: "ban", value: { room, user: "bob" } }), "ban");
    await bob.waitFor((f) => f.kind.case === "unsubscribed" && f.kind.value.room === room, { what: "unsubscribed" });
    await expectAnswer(ask(alice, { case: "unban", value: { room, user: "bob" } }), "unban");
    const { caughtUp } = await subscribe(bob, room);
    const sent = await send(alice, room, "welcome back");
    expect(sent.seq).toBe(caughtUp + 1n);
    await logUpTo(bob, room, sent.seq);
  });
});
