// The bridge's caps across connections (per user, per address, TCP
// connections without a WebSocket, request deadlines) and the budgets a
// user's connections share (sends, subscribes, followed rooms), against a
// real core and real sockets.
import { connect as tcpConnect, type Socket } from "node:net";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type BridgeOptions, type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import type { AdmissionLimits, ConnectionLimits } from "../../src/bridge/limits.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ConnectOptions, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
let core: TestCore;
const logs = new LogCapture("warn");
const running = new Set<RunningBridge>();
const clients: WsTestClient[] = [];
const sockets: Socket[] = [];
let unique = 0;

function id(prefix: string): string {
  unique++;
  return `${prefix}-${process.pid}-${unique}`;
}

async function bridge(admission: Partial<AdmissionLimits>, extra: Partial<BridgeOptions> & { limits?: Partial<ConnectionLimits> } = {}): Promise<RunningBridge> {
  const started = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: logs.logger, admission, ...extra });
  running.add(started);
  return started;
}

async function connect(on: RunningBridge, user: string, path = "/ws", options: ConnectOptions = {}): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${on.address}`, path, { token: await mintToken(TEST_JWT_SECRET, user), ...options });
  clients.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

async function refusal(on: RunningBridge, user: string, options: ConnectOptions = {}) {
  return WsTestClient.refusal(`http://${on.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, user), ...options });
}

/** A raw TCP connection to the bridge; resolves once connected. */
function rawSocket(on: RunningBridge): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(on.port, "127.0.0.1", () => {
      resolve(socket);
    });
    socket.on("error", reject);
    sockets.push(socket);
  });
}

/** Milliseconds until the server ends `socket` (it must, within `timeoutMs`). */
function endedWithin(socket: Socket, timeoutMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`the server kept the socket for more than ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("data", () => undefined);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const started of [...running]) {
    running.delete(started);
    await started.stop(0);
  }
});

afterAll(async () => {
  await core.stop(0);
  await db.drop();
});

describe("connections per user and per address", () => {
  it("refuses a user's connection past the cap with 429 and Retry-After, and takes it again once one closed; other users are not affected", async () => {
    const target = await bridge({ maxConnectionsPerUser: 3 });
    const alice = id("alice");
    const held = [await connect(target, alice), await connect(target, alice), await connect(target, alice)];
    const refused = await refusal(target, alice);
    expect(refused.status).toBe(429);
    expect(refused.body.category).toBe("RATE_LIMITED");
    expect(refused.body.message).toContain("PARLEY_WS_MAX_CONNECTIONS_PER_USER");
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    await connect(target, id("bob"));
    await held[0]?.close();
    await expect.poll(() => target.connections.size).toBe(3);
    await expect.poll(async () => (await WsTestClient.connect(`http://${target.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, alice) }).then((c) => (clients.push(c), "open"), () => "refused"))).toBe("open");
  });

  it("refuses connections past the cap per address before asking core who the token is", async () => {
    const target = await bridge({ maxConnectionsPerAddress: 2 });
    await connect(target, id("u"));
    await connect(target, id("u"));
    const refused = await WsTestClient.refusal(`http://${target.address}`, "/ws", { token: "not-even-a-token" });
    expect(refused.status).toBe(429);
    expect(refused.body.category).toBe("RATE_LIMITED");
    expect(refused.body.message).toContain("PARLEY_WS_MAX_CONNECTIONS_PER_ADDRESS");
  });

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy: a client cannot pick its own address", async () => {
    const target = await bridge({ maxConnectionsPerAddress: 1 });
    await connect(target, id("u"), "/ws", { headers: { "x-forwarded-for": "203.0.113.1" } });
    const refused = await refusal(target, id("u"), { headers: { "x-forwarded-for": "203.0.113.2" } });
    expect(refused.status).toBe(429);
  });

  it("behind a trusted proxy, counts the forwarded client address", async () => {
    const target = await bridge({ maxConnectionsPerAddress: 1 }, { trustedProxies: ["loopback"] });
    await connect(target, id("u"), "/ws", { headers: { "x-forwarded-for": "203.0.113.1" } });
    // Another client behind the same proxy is another address.
    await connect(target, id("u"), "/ws", { headers: { "x-forwarded-for": "203.0.113.2" } });
    // A spoofed hop in front of the real one does not help: the last untrusted hop counts.
    const refused = await refusal(target, id("u"), { headers: { "x-forwarded-for": "198.51.100.9, 203.0.113.1" } });
    expect(refused.status).toBe(429);
  });
});

describe("TCP connections without a WebSocket", () => {
  it("drops a slowloris upgrade (headers trickling in) within the headers timeout", async () => {
    const target = await bridge({ headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 });
    const socket = await rawSocket(target);
    socket.write("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(`X-Slow-${Date.now()}: 1\r\n`);
    }, 200);
    try {
      const ms = await endedWithin(socket, 4_000);
      // The timeout plus Node's check interval (at most 1 s here).
      expect(ms).toBeLessThan(2_600);
    } finally {
      clearInterval(trickle);
    }
  });

  it("drops a connection that never sends a byte within the headers timeout", async () => {
    const target = await bridge({ headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 });
    const socket = await rawSocket(target);
    expect(await endedWithin(socket, 4_000)).toBeLessThan(2_600);
  });

  it("drops TCP connections past the cap per address at once, and frees the place when one upgrades or closes", async () => {
    const target = await bridge({ maxPendingConnectionsPerAddress: 3 });
    const idle = [await rawSocket(target), await rawSocket(target), await rawSocket(target)];
    const fourth = await rawSocket(target);
    expect(await endedWithin(fourth, 2_000)).toBeLessThan(1_000);
    const freed = idle[0];
    if (freed === undefined) throw new Error("no socket");
    freed.destroy();
    await expect.poll(async () => {
      const client = await WsTestClient.connect(`http://${target.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, id("u")) }).catch(() => undefined);
      if (client !== undefined) clients.push(client);
      return client !== undefined;
    }).toBe(true);
    // An upgraded connection no longer counts as pending: the place it took is free again.
    freed.destroy();
    await connect(target, id("u"));
  });

  it("caps TCP connections without a WebSocket over all addresses", async () => {
    const target = await bridge({ maxPendingConnections: 2 });
    await rawSocket(target);
    await rawSocket(target);
    const third = await rawSocket(target);
    expect(await endedWithin(third, 2_000)).toBeLessThan(1_000);
  });
});

describe("what a user's connections share", () => {
  it("holds one user's send rate over all their connections, refusing the rest with RATE_LIMITED and retry_after, storing only what was acknowledged; another user is not slowed", async () => {
    const target = await bridge({ sendsPerSecondPerUser: 5, sendBurstPerUser: 10 }, { limits: { refusalBurst: 1_000 } });
    const mallory = id("mallory");
    const room = id("room");
    const connections = [await connect(target, mallory), await connect(target, mallory), await connect(target, mallory)];
    const answers = await Promise.all(
      connections.flatMap((client, c) =>
        Array.from({ length: 10 }, (_, i) => client.request({ requestId: `s${c}-${i}`, request: { case: "send", value: { seq: BigInt(i + 1), room, body: `m${c}-${i}`, clientMsgId: id("k") } } })),
      ),
    );
    const acked = answers.filter((frame) => frame.kind.case === "sendAck").length;
    const limited = answers.filter((frame) => frame.kind.case === "error" && frame.kind.value.category === ErrorCategory.RATE_LIMITED);
    expect(acked).toBeGreaterThanOrEqual(10);
    expect(acked).toBeLessThan(15);
    expect(acked + limited.length).toBe(30);
    const first = limited[0];
    if (first?.kind.case !== "error") throw new Error("no refusal");
    expect(first.kind.value.retryable).toBe(true);
    expect(first.kind.value.retryAfter).toBeDefined();
    const history = await connections[0]?.request({ requestId: "h", request: { case: "history", value: { room, pageSize: 100 } } });
    expect(history?.kind.case === "history" ? history.kind.value.messages.length : -1).toBe(acked);

    const bob = await connect(target, id("bob"));
    const bobAnswers = await Promise.all(Array.from({ length: 10 }, (_, i) => bob.request({ requestId: `b${i}`, request: { case: "send", value: { seq: BigInt(i + 1), room, body: "b", clientMsgId: id("k") } } })));
    expect(bobAnswers.every((frame) => frame.kind.case === "sendAck")).toBe(true);
  });

  it("holds a connection's later sends behind one refused for the rate until it is resent, even once a token is free again: the sends are stored in the order they were made", async () => {
    const target = await bridge({ sendsPerSecondPerUser: 5, sendBurstPerUser: 1 });
    const user = id("orderly");
    const room = id("room");
    const client = await connect(target, user);
    let seq = 0n;
    const send = (requestId: string, clientMsgId: string) => {
      seq++;
      return client.request({ requestId, request: { case: "send", value: { seq, room, body: clientMsgId, clientMsgId } } });
    };
    const [first, second] = await Promise.all([send("s1", "k1"), send("s2", "k2")]);
    expect(first.kind.case).toBe("sendAck");
    expect(second.kind.case === "error" ? second.kind.value.category : undefined).toBe(ErrorCategory.RATE_LIMITED);
    // Past retry_after a token is free: a send written before the refusal
    // was read (crossing it) would take it and be stored before k2.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const crossing = await send("s3", "k3");
    expect(crossing.kind.case === "error" ? crossing.kind.value : undefined).toMatchObject({ category: ErrorCategory.RATE_LIMITED, retryable: true, message: expect.stringContaining("resend that one first") as string });
    expect((await send("s2-again", "k2")).kind.case).toBe("sendAck");
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect((await send("s3-again", "k3")).kind.case).toBe("sendAck");
    const stored = await db.sql<{ client_msg_id: string }>("select client_msg_id from chat_messages where room_id = $1 order by seq", [room]);
    expect(stored.map((row) => row.client_msg_id)).toEqual(["k1", "k2", "k3"]);
  });

  it("a rate hold lapses for a client that gives the refused send up: retry_after + 2 s after the refusal was written", async () => {
    const target = await bridge({ sendsPerSecondPerUser: 5, sendBurstPerUser: 1 });
    const client = await connect(target, id("giving-up"));
    const room = id("room");
    let seq = 0n;
    const send = (clientMsgId: string) => {
      seq++;
      return client.request({ requestId: `s${seq}`, request: { case: "send", value: { seq, room, body: clientMsgId, clientMsgId } } });
    };
    expect((await send("k1")).kind.case).toBe("sendAck");
    const refused = await send("k2");
    const refusedAt = performance.now();
    const retryAfter = refused.kind.case === "error" ? refused.kind.value.retryAfter : undefined;
    if (retryAfter === undefined) throw new Error("no retry_after on the refusal");
    const lapsesAt = refusedAt + Number(retryAfter.seconds) * 1000 + retryAfter.nanos / 1e6 + 2_000;
    await new Promise((resolve) => setTimeout(resolve, lapsesAt - performance.now() - 500));
    expect((await send("k3")).kind.case).toBe("error");
    await new Promise((resolve) => setTimeout(resolve, lapsesAt - performance.now() + 50));
    expect((await send("k4")).kind.case).toBe("sendAck");
  });

  it("caps the rooms one user follows over all their connections; an unsubscribe frees a place", async () => {
    const target = await bridge({ maxSubscriptionsPerUser: 3 });
    const user = id("u");
    const one = await connect(target, user);
    const two = await connect(target, user);
    const rooms = [id("r"), id("r"), id("r"), id("r")];
    for (const [i, room] of rooms.slice(0, 2).entries()) expect((await one.request({ requestId: `a${i}`, request: { case: "subscribe", value: { room } } })).kind.case).toBe("caughtUp");
    expect((await two.request({ requestId: "b0", request: { case: "subscribe", value: { room: rooms[2] } } })).kind.case).toBe("caughtUp");
    const refused = await two.request({ requestId: "b1", request: { case: "subscribe", value: { room: rooms[3] } } });
    expect(refused.kind.case === "error" ? refused.kind.value.category : undefined).toBe(ErrorCategory.RATE_LIMITED);
    expect(refused.kind.case === "error" ? refused.kind.value.message : "").toContain("over all their connections");
    expect((await one.request({ requestId: "a-un", request: { case: "unsubscribe", value: { room: rooms[0] } } })).kind.case).toBe("unsubscribed");
    expect((await two.request({ requestId: "b2", request: { case: "subscribe", value: { room: rooms[3] } } })).kind.case).toBe("caughtUp");
    // A closed connection gives its rooms back too.
    await one.close();
    const three = await connect(target, user);
    expect((await three.request({ requestId: "c0", request: { case: "subscribe", value: { room: rooms[0] } } })).kind.case).toBe("caughtUp");
  });

  it("paces one user's subscribes: past the burst they get RATE_LIMITED with retry_after", async () => {
    const target = await bridge({ subscribesPerSecondPerUser: 1, subscribeBurstPerUser: 4 });
    const client = await connect(target, id("u"));
    const room = id("r");
    const answers = [];
    for (let i = 0; i < 6; i++) {
      answers.push(await client.request({ requestId: `s${i}`, request: { case: i % 2 === 0 ? "subscribe" : "unsubscribe", value: { room } } }));
    }
    // subscribe, unsubscribe, subscribe, unsubscribe, subscribe: within the burst of 4 subscribes...
    const subscribes = [answers[0], answers[2], answers[4]];
    expect(subscribes.map((frame) => frame?.kind.case)).toEqual(["caughtUp", "caughtUp", "caughtUp"]);
    const more = [];
    for (let i = 0; i < 3; i++) more.push(await client.request({ requestId: `t${i}`, request: { case: "subscribe", value: { room } } }));
    const limited = more.find((frame) => frame.kind.case === "error");
    expect(limited?.kind.case === "error" ? limited.kind.value.category : undefined).toBe(ErrorCategory.RATE_LIMITED);
    expect(limited?.kind.case === "error" ? limited.kind.value.retryAfter : undefined).toBeDefined();
  });

  it("logs a connection's RATE_LIMITED refusals at most once a second, the next line counting those not logged; every one is answered", async () => {
    const target = await bridge({ subscribesPerSecondPerUser: 1, subscribeBurstPerUser: 1 });
    const user = id("u");
    const client = await connect(target, user);
    const room = id("r");
    const answers = [];
    for (let i = 0; i < 12; i++) answers.push(await client.request({ requestId: `q${i}`, request: { case: "subscribe", value: { room } } }));
    const refused = answers.filter((frame) => frame.kind.case === "error" && frame.kind.value.category === ErrorCategory.RATE_LIMITED);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    const logged = () => logs.lines.filter((line) => line.user === user && line.category === "RATE_LIMITED");
    expect(logged()).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    // The bucket has one token again: the first of these is taken, the second refused.
    for (const later of ["q-later-1", "q-later-2"]) await client.request({ requestId: later, request: { case: "subscribe", value: { room } } });
    expect(logged()).toHaveLength(2);
    expect(logged()[1]?.unlogged).toBe(refused.length - 1);
  });

  it("closes a connection that keeps sending into its limits with go_away (reconnect_after) and 4029", async () => {
    const target = await bridge({ sendsPerSecondPerUser: 1, sendBurstPerUser: 1 }, { limits: { refusalsPerSecond: 1, refusalBurst: 5 } });
    const client = await connect(target, id("u"));
    const room = id("r");
    for (let i = 0; i < 20; i++) client.sendJson({ requestId: `s${i}`, request: { case: "send", value: { seq: BigInt(i + 1), room, body: "x", clientMsgId: id("k") } } });
    const closed = await client.waitClosed(5_000);
    expect(closed.code).toBe(4029);
    const goAway = client.frames.find((frame) => frame.kind.case === "goAway");
    expect(goAway?.kind.case === "goAway" ? goAway.kind.value.reconnectAfter : undefined).toBeDefined();
  });
});

describe("closes for the rate (4029) and what they cost", () => {
  /** Opens a connection of `user` on `target` and sends into the send rate until it is closed 4029; the go_away's reconnect_after (ms). */
  async function closedForRate(target: RunningBridge, user: string): Promise<number> {
    const client = await connect(target, user);
    const room = id("r");
    for (let i = 0; i < 20; i++) client.sendJson({ requestId: `s${i}`, request: { case: "send", value: { seq: BigInt(i + 1), room, body: "x", clientMsgId: id("k") } } });
    expect((await client.waitClosed(5_000)).code).toBe(4029);
    const goAway = client.frames.find((frame) => frame.kind.case === "goAway");
    const after = goAway?.kind.case === "goAway" ? goAway.kind.value.reconnectAfter : undefined;
    return Number(after?.seconds ?? 0n) * 1000 + (after?.nanos ?? 0) / 1e6;
  }

  it("refuses the user's upgrades (429, Retry-After) until the go_away's reconnect_after, and doubles it for one who comes back to do it again; others connect", async () => {
    const target = await bridge({ sendsPerSecondPerUser: 1, sendBurstPerUser: 1 }, { limits: { refusalsPerSecond: 1, refusalBurst: 5 } });
    const user = id("u");
    const first = await closedForRate(target, user);
    expect(first).toBe(1_000);
    const refused = await refusal(target, user);
    expect(refused.status).toBe(429);
    expect(refused.body.category).toBe("RATE_LIMITED");
    expect(refused.retryAfter).toBe("1");
    // Another user is not kept out.
    await connect(target, id("other"));
    await new Promise((resolve) => setTimeout(resolve, first + 50));
    const second = await closedForRate(target, user);
    expect(second).toBe(2_000);
    expect((await refusal(target, user)).retryAfter).toBe("2");
  });

  it("a user who subscribes and unsubscribes over and over has no more calls working at core than max_core_calls_per_user: an unwanted answer is waited for, not cancelled", async () => {
    const target = await bridge({ maxCoreCallsPerUser: 2, subscribesPerSecondPerUser: 1_000, subscribeBurstPerUser: 1_000 });
    const client = await connect(target, id("u"));
    const rooms = Array.from({ length: 12 }, () => id("r"));
    const ROUNDS = 5;
    // GetRoom's first statement waits on this lock: every one core works on shows in pg_stat_activity.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    const watcher = new pg.Client({ connectionString: db.url });
    await watcher.connect();
    let most = 0;
    try {
      await locker.query("begin");
      await locker.query("lock table rooms in access exclusive mode");
      // Each round's subscribes get to core (two at a time) before their unsubscribes come.
      for (let round = 0; round < ROUNDS; round++) {
        for (const room of rooms) client.sendJson({ requestId: `s-${round}-${room}`, request: { case: "subscribe", value: { room } } });
        await new Promise((resolve) => setTimeout(resolve, 100));
        for (const room of rooms) client.sendJson({ requestId: `u-${round}-${room}`, request: { case: "unsubscribe", value: { room } } });
      }
      // Every subscribe is answered at once (unsubscribed), whatever core is doing.
      await client.until(() => (client.frames.filter((frame) => frame.kind.case === "unsubscribed").length >= 2 * ROUNDS * rooms.length ? true : undefined), { what: "every request answered" });
      for (let look = 0; look < 20; look++) {
        const { rows } = await watcher.query<{ n: string }>(
          "select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like 'select r.kind, r.head_seq, m.state, m.role from rooms r%'",
        );
        most = Math.max(most, Number(rows[0]?.n ?? 0));
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    } finally {
      await locker.query("rollback");
      await locker.end();
      await watcher.end();
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2);
    // Once core answers, the user's places are free again: a subscribe catches up.
    const again = await client.request({ requestId: "again", request: { case: "subscribe", value: { room: rooms[0] ?? "" } } }, { timeoutMs: 10_000 });
    expect(again.kind.case).toBe("caughtUp");
  });
});

describe("floods and fairness", () => {
  it("closes a flooding connection within 1 s of going over its rate, and stops reading it at once", async () => {
    const target = await bridge({}, { limits: { framesPerSecond: 100, frameBurst: 200 } });
    const client = await connect(target, id("flood"));
    const ping = JSON.stringify({ requestId: "p", ping: {} });
    let sent = 0;
    const startedAt = performance.now();
    // Far past the burst in one go, as a flooding client writes.
    while (sent < 5_000) {
      client.socket.send(ping);
      sent++;
    }
    const closed = await client.waitClosed(3_000);
    const elapsed = performance.now() - startedAt;
    expect(closed.code).toBe(4029);
    expect(elapsed).toBeLessThan(1_000);
    // At most the burst was handled: the rest was never read.
    const pongs = client.frames.filter((frame) => frame.kind.case === "pong").length;
    expect(pongs).toBeLessThanOrEqual(200);
    await expect.poll(() => target.connections.size, { timeout: 2_000 }).toBe(0);
  });

  it("answers another connection's frame while one connection's backlog of thousands is being worked off", async () => {
    const target = await bridge({}, { limits: { framesPerSecond: 100_000, frameBurst: 100_000 } });
    const busy = await connect(target, id("busy"));
    const other = await connect(target, id("other"));
    const count = 5_000;
    // One write: thousands of frames reach the bridge in the same few socket reads.
    const frames = Array.from({ length: count }, (_, i) => JSON.stringify({ requestId: `b${i}`, ping: {} }));
    for (const frame of frames) busy.socket.send(frame);
    other.sendJson({ requestId: "mine", request: { case: "ping", value: {} } });
    await other.waitFor((frame) => frame.requestId === "mine", { what: "the other connection's pong" });
    const busyDone = busy.frames.filter((frame) => frame.kind.case === "pong").length;
    // The other connection waited for a turn's share of the backlog (32 by
    // default), not for the backlog: without the intake's per-turn bound,
    // ~1,500 (a whole socket read) were answered first.
    expect(busyDone).toBeLessThan(256);
    await busy.waitFor((frame) => frame.requestId === `b${count - 1}`, { what: "the last pong", timeoutMs: 20_000 });
    // Every frame of the backlog was answered, in order.
    const order = busy.frames.filter((frame) => frame.kind.case === "pong").map((frame) => Number(frame.requestId.slice(1)));
    expect(order).toEqual(Array.from({ length: count }, (_, i) => i));
  });
});
