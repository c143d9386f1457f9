import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawn } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { mintToken, NOTIFICATIONS_SEND_SCOPE } from "../../src/runtime/auth/tokens.js";
import { type RunningCore, startCore } from "../../src/core/core-server.js";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "../../src/dev/embedded-database.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { TEST_JWT_SECRET, TEST_TOKEN_RULES, collect, range } from "../support/core.js";
import { LogCapture } from "../support/logs.js";

// The embedded mode (PGlite) serves every connection from one backend
// session: transactions are serialized and a query on another connection
// waits while one is open. These tests fire every kind of call at once
// through a real core to prove that nothing waits on itself (no deadlock),
// and that the data directory survives a restart.

const ROOMS = ["room-0", "room-1", "room-2", "room-3", "room-4"] as const;
const USERS = ["ana", "ben", "cid", "dee", "eve", "fay"] as const;
const SENDS = 300;
const PER_ROOM = SENDS / ROOMS.length;
const NOTIFICATIONS = 20;
/** Everything in the burst must be done by then; a deadlock fails here, naming what hangs. */
const BURST_BOUND_MS = 30_000;

let dataDir: string;
let logs: LogCapture;
let embedded: EmbeddedDatabase | undefined;
let core: RunningCore | undefined;
const clients: { close(): void }[] = [];

async function start(): Promise<{ embedded: EmbeddedDatabase; core: RunningCore }> {
  embedded = await startEmbeddedDatabase(dataDir, logs.logger);
  core = await startCore({
    databaseUrl: embedded.url,
    grpcAddress: "127.0.0.1:0",
    tokens: TEST_TOKEN_RULES,
    logger: logs.logger,
    migrate: true,
    crossInstanceFanout: false,
    poolSize: embedded.poolSize,
    // As `parley serve` runs the embedded mode: rooms on first use.
    implicitRooms: true,
  });
  return { embedded, core };
}

async function stop(): Promise<void> {
  for (const client of clients.splice(0)) client.close();
  await core?.stop(1_000);
  core = undefined;
  await embedded?.stop();
  embedded = undefined;
}

async function chat(address: string, user: string): Promise<ServiceClient<typeof ChatService>> {
  const token = await mintToken(TEST_JWT_SECRET, user);
  const client = createClient(ChatService, address, { headers: () => ({ authorization: `Bearer ${token}` }) });
  clients.push(client);
  return client;
}

async function notifications(address: string, user: string, scopes: string[] = []): Promise<ServiceClient<typeof NotificationService>> {
  const token = await mintToken(TEST_JWT_SECRET, user, { scopes });
  const client = createClient(NotificationService, address, { headers: () => ({ authorization: `Bearer ${token}` }) });
  clients.push(client);
  return client;
}

/** Resolves with every result, or rejects after `ms` naming the calls that never finished. */
async function allWithin<T>(ms: number, calls: readonly (readonly [label: string, call: Promise<T>])[]): Promise<T[]> {
  const pending = new Set(calls.map(([label]) => label));
  const all = Promise.all(
    calls.map(([label, call]) =>
      call.then((value) => {
        pending.delete(label);
        return value;
      }),
    ),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const names = [...pending];
      reject(new Error(`${names.length} of ${calls.length} calls still pending after ${ms} ms (deadlock?): ${names.slice(0, 20).join(", ")}`));
    }, ms);
  });
  try {
    return await Promise.race([all, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function roomHistory(client: ServiceClient<typeof ChatService>, room: string): Promise<{ seq: bigint; body: string }[]> {
  const page = await client.listMessages({ room, direction: ListDirection.FORWARD, cursorSeq: 0n, pageSize: 500 });
  return page.messages.map((message) => ({ seq: message.seq, body: message.body }));
}

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), "parley-embedded-"));
  logs = new LogCapture("info");
});

afterAll(async () => {
  await stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("embedded PostgreSQL (PGlite, one backend session)", () => {
  const history = new Map<string, { seq: bigint; body: string }[]>();
  const inboxes = new Map<string, bigint[]>();

  it(`a burst of ${SENDS} sends, reads, subscriptions, mark-reads and notifications all complete within ${BURST_BOUND_MS / 1000} s, gapless`, async () => {
    const { core: running } = await start();
    const address = running.address;
    const chats = await Promise.all(USERS.map((user) => chat(address, user)));
    const inboxClients = await Promise.all(USERS.map((user) => notifications(address, user)));
    const service = await notifications(address, "embedded-service", [NOTIFICATIONS_SEND_SCOPE]);
    const userChat = (i: number) => chats[i % chats.length] ?? expect.unreachable("no chat client");
    const userInbox = (i: number) => inboxClients[i % inboxClients.length] ?? expect.unreachable("no inbox client");

    const started = performance.now();
    const calls: (readonly [string, Promise<unknown>])[] = [];
    const followers: { room: string; seqs: Promise<bigint[]> }[] = [];
    const follow = (label: string, room: string, client: ServiceClient<typeof ChatService>) => {
      const seqs = collect(client.subscribe({ room, afterSeq: 0n }), PER_ROOM).then((result) => result.seqs);
      followers.push({ room, seqs });
      calls.push([label, seqs]);
    };
    const inboxFollowers: { user: string; seqs: Promise<bigint[]> }[] = [];
    // Live followers: subscribed before anything is stored, they see everything live.
    for (const room of ROOMS) follow(`live subscribe ${room}`, room, userChat(0));
    for (const [index, user] of USERS.entries()) {
      const seqs = collectInbox(userInbox(index).subscribe({ afterSeq: 0n }), NOTIFICATIONS);
      inboxFollowers.push({ user, seqs });
      calls.push([`live inbox ${user}`, seqs]);
    }
    for (let i = 0; i < SENDS; i++) {
      const room = ROOMS[i % ROOMS.length] ?? "room-0";
      const sender = userChat(i);
      const send = sender.sendMessage({ room, body: `m${i}`, clientMsgId: `burst-${i}` });
      calls.push([`send ${i}`, send]);
      if (i % 10 === 0) {
        // Read positions move while the room grows.
        calls.push([`markRead after send ${i}`, send.then((answer) => sender.markRead({ room, seq: answer.message?.seq ?? 0n }))]);
      }
      if (i % 25 === 0) {
        calls.push([`listMessages ${room} @${i}`, userChat(i + 1).listMessages({ room, direction: ListDirection.BACKWARD, cursorSeq: 0n, pageSize: 20 })]);
        // Replay + live: joins mid-burst, gets what is stored, then the rest live.
        follow(`replay subscribe ${room} @${i}`, room, userChat(i + 2));
      }
    }
    for (let n = 0; n < NOTIFICATIONS; n++) {
      calls.push([`sendNotification ${n}`, service.sendNotification({ recipients: [...USERS], kind: "burst", title: `n${n}`, body: "", idempotencyKey: `burst-n${n}` })]);
      if (n % 4 === 0) {
        calls.push([`ackNotifications ${n}`, userInbox(n).ackNotifications({ upToSeq: BigInt(n), ids: [] })]);
        calls.push([`listNotifications ${n}`, userInbox(n + 1).listNotifications({ unreadOnly: true, pageSize: 10 })]);
      }
    }
    await allWithin(BURST_BOUND_MS, calls);
    const elapsed = performance.now() - started;
    logs.logger.info({ calls: calls.length, elapsed_ms: Math.round(elapsed) }, "embedded burst done");

    for (const room of ROOMS) {
      const stored = await roomHistory(userChat(0), room);
      expect(stored.map((message) => message.seq), room).toEqual(range(1, PER_ROOM));
      history.set(room, stored);
    }
    // Every follower, live or joined mid-burst, saw its room as stored: 1..N in order.
    expect(followers.length).toBe(ROOMS.length + SENDS / 25);
    for (const follower of followers) expect(await follower.seqs, follower.room).toEqual(range(1, PER_ROOM));
    for (const follower of inboxFollowers) expect(await follower.seqs, follower.user).toEqual(range(1, NOTIFICATIONS));
    for (const [index, user] of USERS.entries()) {
      const inbox = await userInbox(index).listNotifications({ pageSize: 100 });
      const seqs = inbox.notifications.map((notification) => notification.seq);
      expect(seqs, user).toEqual(range(1, NOTIFICATIONS));
      inboxes.set(user, seqs);
    }
    expect(logs.lines.filter((line) => line.level === "error")).toEqual([]);
  }, 90_000);

  it("stopping core and the embedded database and starting them again on the same directory keeps every message", async () => {
    expect(history.size, "the burst test must have run first").toBe(ROOMS.length);
    await stop();
    const { core: running } = await start();
    const reader = await chat(running.address, "reader");
    for (const room of ROOMS) {
      expect(await roomHistory(reader, room), room).toEqual(history.get(room));
    }
    for (const user of USERS) {
      const inbox = await (await notifications(running.address, user)).listNotifications({ pageSize: 100 });
      expect(inbox.notifications.map((notification) => notification.seq), user).toEqual(inboxes.get(user));
    }
    // And the restarted database keeps counting from where it was.
    const next = await reader.sendMessage({ room: "room-0", body: "after restart", clientMsgId: "after-restart" });
    expect(next.message?.seq).toBe(BigInt(PER_ROOM + 1));
    // The idempotency keys survived too: a repeat stores nothing.
    const repeat = await (await chat(running.address, USERS[0])).sendMessage({ room: "room-0", body: "m0", clientMsgId: "burst-0" });
    expect(repeat.duplicate).toBe(true);
    expect(repeat.message?.seq).toBe(history.get("room-0")?.find((message) => message.body === "m0")?.seq);
  }, 60_000);

  it("serves a private unix socket: a second process on the same directory is refused while it answers, a stale socket is replaced", async () => {
    const directory = mkdtempSync(join(tmpdir(), "parley-embedded-socket-"));
    const first = await startEmbeddedDatabase(directory, logs.logger);
    try {
      expect(first.socketPath).toBe(join(directory, "run", ".s.PGSQL.5432"));
      expect(new URL(first.url).port).toBe("5432");
      expect(decodeURIComponent(new URL(first.url).hostname)).toBe(join(directory, "run"));
      await expect(startEmbeddedDatabase(directory, logs.logger)).rejects.toThrow(/is in use by another process/);
    } finally {
      await first.stop();
    }
    // A killed process leaves its socket file behind, with nothing answering on it.
    const doomed = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(first.socketPath)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise((resolve) => doomed.stdout.once("data", resolve));
    const killed = new Promise((resolve) => doomed.once("exit", resolve));
    doomed.kill("SIGKILL");
    await killed;
    expect(existsSync(first.socketPath)).toBe(true);
    const again = await startEmbeddedDatabase(directory, logs.logger);
    try {
      const client = new pg.Client({ connectionString: again.url });
      await client.connect();
      expect((await client.query<{ one: number }>("select 1 as one")).rows[0]?.one).toBe(1);
      await client.end();
    } finally {
      await again.stop();
      rmSync(directory, { recursive: true, force: true });
    }
  }, 60_000);

  it("the driver's connections (embedded.poolSize) keep their statements apart: transactions and plain queries at once all succeed", async () => {
    const directory = mkdtempSync(join(tmpdir(), "parley-embedded-pool-"));
    const own = await startEmbeddedDatabase(directory, logs.logger);
    const pool = new pg.Pool({ connectionString: own.url, max: own.poolSize });
    try {
      await pool.query("create table counters (id int primary key, value int not null)");
      // With more connections than one, the extended-protocol steps of a
      // plain query land between those of another connection's transaction
      // on the one session: SQLSTATE 26000 / 34000, then a hang.
      const transaction = async (i: number) => {
        const client = await pool.connect();
        try {
          await client.query("begin");
          await client.query("insert into counters values ($1, 1) on conflict (id) do update set value = counters.value + 1", [i % 10]);
          await client.query("select value from counters where id = $1", [i % 10]);
          await client.query("commit");
        } finally {
          client.release();
        }
      };
      const plain = async (i: number) => {
        await pool.query("select value from counters where id = $1", [i % 10]);
      };
      const calls = Array.from({ length: 300 }, (_, i) => [`call ${i}`, i % 2 === 0 ? transaction(i) : plain(i)] as const);
      await allWithin(BURST_BOUND_MS, calls);
      const total = await pool.query<{ sum: string }>("select sum(value) as sum from counters");
      expect(total.rows[0]?.sum).toBe("150");
    } finally {
      await pool.end();
      await own.stop();
      rmSync(directory, { recursive: true, force: true });
    }
  }, 60_000);
});

/** Collects an inbox subscription's notification seqs until `count` arrived. */
async function collectInbox(events: AsyncIterable<{ event: { case: string | undefined; value?: unknown } }>, count: number): Promise<bigint[]> {
  const seqs: bigint[] = [];
  for await (const { event } of events) {
    if (event.case === "notification") {
      seqs.push((event.value as { seq: bigint }).seq);
      if (seqs.length >= count) break;
    }
  }
  return seqs;
}
