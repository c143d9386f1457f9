// Attacks on the room permissions through the real gRPC API: reads that
// should not leak, rooms that others should not be able to break, quotas
// others should not be able to use up, hostile input, races. Each asserts
// the secure behaviour.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { type MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { mintToken, ROOMS_ADMIN_SCOPE } from "../../../src/runtime/auth/tokens.js";
import { createClient } from "../../../src/runtime/grpc/client.js";
import { directRoomId } from "../../../src/core/rooms/room-service.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

let db: TestDatabase;
let core: TestCore;
/** Small quotas, to show quota abuse without 10,000 calls. */
let small: TestCore;
let n = 0;
const id = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db, { implicitRooms: false });
  small = await startTestCore(db, { implicitRooms: false, roomLimits: { maxMembersPerRoom: 5, maxRoomsPerUser: 3 } });
});

afterAll(async () => {
  await core.stop();
  await small.stop();
  await db.drop();
});

async function failure(promise: Promise<unknown>): Promise<ParleyError | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return ParleyError.from(error);
  }
}

/** A private room owned by `owner` with `member` joined; returns its id. */
async function privateRoomWith(c: TestCore, owner: string, member: string): Promise<string> {
  const room = id("vault");
  await (await c.rooms(owner)).createRoom({ kind: RoomKind.PRIVATE, room, name: "Vault", topic: "secret topic", members: [member] });
  await (await c.rooms(member)).join({ room });
  return room;
}

describe("read leaks", () => {
  it("F1: a banned creator may not read the room through CreateRoom-again", async () => {
    const room = id("vault");
    const alice = await core.rooms("alice");
    const bob = await core.rooms("bob");
    await alice.createRoom({ kind: RoomKind.PRIVATE, room, name: "Vault", members: ["bob"] });
    await bob.join({ room });
    await alice.setRole({ room, user: "bob", role: RoomRole.OWNER });
    await bob.setRole({ room, user: "alice", role: RoomRole.MEMBER });
    await bob.ban({ room, user: "alice", reason: "out" });
    await (await core.chat("bob")).sendMessage({ room, body: "the secret plan", clientMsgId: id("m") });
    // Every read path refuses alice ...
    expect((await failure(alice.getRoom({ room })))?.category).toBe(ErrorCategory.PERMISSION_DENIED);
    expect((await failure((await core.chat("alice")).listMessages({ room })))?.category).toBe(ErrorCategory.PERMISSION_DENIED);
    // ... but "creating" it again answers the room, with its newest message.
    const again = await failure(alice.createRoom({ kind: RoomKind.PRIVATE, room }).then((answer) => {
      return answer;
    }));
    expect(again?.category).toBe(ErrorCategory.PERMISSION_DENIED);
  });

  it("F2: an invited (not joined) user may not read a private room's messages through ListMyRooms", async () => {
    const room = id("vault");
    const alice = await core.rooms("alice");
    await alice.createRoom({ kind: RoomKind.PRIVATE, room, name: "Vault" });
    await (await core.chat("alice")).sendMessage({ room, body: "before carol was let in", clientMsgId: id("m") });
    await alice.invite({ room, user: "carol" });
    const carol = await core.rooms("carol");
    const denied = await failure(carol.getRoom({ room }));
    expect(denied?.category).toBe(ErrorCategory.PERMISSION_DENIED);
    const mine = await carol.listMyRooms({});
    const seen = mine.rooms.find((r) => r.id === room);
    expect(seen?.lastMessage).toBeUndefined();
  });

  it("F3: a Subscribe with after_seq just past the head survives a kick that lands between the check and the replay", async () => {
    const room = await privateRoomWith(core, "alice", "mallory");
    const aliceRooms = await core.rooms("alice");
    const aliceChat = await core.chat("alice");
    const mallory = await core.chat("mallory");
    const head = (await aliceRooms.getRoom({ room })).room?.headSeq ?? 0n;
    const controller = new AbortController();
    let kicked = false;
    const survivors: string[][] = [];
    const attempt = async () => {
      for (let i = 0; i < 2_000 && !controller.signal.aborted; i++) {
        const got: string[] = [];
        try {
          // One past the head: refused ("beyond the head") until the next event lands.
          for await (const { event } of mallory.subscribe({ room, afterSeq: head + 1n }, { signal: controller.signal })) {
            if (event.case === "caughtUp") survivors.push(got);
            if (event.case === "message") got.push(event.value.body);
            if (event.case === "roomEvent") got.push(`event ${event.value.seq}`);
          }
        } catch {
          if (kicked && got.length === 0) return;
        }
      }
    };
    const loops = Array.from({ length: 6 }, attempt);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const kick = await aliceRooms.kick({ room, user: "mallory", reason: "bye" });
    kicked = true;
    expect(kick.event?.seq).toBe(head + 1n);
    await aliceChat.sendMessage({ room, body: "after the kick", clientMsgId: id("m") });
    await new Promise((resolve) => setTimeout(resolve, 300));
    controller.abort();
    await Promise.all(loops);
    expect(survivors.flat()).not.toContain("after the kick");
  });
});

describe("breaking other people's rooms", () => {
  it("F4: a member of a public room may not fill it with invitations so that nobody can join", async () => {
    const room = id("plaza");
    await (await small.rooms("alice")).createRoom({ kind: RoomKind.PUBLIC, room, name: "Plaza" });
    const mallory = await small.rooms("mallory");
    await mallory.join({ room });
    for (const ghost of ["ghost1", "ghost2", "ghost3"]) await mallory.invite({ room, user: ghost });
    const bob = await failure((await small.rooms("bob")).join({ room }));
    expect(bob).toBeUndefined();
  });

  it("F5: strangers may not use up a user's rooms-per-user quota by opening direct rooms with them", async () => {
    const mallory = await small.rooms("mallory2");
    for (let i = 0; i < 3; i++) await mallory.createRoom({ kind: RoomKind.DIRECT, members: ["victim", `junk-${i}`] });
    const room = id("lobby");
    await (await small.rooms("owner5")).createRoom({ kind: RoomKind.PUBLIC, room });
    const joined = await failure((await small.rooms("victim")).join({ room }));
    expect(joined).toBeUndefined();
  });

  it("F6: the last owner leaving with only invitations pending leaves a room nobody can manage", async () => {
    const room = id("orphan");
    const alice = await core.rooms("alice");
    await alice.createRoom({ kind: RoomKind.PRIVATE, room, members: ["bob", "carol"] });
    // The last owner may not leave while invitations are pending: once they join, nobody could manage the room.
    expect((await failure(alice.leave({ room })))?.category).toBe(ErrorCategory.PERMISSION_DENIED);
    const bob = await core.rooms("bob");
    await bob.join({ room });
    await (await core.rooms("carol")).join({ room });
    const members = await bob.listMembers({ room });
    expect(members.members.some((m) => m.role === RoomRole.OWNER)).toBe(true);
  });
});

describe("scopes and headers", () => {
  it("F9: parley-act-as on ChatService is refused, not silently ignored", async () => {
    const room = id("svc-room");
    await (await core.rooms("svc", { scopes: [ROOMS_ADMIN_SCOPE] })).createRoom({ kind: RoomKind.PUBLIC, room });
    const token = await mintToken(TEST_JWT_SECRET, "svc", { scopes: [ROOMS_ADMIN_SCOPE] });
    const chat = createClient(ChatService, core.core.address, { headers: () => ({ authorization: `Bearer ${token}`, "parley-act-as": "bob" }) });
    const sent = await failure(chat.sendMessage({ room, body: "as bob?", clientMsgId: id("m") }));
    chat.close();
    expect(sent?.category).toBe(ErrorCategory.PERMISSION_DENIED);
  });
});

describe("dev policy", () => {
  it("F10: under rooms on first use, a first send cannot squat a direct room's id", async () => {
    const dev = await startTestCore(db, { implicitRooms: true });
    try {
      const dm = directRoomId(["alice", "bob"].map((u) => `${u}-dev`));
      const squat = await failure((await dev.chat("carol-dev")).sendMessage({ room: dm, body: "mine now", clientMsgId: id("m") }));
      expect(squat?.category).toBe(ErrorCategory.PERMISSION_DENIED);
      const opened = await failure((await dev.rooms("alice-dev")).createRoom({ kind: RoomKind.DIRECT, members: ["bob-dev"] }));
      expect(opened).toBeUndefined();
    } finally {
      await dev.stop();
    }
  });
});

describe("hostile input (should all be VALIDATION and write nothing)", () => {
  it("a CreateRoom naming more than 100 users is VALIDATION and writes nothing", async () => {
    const room = id("huge");
    const error = await failure((await core.rooms("mallory")).createRoom({ kind: RoomKind.PRIVATE, room, members: Array.from({ length: 101 }, (_, i) => `ghost-${i}`) }));
    expect([error?.category, error?.field]).toEqual([ErrorCategory.VALIDATION, "members"]);
    expect(await db.sql("select 1 from rooms where id = $1", [room])).toEqual([]);
  });

  it("page tokens, states, enums, NUL", async () => {
    const alice = await core.rooms("alice");
    const tokens = [
      "%%%",
      Buffer.from("[1,2]").toString("base64url"),
      Buffer.from(JSON.stringify(["2026-02-30 10:00:00+00", "x"])).toString("base64url"),
      Buffer.from(JSON.stringify(["9999-99-99 99:99:99+00", "x"])).toString("base64url"),
      Buffer.from(JSON.stringify(["2026-01-01 00:00:00+00", "a\u0000b"])).toString("base64url"),
      Buffer.from(JSON.stringify(["2026-01-01 00:00:00+99:99", "x"])).toString("base64url"),
      Buffer.from(JSON.stringify(["294277-01-01 00:00:00+00", "x"])).toString("base64url"),
    ];
    const answers: string[] = [];
    for (const pageToken of tokens) {
      const error = await failure(alice.listMyRooms({ pageToken }));
      answers.push(`${ErrorCategory[error?.category ?? 0]}: ${error?.message ?? "answered"}`);
    }
    const enumAnswers: string[] = [];
    const room = await privateRoomWith(core, "alice", "bob");
    for (const call of [
      () => alice.listMembers({ room, states: [99 as unknown as MembershipState] }),
      () => alice.listMembers({ room, states: [-1 as unknown as MembershipState] }),
      () => alice.setRole({ room, user: "bob", role: 7 as unknown as RoomRole }),
      () => alice.updateRoom({ room, kind: 9 as unknown as RoomKind }),
      () => alice.updateRoom({ room, kind: RoomKind.DIRECT }),
      () => alice.createRoom({ kind: 5 as unknown as RoomKind, room: id("x") }),
      () => alice.updateRoom({ room, name: "a\u0000b" }),
      () => alice.kick({ room, user: "bob", reason: "x\u0000" }),
      () => alice.invite({ room, user: "bad\u0000user" }),
      () => alice.listMembers({ room, pageSize: 2 ** 31 - 1 }),
      () => alice.listMembers({ room, afterUser: "\u0000" }),
    ]) {
      const error = await failure(call());
      enumAnswers.push(`${ErrorCategory[error?.category ?? 0]}: ${error?.message ?? "answered"}`);
    }
    expect([...answers, ...enumAnswers].every((a) => a.startsWith("VALIDATION"))).toBe(true);
  });

});

describe("F12 NUL in a page token", () => {
  it("is VALIDATION at once, not a retried database outage", async () => {
    const alice = await core.rooms("alice-nul");
    const pageToken = Buffer.from(JSON.stringify(["2026-01-01 00:00:00+00", "a\u0000b"])).toString("base64url");
    const before = core.logs.lines.length;
    const error = await failure(alice.listMyRooms({ pageToken }));
    const retries = core.logs.lines.slice(before).map((l) => String(l.msg)).filter((m) => m.includes("retry") || m.includes("transient"));
    expect(error?.category).toBe(ErrorCategory.VALIDATION);
    expect(retries).toEqual([]);
    expect((await alice.listMyRooms({})).rooms).toEqual([]);
  });
});

describe("F13 check-then-read in ListMessages", () => {
  it("a history page never holds messages ordered after the reader's kick", async () => {
    let leaked = 0;
    let rounds = 0;
    for (; rounds < 10 && leaked === 0; rounds++) {
      const room = await privateRoomWith(core, "alice", "mallory");
      await (await core.rooms("alice")).invite({ room, user: "bob" });
      await (await core.rooms("bob")).join({ room });
      const bobChat = await core.chat("bob");
      const mallory = await core.chat("mallory");
      const stop = new AbortController();
      let sent = 0;
      const sender = (async () => {
        while (!stop.signal.aborted) await bobChat.sendMessage({ room, body: `b${++sent}`, clientMsgId: id("b") });
      })();
      const seen: bigint[] = [];
      const readers = Array.from({ length: 6 }, async () => {
        let cursor = 0n;
        for (;;) {
          try {
            const page = await mallory.listMessages({ room, cursorSeq: cursor, pageSize: 1000 });
            for (const m of page.messages) seen.push(m.seq);
            cursor = page.nextCursorSeq;
          } catch {
            return;
          }
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const kick = await (await core.rooms("alice")).kick({ room, user: "mallory" });
      const kickSeq = kick.event?.seq ?? 0n;
      await Promise.all(readers);
      leaked += seen.filter((seq) => seq > kickSeq).length;
      stop.abort();
      await sender;
    }
    expect(leaked).toBe(0);
  }, 60_000);
});

describe("held: escalation", () => {
  it("admins cannot escalate; owners can demote owners (design)", async () => {
    const room = id("ranks");
    const o1 = await core.rooms("own1");
    await o1.createRoom({ kind: RoomKind.PRIVATE, room, members: ["own2", "adm1", "adm2", "mem1"] });
    for (const u of ["own2", "adm1", "adm2", "mem1"]) await (await core.rooms(u)).join({ room });
    await o1.setRole({ room, user: "own2", role: RoomRole.OWNER });
    await o1.setRole({ room, user: "adm1", role: RoomRole.ADMIN });
    await o1.setRole({ room, user: "adm2", role: RoomRole.ADMIN });
    const adm1 = await core.rooms("adm1");
    const mem1 = await core.rooms("mem1");
    const results: Record<string, string> = {};
    const tryIt = async (name: string, p: Promise<unknown>) => {
      const e = await failure(p);
      results[name] = e ? `refused: ${e.message}` : "ALLOWED";
    };
    await tryIt("admin grants owner to member", adm1.setRole({ room, user: "mem1", role: RoomRole.OWNER }));
    await tryIt("admin grants admin to member", adm1.setRole({ room, user: "mem1", role: RoomRole.ADMIN }));
    await tryIt("admin grants self owner", adm1.setRole({ room, user: "adm1", role: RoomRole.OWNER }));
    await tryIt("admin demotes admin", adm1.setRole({ room, user: "adm2", role: RoomRole.MEMBER }));
    await tryIt("admin kicks admin", adm1.kick({ room, user: "adm2" }));
    await tryIt("admin bans owner", adm1.ban({ room, user: "own1" }));
    await tryIt("admin demotes owner", adm1.setRole({ room, user: "own1", role: RoomRole.MEMBER }));
    await tryIt("member kicks member", mem1.kick({ room, user: "adm2" }));
    await tryIt("member invites in private", mem1.invite({ room, user: "zz" }));
    await tryIt("member renames", mem1.updateRoom({ room, name: "mine" }));
    await tryIt("admin makes public", adm1.updateRoom({ room, kind: RoomKind.PUBLIC }));
    await tryIt("admin renames+kind", adm1.updateRoom({ room, name: "x", kind: RoomKind.PUBLIC }));
    await tryIt("act-as without scope", (async () => {
      const token = await mintToken(TEST_JWT_SECRET, "mem1");
      const { RoomService } = await import("../../../gen/parley/v1/room_service_pb.js");
      const c = createClient(RoomService, core.core.address, { headers: () => ({ authorization: `Bearer ${token}`, "parley-act-as": "own1" }) });
      try {
        return await c.kick({ room, user: "adm1" });
      } finally {
        c.close();
      }
    })());
    await tryIt("admin unbans a user an owner banned", (async () => {
      await o1.ban({ room, user: "stranger" });
      return adm1.unban({ room, user: "stranger" });
    })());
    await tryIt("owner1 demotes owner2 (equal)", o1.setRole({ room, user: "own2", role: RoomRole.READ_ONLY }));
    await tryIt("owner1 then kicks owner2", o1.kick({ room, user: "own2" }));
    await tryIt("last owner demotes self", o1.setRole({ room, user: "own1", role: RoomRole.MEMBER }));
    await tryIt("last owner leaves", o1.leave({ room }));
  });
});

describe("held: ban while sends are in flight", () => {
  it("no message of the banned sender is ordered after the ban", async () => {
    let after = 0;
    for (let round = 0; round < 5; round++) {
      const room = await privateRoomWith(core, "alice", "mallory");
      const mallory = await core.chat("mallory");
      const stop = new AbortController();
      const senders = Array.from({ length: 8 }, async (_, k) => {
        for (let i = 0; !stop.signal.aborted && i < 500; i++) {
          try {
            await mallory.sendMessage({ room, body: `m${k}-${i}`, clientMsgId: id("mm") });
          } catch {
            return;
          }
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 40));
      const ban = await (await core.rooms("alice")).ban({ room, user: "mallory" });
      await Promise.all(senders);
      stop.abort();
      const rows = await db.sql<{ n: string }>("select count(*) as n from chat_messages where room_id = $1 and sender = 'mallory' and seq > $2", [room, String(ban.event?.seq)]);
      after += Number(rows[0]?.n);
    }
    expect(after).toBe(0);
  }, 60_000);
});

describe("held: misc read paths", () => {
  it("duplicates, old resumes, dm ids, mark_read", async () => {
    const room = await privateRoomWith(core, "alice", "mallory");
    const alice = await core.chat("alice");
    await alice.sendMessage({ room, body: "alice's secret", clientMsgId: "shared-key-1" });
    const bob = await core.chat("bob");
    const out: string[] = [];
    const note = async (name: string, p: Promise<unknown>) => {
      const e = await failure(p.then((v) => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x)).slice(0, 120)).then((s) => out.push(`${name}: ANSWERED ${s}`)));
      if (e) out.push(`${name}: ${ErrorCategory[e.category]} ${e.message}`);
    };
    await note("bob resends alice's client_msg_id", bob.sendMessage({ room, body: "x", clientMsgId: "shared-key-1" }));
    await (await core.rooms("alice")).kick({ room, user: "mallory" });
    const mallory = await core.chat("mallory");
    await note("kicked subscribe after_seq 0", (async () => {
      for await (const _ of mallory.subscribe({ room, afterSeq: 0n })) return "got an event";
      return "ended";
    })());
    await note("kicked listRoomEvents", mallory.listRoomEvents({ room }));
    await note("kicked markRead", mallory.markRead({ room, seq: 1n }));
    await note("kicked getRoom", (await core.rooms("mallory")).getRoom({ room }));
    const dm = directRoomId(["alice", "bob"]);
    await (await core.rooms("alice")).createRoom({ kind: RoomKind.DIRECT, members: ["bob"] });
    await note("carol getRoom on alice+bob dm", (await core.rooms("carol")).getRoom({ room: dm }));
    await note("carol getRoom on a dm that does not exist", (await core.rooms("carol")).getRoom({ room: directRoomId(["x1", "x2"]) }));
    await note("carol joins the dm", (await core.rooms("carol")).join({ room: dm }));
    await note("carol creates group room dm:...", (await core.rooms("carol")).createRoom({ kind: RoomKind.PUBLIC, room: "dm:abc" }));
    await note("alice renames the dm", (await core.rooms("alice")).updateRoom({ room: dm, name: "x" }));
    await note("alice invites carol to the dm", (await core.rooms("alice")).invite({ room: dm, user: "carol" }));
  });
});

