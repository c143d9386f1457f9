// The client library's rooms against a real bridge, a real core (rooms on
// first use off, as in production) and a real PostgreSQL: client.rooms as
// typed promises, a followed room's membership and settings events among its
// messages in one seq, resume across a bridge restart that counts them, and
// the typed end of a follow the server revoked.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import {
  type ChatMessage,
  MembershipState,
  type MembershipChange,
  ParleyClient,
  ParleyClientError,
  type RoomEvent,
  RoomKind,
  RoomRole,
  type RoomSettingsChange,
} from "../../src/client/index.js";
import type { SocketLike } from "../../src/client/socket.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";

type Format = "json" | "binary";
const FORMATS: readonly Format[] = ["json", "binary"];
const WAIT_MS = 10_000;

let db: TestDatabase;
let core: TestCore;
let bridge: RunningBridge;
let port = 0;
const bridgeLogs = new LogCapture("warn");
let clients: ParleyClient[] = [];

async function listen(onPort: number): Promise<RunningBridge> {
  return startBridge({ httpAddress: `127.0.0.1:${onPort}`, coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger });
}

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  bridge = await listen(0);
  port = bridge.port;
});

afterEach(() => {
  for (const client of clients) client.close();
  clients = [];
});

afterAll(async () => {
  for (const client of clients) client.close();
  await bridge.stop(500);
  await core.stop(0);
  await db.drop();
});

async function newClient(user: string, format: Format): Promise<ParleyClient> {
  const client = new ParleyClient({
    url: `ws://127.0.0.1:${port}`,
    token: await mintToken(TEST_JWT_SECRET, user),
    format,
    socketFactory: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
    reconnectBackoff: { initialMs: 20, maxMs: 250, multiplier: 1.6 },
    requestTimeoutMs: WAIT_MS,
  });
  clients.push(client);
  await client.ready();
  return client;
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rejection(promise: Promise<unknown>): Promise<ParleyClientError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ParleyClientError);
    return error as ParleyClientError;
  }
  throw new Error("expected a rejection");
}

/** What a followed room delivered, in order: `message:<seq>`, `membership:<seq>:<user>:<state>`, `settings:<seq>`. */
class Followed {
  readonly log: string[] = [];
  readonly seqs: bigint[] = [];
  readonly revoked: ParleyClientError[] = [];
  readonly options = {
    onMessage: (message: ChatMessage) => {
      this.#add(message.seq, `message:${message.body}`);
    },
    onMembership: (change: MembershipChange, event: RoomEvent) => {
      this.#add(event.seq, `membership:${change.user}:${MembershipState[change.state]}`);
    },
    onSettings: (change: RoomSettingsChange, event: RoomEvent) => {
      this.#add(event.seq, `settings:${change.name}`);
    },
    onRevoked: (error: ParleyClientError) => {
      this.revoked.push(error);
    },
  };

  #add(seq: bigint, entry: string): void {
    this.seqs.push(seq);
    this.log.push(entry);
  }

  get last(): bigint {
    return this.seqs.at(-1) ?? 0n;
  }

  gapless(): boolean {
    return this.seqs.every((seq, i) => i === 0 || seq === (this.seqs[i - 1] ?? 0n) + 1n);
  }
}

describe.each(FORMATS)("client.rooms (%s frames)", (format) => {
  it("creates, describes, changes and lists rooms and members as typed promises; my rooms carry unread counts", async () => {
    const alice = await newClient("alice", format);
    const bob = await newClient("bob", format);
    const created = await alice.rooms.createRoom({ kind: RoomKind.PRIVATE, name: "Team", topic: "plans", members: ["bob"] });
    const room = created.room?.id ?? "";
    // No id given: the client picked one, so a resent create finds this room.
    expect(room).toMatch(/^room-/);
    expect(created.existing).toBe(false);
    expect((await alice.rooms.createRoom({ kind: RoomKind.PRIVATE, room, name: "Team" })).existing).toBe(true);

    // Invited, not yet a member: the room is in Bob's list, not readable.
    expect((await bob.rooms.listMyRooms()).rooms.find((r) => r.id === room)).toMatchObject({ kind: RoomKind.PRIVATE, myState: MembershipState.INVITED });
    expect((await rejection(bob.rooms.getRoom(room))).category).toBe("PERMISSION_DENIED");
    expect((await bob.rooms.join(room)).member).toMatchObject({ state: MembershipState.JOINED, role: RoomRole.MEMBER });
    expect(await bob.rooms.getRoom(room)).toMatchObject({ id: room, myState: MembershipState.JOINED, memberCount: 2n });
    expect((await alice.rooms.setRole(room, "bob", RoomRole.ADMIN)).member?.role).toBe(RoomRole.ADMIN);
    expect(await alice.rooms.updateRoom(room, { name: "Team A" })).toMatchObject({ name: "Team A", topic: "plans" });
    expect((await bob.rooms.invite(room, "carol")).member?.state).toBe(MembershipState.INVITED);
    const members = await alice.rooms.listMembers(room);
    expect(members.members.map((m) => `${m.user}:${MembershipState[m.state]}`)).toEqual(["alice:JOINED", "bob:JOINED", "carol:INVITED"]);
    expect((await alice.rooms.listMembers(room, { states: [MembershipState.INVITED] })).members.map((m) => m.user)).toEqual(["carol"]);

    await alice.send(room, "one");
    await alice.send(room, "two");
    const mine = await bob.rooms.listMyRooms({ pageSize: 200 });
    expect(mine.rooms.find((r) => r.id === room)).toMatchObject({ name: "Team A", unreadCount: 2n, myRole: RoomRole.ADMIN });
    const carol = await newClient("carol", format);
    expect((await carol.rooms.listMyRooms()).rooms.find((r) => r.id === room)?.myState).toBe(MembershipState.INVITED);
    expect((await carol.rooms.leave(room)).member?.state).toBe(MembershipState.LEFT);

    expect((await alice.rooms.kick(room, "bob", "reshuffle")).event?.event.case).toBe("membership");
    expect((await alice.rooms.ban(room, "bob")).member?.state).toBe(MembershipState.BANNED);
    expect((await alice.rooms.unban(room, "bob")).member?.state).toBe(MembershipState.LEFT);

    // The log, newest first by default, then ascending after a seq; no gap.
    const newest = await alice.rooms.roomEvents(room, { pageSize: 3 });
    expect(newest.events.map((e) => e.seq)).toEqual([newest.headSeq, newest.headSeq - 1n, newest.headSeq - 2n]);
    const all = await alice.rooms.roomEvents(room, { afterSeq: 0n, pageSize: 500 });
    expect(all.events.map((e) => e.seq)).toEqual(all.events.map((_, i) => BigInt(i + 1)));
    expect(all.events.filter((e) => e.event.case === "message").map((e) => (e.event.case === "message" ? e.event.value.body : ""))).toEqual(["one", "two"]);
  });

  it("refusals reject with the category (PERMISSION_DENIED alike for hidden and missing rooms) and the field", async () => {
    const alice = await newClient("alice", format);
    const carol = await newClient("carol", format);
    const { room } = await alice.rooms.createRoom({ kind: RoomKind.PRIVATE, name: "secret" });
    const hidden = await rejection(carol.rooms.getRoom(room?.id ?? ""));
    const missing = await rejection(carol.rooms.getRoom(`nowhere-${Date.now()}`));
    expect(hidden.category).toBe("PERMISSION_DENIED");
    expect(hidden.message).toBe(missing.message);
    expect((await rejection(carol.rooms.join(room?.id ?? ""))).category).toBe("PERMISSION_DENIED");
    const invalid = await rejection(alice.rooms.createRoom({ kind: RoomKind.PUBLIC, name: "x".repeat(129) }));
    expect(invalid.category).toBe("VALIDATION");
    expect(invalid.field).toBe("create_room.name");
    expect((await rejection(alice.rooms.setRole(room?.id ?? "", "bob", 42 as unknown as RoomRole))).field).toBe("set_role.role");
  });

  it("a followed room delivers membership and settings events among its messages, in one seq, and they count for resume", async () => {
    const alice = await newClient("alice", format);
    const bob = await newClient("bob", format);
    const room = (await alice.rooms.createRoom({ kind: RoomKind.PUBLIC, name: "hall" })).room?.id ?? "";
    const followed = new Followed();
    const handle = alice.join(room, { afterSeq: 0n, ...followed.options });
    await alice.send(room, "hello");
    await bob.rooms.join(room);
    await alice.rooms.updateRoom(room, { name: "great hall" });
    await bob.send(room, "hi");
    await waitUntil(() => followed.last >= 6n, "six events");
    expect(followed.log).toEqual(["settings:hall", "membership:alice:JOINED", "message:hello", "membership:bob:JOINED", "settings:great hall", "message:hi"]);
    expect(followed.gapless()).toBe(true);
    expect(handle.lastSeq).toBe(6n);

    // The bridge restarts; while it is away the room changes. The handle
    // resumes after its last seq, a membership event or not.
    await bridge.stop(500);
    await (await core.rooms("bob")).leave({ room });
    const chat = await core.chat("alice");
    await chat.sendMessage({ room, body: "while away", clientMsgId: `away-${format}-${Date.now()}` });
    bridge = await listen(port);
    await waitUntil(() => followed.last >= 8n, "the events stored while away");
    expect(followed.log.slice(6)).toEqual(["membership:bob:LEFT", "message:while away"]);
    expect(followed.gapless()).toBe(true);
  });

  it("a revoked follow ends with onRevoked (PERMISSION_DENIED, why), after the event that caused it; nothing more comes, not even after a reconnect", async () => {
    const alice = await newClient("alice", format);
    const bob = await newClient("bob", format);
    const room = (await alice.rooms.createRoom({ kind: RoomKind.PRIVATE, name: "inner", members: ["bob"] })).room?.id ?? "";
    const lobby = (await alice.rooms.createRoom({ kind: RoomKind.PUBLIC, name: "lobby" })).room?.id ?? "";
    await bob.rooms.join(room);
    const followed = new Followed();
    const inLobby = new Followed();
    const handle = bob.join(room, { ...followed.options, afterSeq: 0n });
    bob.join(lobby, { ...inLobby.options, afterSeq: 0n });
    const before = await alice.send(room, "before");
    await waitUntil(() => followed.last >= before.seq, "the message before the kick");

    const kick = await alice.rooms.kick(room, "bob", "reorg");
    await waitUntil(() => followed.revoked.length > 0, "onRevoked");
    expect(followed.revoked).toHaveLength(1);
    const [revoked] = followed.revoked;
    expect(revoked?.category).toBe("PERMISSION_DENIED");
    expect(revoked?.message).toMatch(/kicked/);
    expect(followed.log.at(-1)).toBe("membership:bob:KICKED");
    expect(followed.last).toBe(kick.event?.seq);
    expect(handle.left).toBe(true);
    expect(handle.revoked).toBe(revoked);

    // Nothing more of the room, across a reconnect too; the lobby still flows.
    await alice.send(room, "after");
    await bridge.stop(500);
    bridge = await listen(port);
    await bob.ready();
    const lobbyMessage = await alice.send(lobby, "lobby after");
    await waitUntil(() => inLobby.last >= lobbyMessage.seq, "the lobby message");
    expect(followed.last).toBe(kick.event?.seq);
    expect(followed.revoked).toHaveLength(1);
    // Joining the room's follow again makes a new handle, which the server refuses now.
    const refused: ParleyClientError[] = [];
    const again = bob.join(room, { onError: (error) => refused.push(error) });
    expect(again).not.toBe(handle);
    await waitUntil(() => refused.length > 0, "the refusal");
    expect(refused[0]?.category).toBe("PERMISSION_DENIED");
  });
});
