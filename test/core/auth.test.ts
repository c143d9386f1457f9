import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService, type SendStreamRequest, type SendStreamResponse } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { IdentityService } from "../../gen/parley/v1/identity_pb.js";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { RoomService } from "../../gen/parley/v1/room_service_pb.js";
import { RoomKind } from "../../gen/parley/v1/rooms_pb.js";
import { mintToken, ROOMS_RELAY_SCOPE } from "../../src/runtime/auth/tokens.js";
import { fromGrpcError } from "../../src/runtime/grpc/status.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { startTestCore, TEST_JWT_SECRET, TEST_RELAY_SUBJECT, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { rejection as failureOf } from "../support/assertions.js";

type ChatClient = ServiceClient<typeof ChatService>;
type StreamItem = Pick<SendStreamRequest, "streamSeq" | "room" | "body" | "clientMsgId"> & { actingToken?: string };

const OTHER_SECRET = "another-secret-that-is-also-long-enough-for-hs256";
/** Every wait in this file is bounded well under the test timeout. */
const CALL_TIMEOUT_MS = 5_000;

let db: TestDatabase;
let core: TestCore;
const clients: ChatClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
});

afterAll(async () => {
  for (const client of clients) client.close();
  await core.stop();
  await db.drop();
});

/** A client sending exactly these headers (none at all when empty). */
function clientWith(headers: Record<string, string>): ChatClient {
  const client = createClient(ChatService, core.core.address, { headers: () => headers });
  clients.push(client);
  return client;
}


/** Drains a server stream; resolves with the error that ended it. */
async function subscribeFailure(client: ChatClient, room: string): Promise<ParleyError> {
  return failureOf(
    (async () => {
      for await (const event of client.subscribe({ room, afterSeq: 0n }, { timeoutMs: CALL_TIMEOUT_MS })) {
        throw new Error(`unexpected subscription event ${String(event.event.case)}`);
      }
    })(),
  );
}

/** Sends `items` on one SendStream, then reads every answer until the stream ends. */
async function sendStream(client: ChatClient, items: readonly StreamItem[]): Promise<{ answers: SendStreamResponse[]; error: ParleyError | undefined }> {
  const stream = client.sendStream({ timeoutMs: CALL_TIMEOUT_MS });
  const answers: SendStreamResponse[] = [];
  for (const item of items) stream.write(item);
  stream.end();
  try {
    for await (const answer of stream as AsyncIterable<SendStreamResponse>) answers.push(answer);
    return { answers, error: undefined };
  } catch (error) {
    return { answers, error: fromGrpcError(error) };
  }
}

async function tableCounts(): Promise<Record<string, number>> {
  const [row] = await db.sql<{ rooms: string; chat_messages: string; room_members: string }>(
    `select (select count(*) from rooms) as rooms,
            (select count(*) from chat_messages) as chat_messages,
            (select count(*) from room_members) as room_members`,
  );
  return { rooms: Number(row?.rooms), chat_messages: Number(row?.chat_messages), room_members: Number(row?.room_members) };
}

const BAD_CREDENTIALS: readonly { readonly name: string; readonly headers: () => Promise<Record<string, string>> }[] = [
  { name: "no token", headers: () => Promise.resolve({}) },
  {
    name: "an expired token",
    headers: async () => ({ authorization: `Bearer ${await mintToken(TEST_JWT_SECRET, "mallory", { expiresInSeconds: -60 })}` }),
  },
  {
    name: "a token signed with another secret",
    headers: async () => ({ authorization: `Bearer ${await mintToken(OTHER_SECRET, "mallory")}` }),
  },
  { name: "a Basic authorization header", headers: () => Promise.resolve({ authorization: "Basic bWFsbG9yeTpwYXNzd29yZA==" }) },
  { name: "a Bearer header without a token", headers: () => Promise.resolve({ authorization: "Bearer" }) },
  { name: "a Bearer header whose token is not a JWT", headers: () => Promise.resolve({ authorization: "Bearer not-a-jwt" }) },
];

describe("calls that fail authentication", () => {
  it.each(BAD_CREDENTIALS)("with $name: every RPC is UNAUTHENTICATED and nothing is written", async ({ headers }) => {
    const client = clientWith(await headers());
    const room = "guarded";
    const linesBefore = core.logs.lines.length;

    const failures = {
      SendMessage: await failureOf(client.sendMessage({ room, body: "intruder", clientMsgId: "intruder-1" }, { timeoutMs: CALL_TIMEOUT_MS })),
      ListMessages: await failureOf(client.listMessages({ room }, { timeoutMs: CALL_TIMEOUT_MS })),
      MarkRead: await failureOf(client.markRead({ room, seq: 0n }, { timeoutMs: CALL_TIMEOUT_MS })),
      Subscribe: await subscribeFailure(client, room),
      SendStream: (await sendStream(client, [{ streamSeq: 1n, room, body: "intruder", clientMsgId: "intruder-2" }])).error,
    };
    for (const [rpc, failure] of Object.entries(failures)) {
      expect(failure, rpc).toBeInstanceOf(ParleyError);
      expect(failure?.category, `${rpc}: ${failure?.message ?? ""}`).toBe(ErrorCategory.UNAUTHENTICATED);
      expect(failure?.message, rpc).toMatch(/^unauthenticated: /);
      expect(failure?.retryable, rpc).toBe(false);
    }

    // Each refusal is logged once, as a client mistake, with the rpc.
    const lines = core.logs.lines.slice(linesBefore);
    for (const rpc of Object.keys(failures)) {
      const logged = lines.filter((line) => line.rpc === `/parley.v1.ChatService/${rpc}`);
      expect(logged, rpc).toHaveLength(1);
      expect(logged[0], rpc).toMatchObject({ level: "warn", category: "UNAUTHENTICATED" });
      expect(logged[0]?.user, rpc).toBeUndefined();
    }

    expect(await tableCounts()).toEqual({ rooms: 0, chat_messages: 0, room_members: 0 });
  });
});

describe("who the sender is", () => {
  it("a SendStream item with a bad acting token alone is refused (UNAUTHENTICATED); a valid acting token makes its subject the sender", async () => {
    const room = "acting";
    const opener = await core.chat("stream-opener");
    const bob = await mintToken(TEST_JWT_SECRET, "bob");
    const expired = await mintToken(TEST_JWT_SECRET, "carol", { expiresInSeconds: -60 });
    const forged = await mintToken(OTHER_SECRET, "carol");

    const { answers, error } = await sendStream(opener, [
      { streamSeq: 1n, room, body: "from the opener", clientMsgId: "act-1" },
      { streamSeq: 2n, room, body: "from bob", clientMsgId: "act-2", actingToken: bob },
      { streamSeq: 3n, room, body: "expired", clientMsgId: "act-3", actingToken: expired },
      { streamSeq: 4n, room, body: "forged", clientMsgId: "act-4", actingToken: forged },
      { streamSeq: 5n, room, body: "garbage", clientMsgId: "act-5", actingToken: "garbage" },
      { streamSeq: 6n, room, body: "opener again", clientMsgId: "act-6" },
    ]);
    expect(error).toBeUndefined();
    expect(answers.map((answer) => answer.streamSeq)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);

    // Seqs across different senders follow commit order, not stream order:
    // compare by client_msg_id.
    const stored = answers.flatMap((answer) => (answer.result.case === "message" ? [answer.result.value] : []));
    expect(stored.map((message) => [message.clientMsgId, message.sender])).toEqual([
      ["act-1", "stream-opener"],
      ["act-2", "bob"],
      ["act-6", "stream-opener"],
    ]);
    expect(stored.map((message) => message.seq).sort((a, b) => (a < b ? -1 : 1))).toEqual([1n, 2n, 3n]);
    const refused = answers.flatMap((answer) => (answer.result.case === "error" ? [{ streamSeq: answer.streamSeq, detail: answer.result.value }] : []));
    expect(refused.map((answer) => answer.streamSeq)).toEqual([3n, 4n, 5n]);
    for (const { streamSeq, detail } of refused) {
      expect(detail, `stream_seq ${streamSeq}`).toMatchObject({ category: ErrorCategory.UNAUTHENTICATED, retryable: false });
      expect(detail.message, `stream_seq ${streamSeq}`).toMatch(/^unauthenticated: /);
    }

    const rows = await db.sql<{ id: string; client_msg_id: string; sender: string; seq: string }>(
      "select id, client_msg_id, sender, seq from chat_messages where room_id = $1 order by client_msg_id",
      [room],
    );
    expect(rows.map((row) => ({ client_msg_id: row.client_msg_id, sender: row.sender }))).toEqual([
      { client_msg_id: "act-1", sender: "stream-opener" },
      { client_msg_id: "act-2", sender: "bob" },
      { client_msg_id: "act-6", sender: "stream-opener" },
    ]);
    for (const row of rows) {
      expect(stored.find((message) => message.clientMsgId === row.client_msg_id), row.client_msg_id).toMatchObject({ id: row.id, seq: BigInt(row.seq) });
    }

    // Each refused item is logged with its category and stream context, and
    // no user: the item's token named none that could be trusted.
    for (const [seq, id] of [["3", "act-3"], ["4", "act-4"], ["5", "act-5"]] as const) {
      const logged = core.logs.find({ category: "UNAUTHENTICATED", stream_seq: seq });
      expect(logged, id).toHaveLength(1);
      expect(logged[0], id).toMatchObject({ level: "warn", client_msg_id: id, room, rpc: "/parley.v1.ChatService/SendStream" });
      expect(logged[0]?.user, id).toBeUndefined();
    }
  });

  it("the sender of record is always the token's sub", async () => {
    const room = "two-users";
    const alice = await core.chat("alice");
    const dave = await core.chat("dave@example.com");
    const answers = await Promise.all([
      alice.sendMessage({ room, body: "hi from alice", clientMsgId: "same-key" }),
      dave.sendMessage({ room, body: "hi from dave", clientMsgId: "same-key" }),
      alice.sendMessage({ room, body: "again from alice", clientMsgId: "alice-2" }),
    ]);
    expect(answers.map((answer) => answer.message?.sender)).toEqual(["alice", "dave@example.com", "alice"]);

    const rows = await db.sql<{ id: string; sender: string; body: string }>(
      "select id, sender, body from chat_messages where room_id = $1 order by seq",
      [room],
    );
    expect(new Map(rows.map((row) => [row.body, row.sender]))).toEqual(
      new Map([
        ["hi from alice", "alice"],
        ["hi from dave", "dave@example.com"],
        ["again from alice", "alice"],
      ]),
    );
    for (const answer of answers) {
      expect(rows.find((row) => row.id === answer.message?.id)?.sender).toBe(answer.message?.sender);
    }
    // Read positions are kept per token subject too.
    const members = await db.sql<{ user_id: string }>("select user_id from room_members where room_id = $1 order by user_id", [room]);
    expect(members.map((member) => member.user_id)).toEqual(["alice", "dave@example.com"]);
  });
});

describe("a relay's own credential acts as nobody", () => {
  // What a stolen bridge credential can do: follow rooms for connections the
  // bridge authorized, and carry sends that each bear a user's own token.
  // Nothing a user does can be done with it alone.
  it("refuses every user call made with the relay token, a send item without an acting token, and parley-act-as; nothing is written", async () => {
    const room = "relay-target";
    const alice = await core.rooms("alice");
    await alice.createRoom({ kind: RoomKind.PUBLIC, room, members: ["bob"] });
    const relayToken = await mintToken(TEST_JWT_SECRET, TEST_RELAY_SUBJECT, { scopes: [ROOMS_RELAY_SCOPE] });
    const headers = { authorization: `Bearer ${relayToken}` };
    const relayChat = clientWith(headers);
    const relayRooms = createClient(RoomService, core.core.address, { headers: () => headers });
    const relayNotifications = createClient(NotificationService, core.core.address, { headers: () => headers });
    const actAs = createClient(RoomService, core.core.address, { headers: () => ({ ...headers, "parley-act-as": "alice" }) });
    const before = await db.sql<{ n: string }>("select count(*) as n from chat_messages where room_id = $1", [room]);
    const eventsBefore = await db.sql<{ n: string }>("select count(*) as n from room_events where room_id = $1", [room]);
    try {
      const failures = {
        SendMessage: await failureOf(relayChat.sendMessage({ room, body: "as the relay", clientMsgId: "relay-1" }, { timeoutMs: CALL_TIMEOUT_MS })),
        MarkRead: await failureOf(relayChat.markRead({ room, seq: 1n }, { timeoutMs: CALL_TIMEOUT_MS })),
        Join: await failureOf(relayRooms.join({ room }, { timeoutMs: CALL_TIMEOUT_MS })),
        Invite: await failureOf(actAs.invite({ room, user: "mallory" }, { timeoutMs: CALL_TIMEOUT_MS })),
        ListNotifications: await failureOf(relayNotifications.listNotifications({}, { timeoutMs: CALL_TIMEOUT_MS })),
      };
      for (const [rpc, failure] of Object.entries(failures)) {
        expect(failure.category, `${rpc}: ${failure.message}`).toBe(ErrorCategory.PERMISSION_DENIED);
        expect(failure.message, rpc).toMatch(/a relay identity \(rooms:relay\) does not act by itself/);
      }
      const { answers, error } = await sendStream(relayChat, [
        { streamSeq: 1n, room, body: "nobody's", clientMsgId: "relay-2" },
        { streamSeq: 2n, room, body: "forged alice", clientMsgId: "relay-3", actingToken: await mintToken(OTHER_SECRET, "alice") },
      ]);
      expect(error).toBeUndefined();
      expect(answers.map((answer) => (answer.result.case === "error" ? answer.result.value.category : answer.result.case))).toEqual([ErrorCategory.PERMISSION_DENIED, ErrorCategory.UNAUTHENTICATED]);
      expect(answers[0]?.result.case === "error" ? answers[0].result.value.message : "").toMatch(/sends only for users: each item needs the user's acting_token/);
    } finally {
      relayRooms.close();
      relayNotifications.close();
      actAs.close();
    }
    expect(await db.sql("select count(*) as n from chat_messages where room_id = $1", [room])).toEqual(before);
    expect(await db.sql("select count(*) as n from room_events where room_id = $1", [room])).toEqual(eventsBefore);
  });

  it("refuses a send item whose acting token is itself a relay credential, whoever opened the stream; nothing is written", async () => {
    // A relay token in acting_token would make the relay the sender: with
    // rooms on first use it would join public rooms and post as itself.
    const room = "relay-as-itself";
    await (await core.rooms("alice")).createRoom({ kind: RoomKind.PUBLIC, room });
    const relayToken = await mintToken(TEST_JWT_SECRET, TEST_RELAY_SUBJECT, { scopes: [ROOMS_RELAY_SCOPE] });
    const relayChat = clientWith({ authorization: `Bearer ${relayToken}` });
    const userChat = clientWith({ authorization: `Bearer ${await mintToken(TEST_JWT_SECRET, "alice")}` });
    const counts = () => db.sql("select (select count(*) from chat_messages where room_id = $1) as messages, (select count(*) from room_members where room_id = $1) as members", [room]);
    const before = await counts();

    for (const client of [relayChat, userChat]) {
      const { answers, error } = await sendStream(client, [{ streamSeq: 1n, room, body: "the relay itself", clientMsgId: "relay-self-1", actingToken: relayToken }]);
      expect(error).toBeUndefined();
      expect(answers[0]?.result.case === "error" ? answers[0].result.value : answers[0]?.result.case).toMatchObject({
        category: ErrorCategory.PERMISSION_DENIED,
        message: expect.stringMatching(/sends only for users/) as unknown,
      });
    }
    expect(await counts()).toEqual(before);
  });

  it("a user token carrying the relay scope (a misconfigured identity provider) is refused: only configured relay subjects may hold it", async () => {
    const room = "relay-scope-vault";
    await (await core.rooms("alice")).createRoom({ kind: RoomKind.PRIVATE, room });
    await (await core.chat("alice")).sendMessage({ room, body: "the plan", clientMsgId: "plan-1" });
    const impostor = clientWith({ authorization: `Bearer ${await mintToken(TEST_JWT_SECRET, "mallory", { scopes: [ROOMS_RELAY_SCOPE] })}` });
    const refused = await failureOf(impostor.listRoomEvents({ room }, { timeoutMs: CALL_TIMEOUT_MS }));
    expect(refused.category).toBe(ErrorCategory.UNAUTHENTICATED);
    expect(refused.message).toMatch(/carries the `rooms:relay` scope, but `mallory` is not a configured relay \(PARLEY_RELAY_SUBJECTS\)/);
    expect((await subscribeFailure(impostor, room)).category).toBe(ErrorCategory.UNAUTHENTICATED);
  });

  it("carries a send that bears the user's own token, as that user", async () => {
    const room = "relay-carried";
    await (await core.rooms("carol")).createRoom({ kind: RoomKind.PUBLIC, room });
    const relayChat = clientWith({ authorization: `Bearer ${await mintToken(TEST_JWT_SECRET, TEST_RELAY_SUBJECT, { scopes: [ROOMS_RELAY_SCOPE] })}` });
    const { answers } = await sendStream(relayChat, [{ streamSeq: 1n, room, body: "carried", clientMsgId: "carried-1", actingToken: await mintToken(TEST_JWT_SECRET, "carol") }]);
    expect(answers[0]?.result.case === "message" ? answers[0].result.value.sender : answers[0]?.result.case).toBe("carol");
  });

  it("WhoAmI answers what core verified: user, expiry and scopes; a refused token says why", async () => {
    const identity = createClient(IdentityService, core.core.address);
    try {
      const token = await mintToken(TEST_JWT_SECRET, "dora", { scopes: ["notifications:send"], expiresInSeconds: 600 });
      const answer = await identity.whoAmI({}, { headers: { authorization: `Bearer ${token}` }, timeoutMs: CALL_TIMEOUT_MS });
      expect(answer.user).toBe("dora");
      expect(answer.scopes).toEqual(["notifications:send"]);
      expect(Number(answer.expiresAt?.seconds) - Date.now() / 1000).toBeGreaterThan(590);
      const expired = await mintToken(TEST_JWT_SECRET, "dora", { expiresInSeconds: -60 });
      const refused = await failureOf(identity.whoAmI({}, { headers: { authorization: `Bearer ${expired}` }, timeoutMs: CALL_TIMEOUT_MS }));
      expect(refused).toMatchObject({ category: ErrorCategory.UNAUTHENTICATED, message: "unauthenticated: token expired" });
    } finally {
      identity.close();
    }
  });

  it("the in-process relay token is signed with a key of that core alone: another core refuses it", async () => {
    const token = await core.core.mintRelayToken(600);
    const identity = createClient(IdentityService, core.core.address);
    const other = await startTestCore(db);
    const elsewhere = createClient(IdentityService, other.core.address);
    try {
      expect((await identity.whoAmI({}, { headers: { authorization: `Bearer ${token}` } })).scopes).toEqual([ROOMS_RELAY_SCOPE]);
      expect(await failureOf(elsewhere.whoAmI({}, { headers: { authorization: `Bearer ${token}` } }))).toMatchObject({ category: ErrorCategory.UNAUTHENTICATED });
    } finally {
      identity.close();
      elsewhere.close();
      await other.stop();
    }
  });
});
