import { connect as http2Connect, constants as http2Constants } from "node:http2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ChatService, type ChatServiceSubscribeResponse } from "../../gen/parley/v1/chat_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { DEFAULT_SERVER_TRANSPORT } from "../../src/runtime/grpc/server-transport.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { spawnCore } from "../support/processes.js";
import { nextItem, type OpenServerStream, openOnceFree, openServerStream, type OpenStream } from "../support/open-streams.js";
import { FrameType, RawHttp2Client } from "../support/raw-http2.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { eventually } from "../support/ws-client.js";

type Chat = ServiceClient<typeof ChatService>;

const KEEPALIVE = { keepaliveTimeMs: 300, keepaliveTimeoutMs: 300 };
const IDLE_MS = 500;

let db: TestDatabase;
/** Two streams per HTTP/2 connection. */
let narrow: TestCore;
/** Pings every connection every 300 ms, cuts one that has not answered 300 ms later; one subscription per user. */
let pinging: TestCore;
/** Closes a connection that carried no call for 500 ms; otherwise the defaults. */
let idle: TestCore;
const open: OpenStream[] = [];
const closers: { close(): void | Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  narrow = await startTestCore(db, { grpcTransport: { maxConcurrentStreams: 2 } });
  pinging = await startTestCore(db, { grpcTransport: KEEPALIVE, streamQuota: { maxSubscriptionsPerCaller: 1 } });
  idle = await startTestCore(db, { grpcTransport: { maxConnectionIdleMs: IDLE_MS } });
});

afterEach(async () => {
  for (const stream of open.splice(0)) stream.cancel();
  for (const closer of closers.splice(0)) await closer.close();
});

afterAll(async () => {
  await Promise.all([narrow.stop(), pinging.stop(), idle.stop()]);
  await db.drop();
});

/** A ChatService client of `user` on a connection of its own (grpc-js shares one per address and options otherwise). */
async function ownConnection(address: string, user: string, channelOptions: Record<string, number> = {}): Promise<Chat> {
  const token = await mintToken(TEST_JWT_SECRET, user);
  const client = createClient(ChatService, address, { headers: () => ({ authorization: `Bearer ${token}` }), channelOptions: { "grpc.use_local_subchannel_pool": 1, ...channelOptions } });
  closers.push(client);
  return client;
}

async function subscribed(chat: Chat, room: string): Promise<OpenServerStream<ChatServiceSubscribeResponse>> {
  const opening = await openServerStream<ChatServiceSubscribeResponse>((signal) => chat.subscribe({ room, afterSeq: 0n }, { signal }));
  if (opening.refused !== undefined) throw opening.refused;
  open.push(opening.open);
  return opening.open;
}

async function proxyTo(address: string): Promise<TcpProxy> {
  const proxy = await startTcpProxy(address);
  closers.push(proxy);
  return proxy;
}

describe("streams per HTTP/2 connection (grpc.max_concurrent_streams)", () => {
  it("is announced in the server's SETTINGS: the configured value, 16,384 by default", async () => {
    for (const [core, expected] of [
      [narrow, 2],
      [idle, DEFAULT_SERVER_TRANSPORT.maxConcurrentStreams],
    ] as const) {
      const session = http2Connect(`http://${core.core.address}`);
      closers.push(session);
      const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) => session.once("remoteSettings", resolve));
      expect(settings.maxConcurrentStreams).toBe(expected);
    }
    expect(DEFAULT_SERVER_TRANSPORT.maxConcurrentStreams).toBe(16_384);
  });

  it("a grpc-js client holds calls past it, unary ones included, and sends them as streams end", async () => {
    const chat = await ownConnection(narrow.core.address, "queuer");
    const first = await subscribed(chat, "narrow-1");
    const second = await subscribed(chat, "narrow-2");

    // The connection is full: a third stream and a send wait in the client.
    let third: OpenServerStream<ChatServiceSubscribeResponse> | undefined;
    const thirdOpened = openServerStream<ChatServiceSubscribeResponse>((signal) => chat.subscribe({ room: "narrow-1", afterSeq: 0n }, { signal })).then((opening) => {
      if (opening.refused !== undefined) throw opening.refused;
      open.push(opening.open);
      third = opening.open;
      return opening.open;
    });
    let sendAnswered = false;
    const send = chat.sendMessage({ room: "narrow-1", body: "queued behind the streams", clientMsgId: "narrow-queued" }).then((answer) => {
      sendAnswered = true;
      return answer;
    });

    // Meanwhile the server serves another connection in full: a send,
    // delivered to the first stream of the full one.
    const other = await ownConnection(narrow.core.address, "prober");
    const probe = await other.sendMessage({ room: "narrow-1", body: "from another connection", clientMsgId: "narrow-probe" });
    const delivered = await nextItem(first);
    expect(delivered.event.value).toMatchObject({ seq: probe.message?.seq });
    expect(third).toBeUndefined();
    expect(sendAnswered).toBe(false);

    // Two streams end: both waiting calls go out and are answered.
    first.cancel();
    second.cancel();
    await thirdOpened;
    const queued = await send;
    expect(queued.message?.body).toBe("queued behind the streams");
  });

  it("a client that opens more than it allows, ignoring the SETTINGS, loses the whole connection", async () => {
    const client = new RawHttp2Client(narrow.core.address);
    closers.push(client);
    await client.ready;
    expect(client.serverSetting(http2Constants.NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(2);
    // Streams 1 and 3 fit; 5 is one too many.
    client.openStreams([1, 3, 5], "/parley.v1.ChatService/Subscribe");
    await client.closed;
    const goaway = client.goaway();
    expect(goaway?.lastStreamId).toBe(3);
    expect(goaway?.errorCode).not.toBe(http2Constants.NGHTTP2_NO_ERROR);
    // Stream 5 was never taken on: no answer on it, only the end of the connection.
    expect(client.frames.filter((frame) => frame.stream === 5 && frame.type === FrameType.HEADERS)).toHaveLength(0);
  });
});

describe("keepalive (grpc.keepalive_time_ms, grpc.keepalive_timeout_ms)", () => {
  it("cuts a peer that stopped answering within time + timeout, freeing its streams' slots; a peer that pings often is never punished", async () => {
    // A client that vanishes after subscribing (its one subscription).
    const deadProxy = await proxyTo(pinging.core.address);
    const dead = await ownConnection(deadProxy.address, "vanisher");
    await subscribed(dead, "reap-dead");
    const direct = await ownConnection(pinging.core.address, "vanisher");
    const refused = await openServerStream((signal) => direct.subscribe({ room: "reap-direct", afterSeq: 0n }, { signal }));
    expect(refused.refused?.message).toMatch(/PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER/);

    // A live client that pings every 50 ms, far more often than the bridge's 30 s.
    const liveProxy = await proxyTo(pinging.core.address);
    const live = await ownConnection(liveProxy.address, "pinger", { "grpc.keepalive_time_ms": 50, "grpc.keepalive_permit_without_calls": 1 });
    const liveStream = await subscribed(live, "reap-live");

    deadProxy.blackhole();
    const since = Date.now();
    await eventually(() => deadProxy.openUpstreams === 0, 10_000, "the server closes the connection of the peer that stopped answering");
    const reapedAfterMs = Date.now() - since;
    // Bound loosely (the machine is shared): what matters is that it is
    // closed at all, and well before the grpc-js default (no pings).
    expect(reapedAfterMs).toBeLessThan(10 * (KEEPALIVE.keepaliveTimeMs + KEEPALIVE.keepaliveTimeoutMs));
    await openOnceFree(() => openServerStream((signal) => direct.subscribe({ room: "reap-direct", afterSeq: 0n }, { signal })).then((opening) => {
      if (opening.open !== undefined) open.push(opening.open);
      return opening;
    }));

    // The live one kept its one connection, and its stream delivers.
    const sent = await live.sendMessage({ room: "reap-live", body: "still here", clientMsgId: "reap-live-1" });
    expect((await nextItem(liveStream)).event.value).toMatchObject({ seq: sent.message?.seq });
    expect(liveProxy.connections).toBe(1);
    expect(liveProxy.openUpstreams).toBe(1);
  });
});

describe("idle connections (grpc.max_connection_idle_ms)", () => {
  it("closes a connection without calls; the client reconnects on its next call", async () => {
    const proxy = await proxyTo(idle.core.address);
    const chat = await ownConnection(proxy.address, "idler");
    await chat.sendMessage({ room: "idle-room", body: "before", clientMsgId: "idle-1" });
    await eventually(() => proxy.openUpstreams === 0, 10_000, "the server closes the idle connection");
    const after = await chat.sendMessage({ room: "idle-room", body: "after", clientMsgId: "idle-2" });
    expect(after.message?.body).toBe("after");
    expect(proxy.connections).toBe(2);
  });

  it("keeps a connection that holds a stream, however long it is quiet", async () => {
    const proxy = await proxyTo(idle.core.address);
    const chat = await ownConnection(proxy.address, "streamer");
    const stream = await subscribed(chat, "idle-stream");
    // The probe connection's own close marks the idle time passed for any connection.
    const probeProxy = await proxyTo(idle.core.address);
    const probe = await ownConnection(probeProxy.address, "idle-probe");
    await probe.sendMessage({ room: "idle-stream", body: "quiet after this", clientMsgId: "idle-stream-1" });
    await eventually(() => probeProxy.openUpstreams === 0, 10_000, "the idle probe connection is closed");
    await nextItem(stream);
    expect(proxy.openUpstreams).toBe(1);
    expect(proxy.connections).toBe(1);
  });
});

describe("parley core", () => {
  it("takes its gRPC limits from the environment", async () => {
    const { process: child, address } = await spawnCore({
      DATABASE_URL: db.url,
      PARLEY_JWT_SECRET: TEST_JWT_SECRET,
      PARLEY_GRPC_MAX_CONCURRENT_STREAMS: "7",
      PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: "2",
      PARLEY_GRPC_MAX_STREAMS_PER_CALLER: "2",
    });
    closers.push({ close: () => child.stop() });
    const session = http2Connect(`http://${address}`);
    closers.push(session);
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) => session.once("remoteSettings", resolve));
    expect(settings.maxConcurrentStreams).toBe(7);

    const chat = await ownConnection(address, "env-capped");
    await subscribed(chat, "env-1");
    await subscribed(chat, "env-2");
    const third = await openServerStream((signal) => chat.subscribe({ room: "env-3", afterSeq: 0n }, { signal }));
    expect(third.refused?.message).toBe("env-capped has 2 subscriptions open on this server, the most one caller may hold (PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER); end one before opening another");
  });
});
