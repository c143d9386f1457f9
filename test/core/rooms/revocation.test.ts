import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind } from "../../../gen/parley/v1/rooms_pb.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { startTestCore, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

// Live revocation across core instances, under load: sends keep flowing into
// a private room while its members follow it on two cores; one member is
// banned through the other core. Their subscription must end within a
// second, after the ban's own event and before anything later in the log;
// everyone else keeps following without a gap.

let db: TestDatabase;
let first: TestCore;
let second: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  first = await startTestCore(db, { implicitRooms: false });
  second = await startTestCore(db, { implicitRooms: false });
});

afterAll(async () => {
  await first.stop();
  await second.stop();
  await db.drop();
});

interface Follower {
  readonly user: string;
  readonly seqs: bigint[];
  /** When the stream ended, and how. */
  readonly ended: Promise<{ at: number; error: ParleyError | undefined }>;
  readonly controller: AbortController;
}

async function followAs(core: TestCore, user: string, room: string): Promise<Follower> {
  const chat = await core.chat(user);
  const controller = new AbortController();
  const seqs: bigint[] = [];
  let caughtUp!: () => void;
  const ready = new Promise<void>((resolve) => (caughtUp = resolve));
  const ended = (async () => {
    try {
      for await (const { event } of chat.subscribe({ room, afterSeq: 0n, batched: true }, { signal: controller.signal })) {
        if (event.case === "messages") seqs.push(...event.value.messages.map((m) => m.seq));
        else if (event.case === "message" || event.case === "roomEvent") seqs.push(event.value.seq);
        else if (event.case === "caughtUp") caughtUp();
      }
      return { at: Date.now(), error: undefined };
    } catch (error) {
      return { at: Date.now(), error: error instanceof ParleyError ? error : undefined };
    }
  })();
  await ready;
  return { user, seqs, ended, controller };
}

describe("revocation", () => {
  it("a ban through one core ends the banned member's subscriptions on both cores within 1 s, after the ban and before anything later", async () => {
    const room = "ops";
    const owner = await first.rooms("owner");
    await owner.createRoom({ kind: RoomKind.PRIVATE, room, members: ["bob", "carol", "dave"] });
    for (const user of ["bob", "carol", "dave"]) await (await first.rooms(user)).join({ room });

    const followers = [
      await followAs(second, "bob", room),
      await followAs(first, "bob", room),
      await followAs(first, "carol", room),
      await followAs(second, "dave", room),
    ];
    const sender = await first.chat("owner");
    const otherSender = await second.chat("carol");
    const sending = new AbortController();
    let n = 0;
    const load = (async () => {
      while (!sending.signal.aborted) {
        const i = n++;
        await Promise.all([
          sender.sendMessage({ room, body: `o${i}`, clientMsgId: `ops-o-${i}` }),
          otherSender.sendMessage({ room, body: `c${i}`, clientMsgId: `ops-c-${i}` }),
        ]);
      }
    })();
    while (n < 50) await new Promise((resolve) => setTimeout(resolve, 10));
    const banned = await owner.ban({ room, user: "bob", reason: "leaked the roadmap" });
    const bannedAt = Date.now();
    const banSeq = banned.event?.seq ?? 0n;
    while (n < 150) await new Promise((resolve) => setTimeout(resolve, 10));
    sending.abort();
    await load;

    for (const bob of followers.filter((f) => f.user === "bob")) {
      const { at, error } = await bob.ended;
      expect(error?.category).toBe(ErrorCategory.PERMISSION_DENIED);
      expect(error?.message).toMatch(/banned/);
      expect(at - bannedAt).toBeLessThan(1_000);
      // Everything up to the ban, in order and without a gap; nothing after it.
      expect(bob.seqs.at(-1)).toBe(banSeq);
      expect(bob.seqs).toEqual(Array.from({ length: Number(banSeq) }, (_, i) => BigInt(i + 1)));
    }
    const head = BigInt((await db.sql<{ head_seq: string }>("select head_seq from rooms where id = $1", [room]))[0]?.head_seq ?? "0");
    for (const other of followers.filter((f) => f.user !== "bob")) {
      while (other.seqs.at(-1) !== head) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(other.seqs).toEqual(Array.from({ length: Number(head) }, (_, i) => BigInt(i + 1)));
      other.controller.abort();
    }
    // Sends after the ban are refused to bob by the log, not by timing.
    await expect((await second.chat("bob")).sendMessage({ room, body: "still here?", clientMsgId: "ops-bob-1" })).rejects.toMatchObject({
      category: ErrorCategory.PERMISSION_DENIED,
    });
  });
});

describe("GetRoom and a concurrent kick", () => {
  it("answers a standing and a head of the same moment: never joined with a head at or past the kick", async () => {
    const owner = await first.rooms("gr-owner");
    const member = await second.rooms("gr-member");
    for (let round = 0; round < 20; round++) {
      const room = `gr-race-${round}`;
      await owner.createRoom({ kind: RoomKind.PRIVATE, room, members: ["gr-member"] });
      await member.join({ room });
      const reads = Array.from({ length: 12 }, () =>
        member.getRoom({ room }).then(
          (answer) => ({ room: answer.room, error: undefined }),
          (error: unknown) => ({ room: undefined, error: error as ParleyError }),
        ),
      );
      const kick = await owner.kick({ room, user: "gr-member" });
      const kickSeq = kick.event?.seq ?? 0n;
      expect(kickSeq).toBeGreaterThan(0n);
      for (const { room: answer, error } of await Promise.all(reads)) {
        if (error !== undefined) expect(error.category).toBe(ErrorCategory.PERMISSION_DENIED);
        // An answer authorizes the bridge to follow from its head with its standing: it must be a standing that may read, from before the kick.
        else expect({ state: answer?.myState, beforeKick: (answer?.headSeq ?? kickSeq) < kickSeq }, `round ${round}`).toEqual({ state: MembershipState.JOINED, beforeKick: true });
      }
    }
  });
});
