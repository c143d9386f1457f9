import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatServiceSubscribeResponse, RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { mintToken, ROOMS_ADMIN_SCOPE, ROOMS_RELAY_SCOPE } from "../../../src/runtime/auth/tokens.js";
import { createClient } from "../../../src/runtime/grpc/client.js";
import { NOT_VISIBLE } from "../../../src/core/access/room-access.js";
import { ACT_AS_HEADER } from "../../../src/core/access/act-as-guard.js";
import { directRoomId } from "../../../src/core/rooms/room-service.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { rejection } from "../../support/assertions.js";

let db: TestDatabase;
let core: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false, roomLimits: { maxRoomsCreatedPerUser: 5, maxMembersPerRoom: 4, maxInvitationsPerRoom: 3 } });
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

/** What the database holds for a room: its head, its events' seqs, its members. */
async function written(room: string): Promise<{ head: string | undefined; events: string[]; members: string[] }> {
  const head = await db.sql<{ head_seq: string }>("select head_seq from rooms where id = $1", [room]);
  const events = await db.sql<{ seq: string }>("select seq from room_events where room_id = $1 order by seq", [room]);
  const members = await db.sql<{ user_id: string; state: number; role: number }>("select user_id, state, role from room_members where room_id = $1 order by user_id", [room]);
  return { head: head[0]?.head_seq, events: events.map((e) => e.seq), members: members.map((m) => `${m.user_id}:${m.state}:${m.role}`) };
}

function membershipOf(event: RoomEvent | undefined): { user: string; state: MembershipState; role: RoomRole } | undefined {
  return event?.event.case === "membership" ? { user: event.event.value.user, state: event.event.value.state, role: event.event.value.role } : undefined;
}

async function expectDenied(promise: Promise<unknown>, message?: string): Promise<void> {
  const error = await rejection(promise);
  expect(error.category).toBe(ErrorCategory.PERMISSION_DENIED);
  if (message !== undefined) expect(error.message).toBe(message);
}

describe("creating rooms", () => {
  it("a public room starts its log with its settings and its owner's join, in one seq with its messages", async () => {
    const alice = await core.rooms("alice");
    const created = await alice.createRoom({ kind: RoomKind.PUBLIC, room: "lobby", name: "Lobby", topic: "hello" });
    expect(created.existing).toBe(false);
    expect(created.room).toMatchObject({ id: "lobby", kind: RoomKind.PUBLIC, name: "Lobby", topic: "hello", createdBy: "alice", headSeq: 2n, memberCount: 1n, myState: MembershipState.JOINED, myRole: RoomRole.OWNER });
    const chat = await core.chat("alice");
    const sent = await chat.sendMessage({ room: "lobby", body: "first", clientMsgId: "lobby-1" });
    expect(sent.message?.seq).toBe(3n);
    const page = await chat.listRoomEvents({ room: "lobby" });
    expect(page.events.map((e) => [e.seq, e.event.case])).toEqual([
      [1n, "settings"],
      [2n, "membership"],
      [3n, "message"],
    ]);
    expect(membershipOf(page.events[1])).toEqual({ user: "alice", state: MembershipState.JOINED, role: RoomRole.OWNER });
    // Messages alone skip the other events' seqs.
    expect((await chat.listMessages({ room: "lobby" })).messages.map((m) => m.seq)).toEqual([3n]);
    expect(await chat.listRoomEvents({ room: "lobby", direction: ListDirection.BACKWARD, pageSize: 2 })).toMatchObject({ hasMore: true, nextCursorSeq: 2n, headSeq: 3n });
  });

  it("creating a room again is answered with the room for its creator and refused to anyone else, writing nothing", async () => {
    const alice = await core.rooms("alice");
    const again = await alice.createRoom({ kind: RoomKind.PUBLIC, room: "lobby", name: "Lobby" });
    expect(again.existing).toBe(true);
    const before = await written("lobby");
    await expectDenied((await core.rooms("mallory")).createRoom({ kind: RoomKind.PRIVATE, room: "lobby" }));
    expect(await written("lobby")).toEqual(before);
  });

  it("a direct room has one id per set of users, whoever opens it", async () => {
    const alice = await core.rooms("alice");
    const bob = await core.rooms("bob");
    const first = await alice.createRoom({ kind: RoomKind.DIRECT, members: ["bob"] });
    const second = await alice.createRoom({ kind: RoomKind.DIRECT, members: ["bob", "bob"] });
    const fromBob = await bob.createRoom({ kind: RoomKind.DIRECT, members: ["alice"] });
    expect(first.room?.id).toBe(directRoomId(["bob", "alice"]));
    expect([first.existing, second.existing, fromBob.existing]).toEqual([false, true, true]);
    expect(fromBob.room).toMatchObject({ id: first.room?.id, kind: RoomKind.DIRECT, myState: MembershipState.JOINED, memberCount: 2n });
    const room = first.room?.id ?? "";
    const carol = await core.chat("carol");
    await expectDenied(carol.listMessages({ room }), NOT_VISIBLE);
    // No invitations, kicks or settings in a direct conversation.
    await expectDenied(alice.invite({ room, user: "carol" }));
    await expectDenied(alice.kick({ room, user: "bob" }));
    await expectDenied(alice.updateRoom({ room, name: "ours" }));
    // Its users may leave and come back.
    await bob.leave({ room });
    expect((await bob.join({ room })).member?.state).toBe(MembershipState.JOINED);
  });

  it("refuses malformed requests with VALIDATION, naming the field", async () => {
    const alice = await core.rooms("alice");
    // Each call is made only when its answer is awaited: a refusal that came
    // before anyone listened would be an unhandled rejection.
    const cases: [() => Promise<unknown>, string][] = [
      [() => alice.createRoom({ kind: RoomKind.UNSPECIFIED }), "kind"],
      [() => alice.createRoom({ kind: RoomKind.PUBLIC, room: "bad room" }), "room"],
      [() => alice.createRoom({ kind: RoomKind.PUBLIC, name: "n".repeat(129) }), "name"],
      [() => alice.createRoom({ kind: RoomKind.PUBLIC, members: ["not a user"] }), "members"],
      [() => alice.createRoom({ kind: RoomKind.DIRECT, members: [] }), "members"],
      [() => alice.createRoom({ kind: RoomKind.DIRECT, room: "mine", members: ["bob"] }), "room"],
      // A group room may not take a direct room's id (and so block that conversation).
      [() => alice.createRoom({ kind: RoomKind.PUBLIC, room: directRoomId(["mallory", "bob"]) }), "room"],
      [() => alice.setRole({ room: "lobby", user: "bob", role: 9 as unknown as RoomRole }), "role"],
      [() => alice.kick({ room: "lobby", user: "bob", reason: "r".repeat(513) }), "reason"],
      [() => alice.listMyRooms({ pageToken: "garbage" }), "page_token"],
      [() => alice.listMembers({ room: "lobby", pageSize: 501 }), "page_size"],
      [() => alice.updateRoom({ room: "lobby" }), "name"],
    ];
    for (const [call, field] of cases) {
      const error = await rejection(call());
      expect([error.category, error.field]).toEqual([ErrorCategory.VALIDATION, field]);
    }
  });
});

describe("private rooms", () => {
  it("strangers get the same answer as for a room that does not exist, from every read, and nothing is written", async () => {
    const alice = await core.rooms("alice");
    await alice.createRoom({ kind: RoomKind.PRIVATE, room: "secret", name: "Secret" });
    const before = await written("secret");
    const carolRooms = await core.rooms("carol");
    const carolChat = await core.chat("carol");
    for (const room of ["secret", "no-such-room"]) {
      await expectDenied(carolRooms.getRoom({ room }), NOT_VISIBLE);
      await expectDenied(carolRooms.listMembers({ room }), NOT_VISIBLE);
      await expectDenied(carolRooms.join({ room }), NOT_VISIBLE);
      await expectDenied(carolRooms.invite({ room, user: "dave" }), NOT_VISIBLE);
      await expectDenied(carolChat.listMessages({ room }), NOT_VISIBLE);
      await expectDenied(carolChat.listRoomEvents({ room }), NOT_VISIBLE);
      const stream = carolChat.subscribe({ room })[Symbol.asyncIterator]();
      await expectDenied(stream.next(), NOT_VISIBLE);
    }
    expect(await written("secret")).toEqual(before);
    expect(await written("no-such-room")).toEqual({ head: undefined, events: [], members: [] });
  });

  it("an invited user joins, chats, is kicked: their subscription ends right after the kick, and nothing later reaches them", async () => {
    const alice = await core.rooms("alice");
    const bob = await core.rooms("bob");
    await alice.createRoom({ kind: RoomKind.PRIVATE, room: "team", members: ["bob"] });
    // Invited is not yet a member: the room's contents stay closed until bob joins.
    await expectDenied((await core.chat("bob")).listMessages({ room: "team" }));
    const joined = await bob.join({ room: "team" });
    expect(joined.member).toMatchObject({ user: "bob", state: MembershipState.JOINED, role: RoomRole.MEMBER });
    const bobChat = await core.chat("bob");
    await bobChat.sendMessage({ room: "team", body: "hi", clientMsgId: "team-bob-1" });

    const received: ChatServiceSubscribeResponse["event"][] = [];
    const ended = (async () => {
      try {
        for await (const { event } of bobChat.subscribe({ room: "team", afterSeq: 0n })) {
          received.push(event);
          if (event.case === "caughtUp") {
            const kicked = await alice.kick({ room: "team", user: "bob", reason: "bye" });
            expect(membershipOf(kicked.event)).toEqual({ user: "bob", state: MembershipState.KICKED, role: RoomRole.UNSPECIFIED });
            await (await core.chat("alice")).sendMessage({ room: "team", body: "after the kick", clientMsgId: "team-alice-1" });
          }
        }
        return undefined;
      } catch (error) {
        return error as Error;
      }
    })();
    const error = await ended;
    expect(error?.message).toMatch(/no longer allowed to read room team: kicked/);
    const seqs = received.map((event) => (event.case === "message" || event.case === "roomEvent" ? event.value.seq : event.case));
    // settings, alice joined, bob invited, bob joined, bob's message, caught up, the kick — and not alice's later message.
    expect(seqs).toEqual([1n, 2n, 3n, 4n, 5n, "caughtUp", 6n]);
    await expectDenied(bobChat.listMessages({ room: "team" }));
    // Kicked from a private room: back only by a new invitation.
    await expectDenied(bob.join({ room: "team" }));
    // Kicking again is already in effect: answered, nothing written.
    const before = await written("team");
    expect((await alice.kick({ room: "team", user: "bob" })).event).toBeUndefined();
    expect(await written("team")).toEqual(before);
  });

  it("a public room made private ends the follows of readers who are not members", async () => {
    const alice = await core.rooms("alice");
    await alice.createRoom({ kind: RoomKind.PUBLIC, room: "townhall" });
    const carolChat = await core.chat("carol");
    const iterator: AsyncIterator<ChatServiceSubscribeResponse> = carolChat.subscribe({ room: "townhall" })[Symbol.asyncIterator]();
    const first: IteratorResult<ChatServiceSubscribeResponse> = await iterator.next();
    expect(first.done === true ? "done" : first.value.event.case).toBe("caughtUp");
    await alice.updateRoom({ room: "townhall", kind: RoomKind.PRIVATE });
    const next: IteratorResult<ChatServiceSubscribeResponse> = await iterator.next();
    expect(next.done === true ? "done" : next.value.event.case).toBe("roomEvent");
    const error = await rejection(iterator.next());
    expect(error.message).toMatch(/no longer allowed to read room townhall: the room is for members only/);
  });
});

describe("roles and bans", () => {
  it("admins manage lower roles only; the last owner stays until another is made", async () => {
    const owner = await core.rooms("olga");
    await owner.createRoom({ kind: RoomKind.PUBLIC, room: "ranks" });
    for (const user of ["adam", "mia", "rita"]) await (await core.rooms(user)).join({ room: "ranks" });
    await owner.setRole({ room: "ranks", user: "adam", role: RoomRole.ADMIN });
    await owner.setRole({ room: "ranks", user: "rita", role: RoomRole.READ_ONLY });
    const adam = await core.rooms("adam");
    await expectDenied(adam.kick({ room: "ranks", user: "olga" }));
    await expectDenied(adam.setRole({ room: "ranks", user: "mia", role: RoomRole.ADMIN }));
    expect((await adam.setRole({ room: "ranks", user: "mia", role: RoomRole.READ_ONLY })).member?.role).toBe(RoomRole.READ_ONLY);
    await expectDenied((await core.rooms("mia")).kick({ room: "ranks", user: "rita" }));
    // The read-only member may read but not send.
    const rita = await core.chat("rita");
    await rita.listMessages({ room: "ranks" });
    await expectDenied(rita.sendMessage({ room: "ranks", body: "may I?", clientMsgId: "rita-1" }));
    // The last owner may neither leave nor step down while others are in.
    const before = await written("ranks");
    await expectDenied(owner.leave({ room: "ranks" }), "the room's last owner must make another member owner first");
    await expectDenied(owner.setRole({ room: "ranks", user: "olga", role: RoomRole.ADMIN }));
    expect(await written("ranks")).toEqual(before);
    await owner.setRole({ room: "ranks", user: "adam", role: RoomRole.OWNER });
    expect((await owner.leave({ room: "ranks" })).member?.state).toBe(MembershipState.LEFT);
  });

  it("a banned user can do nothing in a public room until unbanned, and then stands as one who left", async () => {
    const owner = await core.rooms("olga");
    await owner.createRoom({ kind: RoomKind.PUBLIC, room: "bans" });
    const troll = await core.rooms("troll");
    await troll.join({ room: "bans" });
    const banned = await owner.ban({ room: "bans", user: "troll", reason: "spam" });
    expect(banned.event?.event.case === "membership" ? banned.event.event.value.reason : "").toBe("spam");
    const trollChat = await core.chat("troll");
    const before = await written("bans");
    await expectDenied(trollChat.listMessages({ room: "bans" }), "banned from this room");
    await expectDenied(troll.join({ room: "bans" }), "banned from this room");
    await expectDenied(trollChat.sendMessage({ room: "bans", body: "let me in", clientMsgId: "troll-1" }));
    await expectDenied(owner.invite({ room: "bans", user: "troll" }));
    expect(await written("bans")).toEqual(before);
    expect((await owner.unban({ room: "bans", user: "troll" })).member?.state).toBe(MembershipState.LEFT);
    expect((await troll.join({ room: "bans" })).member?.state).toBe(MembershipState.JOINED);
  });
});

describe("the relay scope", () => {
  it("a relay (the bridge's identity) reads any room's log, to pass on to connections it authorized; a user token cannot", async () => {
    const owner = await core.rooms("olga");
    await owner.createRoom({ kind: RoomKind.PRIVATE, room: "relayed" });
    const relayToken = await mintToken(TEST_JWT_SECRET, "parley-bridge-test", { scopes: [ROOMS_RELAY_SCOPE] });
    const relay = createClient(ChatService, core.core.address, { headers: () => ({ authorization: `Bearer ${relayToken}` }) });
    try {
      expect((await relay.listRoomEvents({ room: "relayed" })).events.map((e) => e.event.case)).toEqual(["settings", "membership"]);
    } finally {
      relay.close();
    }
    await expectDenied((await core.chat("parley-bridge-test")).listRoomEvents({ room: "relayed" }), NOT_VISIBLE);
  });
});

describe("service identities", () => {
  it("a token with rooms:admin acts for a user; without it, naming a user is refused and writes nothing", async () => {
    const service = await core.rooms("order-service", { scopes: [ROOMS_ADMIN_SCOPE] });
    const asAgent = { headers: { [ACT_AS_HEADER]: "agent-7" } };
    const created = await service.createRoom({ kind: RoomKind.PRIVATE, room: "order-1234", members: ["customer-9"] }, asAgent);
    expect(created.room).toMatchObject({ createdBy: "agent-7", myRole: RoomRole.OWNER });
    await service.join({ room: "order-1234" }, { headers: { [ACT_AS_HEADER]: "customer-9" } });
    const plain = await core.rooms("mallory");
    await expectDenied(plain.createRoom({ kind: RoomKind.PUBLIC, room: "forged" }, { headers: { [ACT_AS_HEADER]: "alice" } }));
    expect(await written("forged")).toEqual({ head: undefined, events: [], members: [] });
  });
});

describe("quotas", () => {
  it("rooms a user creates, members of a room and its pending invitations are bounded, and a refusal writes nothing", async () => {
    const quentin = await core.rooms("quentin");
    for (let i = 0; i < 5; i++) await quentin.createRoom({ kind: RoomKind.PUBLIC, room: `q-${i}` });
    const error = await rejection(quentin.createRoom({ kind: RoomKind.PUBLIC, room: "q-5" }));
    expect(error.category).toBe(ErrorCategory.RATE_LIMITED);
    expect(await written("q-5")).toEqual({ head: undefined, events: [], members: [] });
    for (const user of ["u1", "u2", "u3"]) await quentin.invite({ room: "q-0", user });
    let before = await written("q-0");
    // Three invitations pending: no fourth, but they hold no member's place.
    await expectDenied(quentin.invite({ room: "q-0", user: "u4" }), "the room has 3 pending invitations, the most a room may have");
    expect(await written("q-0")).toEqual(before);
    for (const user of ["u1", "u2", "u3"]) await (await core.rooms(user)).join({ room: "q-0" });
    // Four joined members (quentin and three): nobody else joins.
    before = await written("q-0");
    await expectDenied((await core.rooms("u5")).join({ room: "q-0" }), "the room has 4 members, the most a room may have");
    expect(await written("q-0")).toEqual(before);
  });
});

describe("rooms per user", () => {
  it("a user joins at most maxRoomsPerUser rooms; invitations do not count, so nobody can fill another's quota", async () => {
    const small = await startTestCore(db, { implicitRooms: false, roomLimits: { maxRoomsPerUser: 2 } });
    try {
      const host = await small.rooms("host");
      const zoe = await small.rooms("zoe");
      for (const room of ["z-1", "z-2"]) await host.createRoom({ kind: RoomKind.PRIVATE, room, members: ["zoe"] });
      await (await small.rooms("other-host")).createRoom({ kind: RoomKind.PRIVATE, room: "z-3", members: ["zoe"] });
      // The creator joins what it creates: in two rooms, host may create no third.
      await expectDenied(host.createRoom({ kind: RoomKind.PUBLIC, room: "z-4" }), "host has joined 2 rooms, the most a user may join");
      await zoe.join({ room: "z-1" });
      await zoe.createRoom({ kind: RoomKind.PUBLIC, room: "z-own" });
      const before = await written("z-3");
      await expectDenied(zoe.join({ room: "z-3" }), "zoe has joined 2 rooms, the most a user may join");
      expect(await written("z-3")).toEqual(before);
      await zoe.leave({ room: "z-own" });
      expect((await zoe.join({ room: "z-3" })).member?.state).toBe(MembershipState.JOINED);
    } finally {
      await small.stop();
    }
  });
});

describe("my rooms", () => {
  it("lists joined and invited rooms, most recently active first, with unread counts of messages only", async () => {
    const una = await core.rooms("una");
    await una.createRoom({ kind: RoomKind.PUBLIC, room: "una-a" });
    await una.createRoom({ kind: RoomKind.PUBLIC, room: "una-b" });
    await (await core.rooms("olga")).createRoom({ kind: RoomKind.PRIVATE, room: "una-invite", members: ["una"] });
    const vic = await core.rooms("vic");
    await vic.join({ room: "una-a" });
    const vicChat = await core.chat("vic");
    await vicChat.sendMessage({ room: "una-a", body: "one", clientMsgId: "una-a-1" });
    await vicChat.sendMessage({ room: "una-a", body: "two", clientMsgId: "una-a-2" });
    const first = await una.listMyRooms({ pageSize: 2 });
    expect(first.rooms.map((room) => [room.id, room.unreadCount, room.myState])).toEqual([
      ["una-a", 2n, MembershipState.JOINED],
      ["una-invite", 0n, MembershipState.INVITED],
    ]);
    expect(first.rooms[0]?.lastMessage?.body).toBe("two");
    const second = await una.listMyRooms({ pageSize: 2, pageToken: first.nextPageToken });
    expect(second.rooms.map((room) => room.id)).toEqual(["una-b"]);
    expect(second.nextPageToken).toBe("");
    const una2 = await core.chat("una");
    const marked = await una2.markRead({ room: "una-a", seq: 4n });
    expect(marked.unreadCount).toBe(1n);
    expect((await una.getRoom({ room: "una-a" })).room?.unreadCount).toBe(1n);
  });
});

describe("resume", () => {
  it("replays membership events in their place among messages", async () => {
    const owner = await core.rooms("olga");
    await owner.createRoom({ kind: RoomKind.PUBLIC, room: "replay" });
    const olgaChat = await core.chat("olga");
    await olgaChat.sendMessage({ room: "replay", body: "m1", clientMsgId: "replay-1" });
    await (await core.rooms("walt")).join({ room: "replay" });
    await olgaChat.sendMessage({ room: "replay", body: "m2", clientMsgId: "replay-2" });
    const seen: string[] = [];
    for await (const { event } of olgaChat.subscribe({ room: "replay", afterSeq: 1n, batched: true })) {
      if (event.case === "caughtUp") break;
      if (event.case === "messages") seen.push(...event.value.messages.map((m) => `${m.seq}:message`));
      if (event.case === "message") seen.push(`${event.value.seq}:message`);
      if (event.case === "roomEvent") seen.push(`${event.value.seq}:${event.value.event.case ?? ""}`);
    }
    expect(seen).toEqual(["2:membership", "3:message", "4:membership", "5:message"]);
  });
});
