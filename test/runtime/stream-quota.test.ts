import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ChatService, type ChatServiceSubscribeResponse } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import type { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { DEFAULT_STREAM_QUOTA } from "../../src/runtime/interceptors/stream-quota.js";
import type { ParleyError } from "../../src/wire/errors/parley-error.js";
import { startTestCore, TEST_JWT_SECRET, TEST_RELAY_TOKEN, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { nextItem, type Opening, openOnceFree, openSendStream, openServerStream, type OpenStream } from "../support/open-streams.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

type Chat = ServiceClient<typeof ChatService>;

/** The small caps of `small`, so that each slot can be watched. */
const SMALL = { maxSubscriptionsPerCaller: 3, maxStreamsPerCaller: 5 };
const SUBSCRIPTIONS_LIMIT = /subscriptions open on this server, the most one caller may hold \(PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER\)/;
const STREAMS_LIMIT = /streaming calls open on this server, the most one caller may hold \(PARLEY_GRPC_MAX_STREAMS_PER_CALLER\)/;

let db: TestDatabase;
/** A core with the default caps. */
let core: TestCore;
/** A core with SMALL caps. */
let small: TestCore;
const open: OpenStream[] = [];
const closers: { close(): void | Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
  small = await startTestCore(db, { streamQuota: SMALL });
});

afterEach(async () => {
  for (const stream of open.splice(0)) stream.cancel();
  for (const closer of closers.splice(0)) await closer.close();
});

afterAll(async () => {
  await small.stop();
  await core.stop();
  await db.drop();
});

function kept<S extends OpenStream>(opening: Opening<S>): Opening<S> {
  if (opening.open !== undefined) open.push(opening.open);
  return opening;
}

function subscribe(chat: Chat, room: string) {
  return openServerStream<ChatServiceSubscribeResponse>((signal) => chat.subscribe({ room, afterSeq: 0n }, { signal })).then(kept);
}

function subscribeNotifications(notifications: ServiceClient<typeof NotificationService>) {
  return openServerStream((signal) => notifications.subscribe({}, { signal })).then(kept);
}

function sendStream(chat: Chat, room: string) {
  return openSendStream(chat, room).then(kept);
}

/** The server's answer to one call over the cap. */
function expectRefused(opening: Opening<OpenStream>, limit: RegExp): void {
  expect(opening.open, "a call past the cap was accepted").toBeUndefined();
  expectRefusal(opening.refused, limit);
}

function expectRefusal(refused: ParleyError | undefined, limit: RegExp): void {
  if (refused === undefined) throw new Error("expected a refusal");
  expect(refused.category, refused.message).toBe(ErrorCategory.RATE_LIMITED);
  expect(refused.message).toMatch(limit);
  expect(refused.retryable).toBe(true);
  expect(refused.retryAfterMs).toBe(1_000);
}

function accepted<S extends OpenStream>(opening: Opening<S>): S {
  if (opening.refused === undefined) return opening.open;
  throw opening.refused;
}

describe("per-caller stream caps at the defaults", () => {
  it(
    "5,000 Subscribe streams from one user: the first 64 open and deliver, the rest are refused RATE_LIMITED at once; a second user is unaffected; cancelled ones free their slots",
    async () => {
      const { maxSubscriptionsPerCaller } = DEFAULT_STREAM_QUOTA;
      expect(maxSubscriptionsPerCaller).toBe(64);
      const alice = await core.chat("alice-5000");
      const room = "quota-5000";

      const openings = await Promise.all(Array.from({ length: 5_000 }, () => subscribe(alice, room)));
      const opened = openings.flatMap((opening) => (opening.open === undefined ? [] : [opening.open]));
      expect(opened).toHaveLength(maxSubscriptionsPerCaller);
      const refusals = openings.flatMap((opening) => (opening.refused === undefined ? [] : [opening.refused]));
      expect(refusals).toHaveLength(5_000 - maxSubscriptionsPerCaller);
      for (const refusal of refusals) expectRefusal(refusal, SUBSCRIPTIONS_LIMIT);
      expect(refusals[0]?.message).toBe(
        "alice-5000 has 64 subscriptions open on this server, the most one caller may hold (PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER); end one before opening another",
      );
      // Logged as a client's mistake, with the user, at most once a second:
      // every refusal is on a line of its own or counted in a later line's `unlogged`.
      const logged = core.logs.find({ rpc: "/parley.v1.ChatService/Subscribe", user: "alice-5000", category: "RATE_LIMITED" });
      expect(logged.length).toBeGreaterThanOrEqual(1);
      expect(logged.length).toBeLessThan(20);
      expect(logged[0]).toMatchObject({ level: "warn", limit: maxSubscriptionsPerCaller });
      // One more refusal a second later: its line counts every refusal not logged before it.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect((await subscribe(alice, room)).refused?.category).toBe(ErrorCategory.RATE_LIMITED);
      const lines = core.logs.find({ rpc: "/parley.v1.ChatService/Subscribe", user: "alice-5000", category: "RATE_LIMITED" });
      const unlogged = lines.reduce((total, line) => total + (typeof line.unlogged === "number" ? line.unlogged : 0), 0);
      expect(lines.length + unlogged).toBe(5_000 - maxSubscriptionsPerCaller + 1);

      // At the cap, unary calls go on, and every open subscription delivers.
      const sent = await alice.sendMessage({ room, body: "to every open subscription", clientMsgId: "quota-5000-1" });
      const delivered = await Promise.all(opened.map((stream) => nextItem(stream)));
      for (const item of delivered) {
        expect(item.event.case).toBe("message");
        expect(item.event.value).toMatchObject({ seq: sent.message?.seq, body: "to every open subscription" });
      }

      // Another user, meanwhile, has a cap of their own.
      const bob = await core.chat("bob-5000");
      const bobs = await Promise.all(Array.from({ length: maxSubscriptionsPerCaller }, () => subscribe(bob, room)));
      for (const opening of bobs) accepted(opening);
      expectRefused(await subscribe(bob, room), SUBSCRIPTIONS_LIMIT);

      // Cancelled, alice's 64 make room for exactly 64 new ones.
      for (const stream of opened) stream.cancel();
      for (let i = 0; i < maxSubscriptionsPerCaller; i++) await openOnceFree(() => subscribe(alice, room));
      expectRefused(await subscribe(alice, room), SUBSCRIPTIONS_LIMIT);
    },
    120_000,
  );
});

describe("per-caller stream caps, slot by slot", () => {
  it("a cancelled subscription frees exactly its slot, however often a caller churns", async () => {
    const chat = await small.chat("churner");
    const streams = [];
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) streams.push(accepted(await subscribe(chat, `churn-${i}`)));
    expectRefused(await subscribe(chat, "churn-x"), SUBSCRIPTIONS_LIMIT);
    for (let round = 0; round < 20; round++) {
      streams.shift()?.cancel();
      streams.push(await openOnceFree(() => subscribe(chat, `churn-${round}`)));
      expectRefused(await subscribe(chat, "churn-x"), SUBSCRIPTIONS_LIMIT);
    }
  });

  it("a stream that fails in its handler holds no slot once its error arrives", async () => {
    const chat = await small.chat("failer");
    // More failures than slots: one slot kept by any of them would turn the
    // fourth into RATE_LIMITED.
    for (let i = 0; i < 3 * SMALL.maxStreamsPerCaller; i++) {
      const opening = await subscribe(chat, "");
      expect(opening.refused?.category).toBe(ErrorCategory.VALIDATION);
    }
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) accepted(await subscribe(chat, `failer-${i}`));
    expectRefused(await subscribe(chat, "failer-x"), SUBSCRIPTIONS_LIMIT);
  });

  it("a stream that ends at its deadline frees its slot", async () => {
    const chat = await small.chat("deadliner");
    const ending = [];
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) {
      ending.push(accepted(await openServerStream((signal) => chat.subscribe({ room: `deadline-${i}`, afterSeq: 0n }, { signal, timeoutMs: 500 }))));
    }
    expectRefused(await subscribe(chat, "deadline-x"), SUBSCRIPTIONS_LIMIT);
    for (const stream of ending) {
      await expect(stream.rest.next()).rejects.toMatchObject({ category: ErrorCategory.TIMEOUT });
    }
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) await openOnceFree(() => subscribe(chat, `deadline-${i}`));
    expectRefused(await subscribe(chat, "deadline-x"), SUBSCRIPTIONS_LIMIT);
  });

  it("a client whose connection drops frees every slot it held", async () => {
    const proxy: TcpProxy = await startTcpProxy(small.core.address);
    closers.push(proxy);
    const token = await mintToken(TEST_JWT_SECRET, "dropper");
    // Its own connection, through the proxy (grpc-js would share one to the same address and options).
    const viaProxy = createClient(ChatService, proxy.address, { headers: () => ({ authorization: `Bearer ${token}` }), channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    closers.push(viaProxy);
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) accepted(await subscribe(viaProxy, `drop-${i}`));
    const direct = await small.chat("dropper");
    expectRefused(await subscribe(direct, "drop-x"), SUBSCRIPTIONS_LIMIT);

    proxy.cut();
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) await openOnceFree(() => subscribe(direct, `drop-${i}`));
    expectRefused(await subscribe(direct, "drop-x"), SUBSCRIPTIONS_LIMIT);
  });

  it("SubscribeNotifications counts as a subscription", async () => {
    const chat = await small.chat("nina");
    const notifications = await small.notifications("nina");
    const inbox = accepted(await subscribeNotifications(notifications));
    for (let i = 1; i < SMALL.maxSubscriptionsPerCaller; i++) accepted(await subscribe(chat, `nina-${i}`));
    expectRefused(await subscribe(chat, "nina-x"), SUBSCRIPTIONS_LIMIT);
    expectRefused(await subscribeNotifications(notifications), SUBSCRIPTIONS_LIMIT);
    inbox.cancel();
    await openOnceFree(() => subscribe(chat, "nina-x"));
    expectRefused(await subscribeNotifications(notifications), SUBSCRIPTIONS_LIMIT);
  });

  it("send streams count against the stream cap, with subscriptions; unary calls are never counted", async () => {
    const mixed = await small.chat("sam");
    for (let i = 0; i < SMALL.maxSubscriptionsPerCaller; i++) accepted(await subscribe(mixed, `sam-${i}`));
    for (let i = SMALL.maxSubscriptionsPerCaller; i < SMALL.maxStreamsPerCaller; i++) accepted(await sendStream(mixed, "sam-0"));
    expectRefused(await sendStream(mixed, "sam-0"), STREAMS_LIMIT);
    expectRefused(await subscribe(mixed, "sam-x"), SUBSCRIPTIONS_LIMIT);
    await expect(mixed.sendMessage({ room: "sam-0", body: "unary at the cap", clientMsgId: "sam-unary" })).resolves.toMatchObject({ duplicate: false });

    // Streams alone fill the stream cap, and then no subscription fits either.
    const sender = await small.chat("sid");
    for (let i = 0; i < SMALL.maxStreamsPerCaller; i++) accepted(await sendStream(sender, "sid-room"));
    expectRefused(await sendStream(sender, "sid-room"), STREAMS_LIMIT);
    expectRefused(await subscribe(sender, "sid-room"), STREAMS_LIMIT);
  });

  it("a relay is not held to the per-user numbers", async () => {
    const relay = createClient(ChatService, small.core.address, { headers: () => ({ authorization: `Bearer ${TEST_RELAY_TOKEN.current()}` }) });
    closers.push(relay);
    const past = 4 * SMALL.maxStreamsPerCaller;
    const follows = await Promise.all(Array.from({ length: past }, (_, i) => subscribe(relay, `relay-${i}`)));
    for (const opening of follows) accepted(opening);
    // Its send stream carries users' sends; an item without a user's token is answered, not refused.
    for (let i = 0; i < SMALL.maxStreamsPerCaller; i++) accepted(await sendStream(relay, "relay-0"));
  });
});
