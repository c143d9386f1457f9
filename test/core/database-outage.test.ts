// Core against a PostgreSQL of the test's own, restarted and stopped under
// load: writes are held in order up to the outage horizon, nothing is lost,
// duplicated or reordered, and core's health says NOT_SERVING meanwhile.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { type RunningCore, startCore } from "../../src/core/core-server.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { TEST_JWT_SECRET, TEST_TOKEN_RULES } from "../support/core.js";
import { LogCapture } from "../support/logs.js";
import { PrivatePostgres } from "../support/private-postgres.js";
import { startBridge } from "../../src/bridge/bridge-server.js";
import { TEST_RELAY_TOKEN } from "../support/core.js";
import { WsTestClient } from "../support/ws-client.js";

let server: PrivatePostgres;
const logs = new LogCapture("warn");

beforeAll(async () => {
  server = await PrivatePostgres.start();
}, 60_000);

afterAll(async () => {
  await server.destroy();
});

async function core(databaseOutage: { horizonMs?: number; maxHeld?: number } = {}): Promise<{ core: RunningCore; chat: ServiceClient<typeof ChatService>; health: ServiceClient<typeof Health> }> {
  const started = await startCore({ databaseUrl: server.url(), grpcAddress: "127.0.0.1:0", tokens: TEST_TOKEN_RULES, logger: logs.logger, migrate: true, implicitRooms: true, databaseOutage });
  const token = await mintToken(TEST_JWT_SECRET, "outage-sender");
  return {
    core: started,
    chat: createClient(ChatService, started.address, { headers: () => ({ authorization: `Bearer ${token}` }) }),
    health: createClient(Health, started.address),
  };
}

async function stored(room: string): Promise<{ seq: string; client_msg_id: string }[]> {
  const client = new pg.Client({ connectionString: server.url() });
  await client.connect();
  try {
    const { rows } = await client.query<{ seq: string; client_msg_id: string }>("select seq::text, client_msg_id from chat_messages where room_id = $1 order by chat_messages.seq", [room]);
    return rows;
  } finally {
    await client.end();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a database outage within the horizon", () => {
  it("holds every send through a fast and an immediate PostgreSQL restart: each is answered, stored once, in the order sent; health is NOT_SERVING meanwhile", async () => {
    const { core: running, chat, health } = await core();
    try {
      const room = `outage-${process.pid}`;
      const senders = 4;
      const sent: string[][] = Array.from({ length: senders }, () => []);
      const failures: unknown[] = [];
      const statuses = new Set<ServingStatus>();
      const run = { sending: true };
      let lastAckAt = 0;
      const loops = sent.map(async (mine, sender) => {
        for (let n = 0; run.sending; n++) {
          const key = `s${sender}-${n}`;
          try {
            await chat.sendMessage({ room, body: key, clientMsgId: key }, { timeoutMs: 60_000 });
            mine.push(key);
            lastAckAt = performance.now();
          } catch (error) {
            failures.push(error);
            return;
          }
          await sleep(5);
        }
      });
      const watching = (async () => {
        while (run.sending) {
          const answer = await health.check({ service: "" }, { timeoutMs: 1_000 }).catch(() => undefined);
          if (answer) statuses.add(answer.status);
          await sleep(50);
        }
      })();
      await sleep(300);
      await server.restart("fast");
      const fastBackAt = performance.now();
      await sleep(500);
      await server.restart("immediate");
      const immediateBackAt = performance.now();
      await sleep(1_500);
      run.sending = false;
      await Promise.all([...loops, watching]);

      expect(failures).toEqual([]);
      expect(lastAckAt).toBeGreaterThan(immediateBackAt);
      expect(fastBackAt).toBeLessThan(immediateBackAt);
      expect(statuses).toContain(ServingStatus.NOT_SERVING);
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
      const rows = await stored(room);
      // Every acknowledged send stored exactly once, seqs gapless, each sender's in the order sent.
      expect(rows.map((row) => row.seq)).toEqual(rows.map((_, index) => String(index + 1)));
      expect(new Set(rows.map((row) => row.client_msg_id)).size).toBe(rows.length);
      expect(rows.length).toBe(sent.flat().length);
      for (const [sender, mine] of sent.entries()) {
        expect(rows.map((row) => row.client_msg_id).filter((key) => key.startsWith(`s${sender}-`))).toEqual(mine);
      }
      expect(sent.flat().length).toBeGreaterThan(40);
    } finally {
      await running.stop(0);
    }
  }, 60_000);
});

describe("past the horizon", () => {
  it("refuses a held send with a retryable UNAVAILABLE, refuses at once past the most held; with no write left, core finds the database back by itself, and a resend with the same key is stored once", async () => {
    const { core: running, chat, health } = await core({ horizonMs: 800, maxHeld: 2 });
    const room = `horizon-${process.pid}`;
    try {
      await chat.sendMessage({ room, body: "before", clientMsgId: "before" });
      await server.stop("fast");
      const startedAt = performance.now();
      const held = [chat.sendMessage({ room, body: "h1", clientMsgId: "h1" }).catch((error: unknown) => error), chat.sendMessage({ room, body: "h2", clientMsgId: "h2" }).catch((error: unknown) => error)];
      // Once core knows the database is away (NOT_SERVING), a third is refused at once.
      for (let look = 0; look < 100; look++) {
        if ((await health.check({ service: "" })).status === ServingStatus.NOT_SERVING) break;
        await sleep(20);
      }
      const third = await chat.sendMessage({ room, body: "h3", clientMsgId: "h3" }).catch((error: unknown) => error);
      expect(third).toBeInstanceOf(ParleyError);
      expect(third).toMatchObject({ category: ErrorCategory.UNAVAILABLE, retryable: true });
      const refusedAfterHorizon = await Promise.all(held);
      for (const failure of refusedAfterHorizon) expect(failure).toMatchObject({ category: ErrorCategory.UNAVAILABLE, retryable: true });
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(800);
      await server.startAgain();
      // Nothing is written now, yet core finds the database back by itself and is SERVING again.
      const backAt = performance.now();
      while ((await health.check({ service: "" })).status !== ServingStatus.SERVING) {
        if (performance.now() - backAt > 5_000) throw new Error("core did not see the database back within 5 s");
        await sleep(50);
      }
      expect(performance.now() - backAt).toBeLessThan(2_500);
      for (const key of ["h1", "h2", "h3", "h1"]) await chat.sendMessage({ room, body: key, clientMsgId: key }, { timeoutMs: 30_000 });
      expect((await stored(room)).map((row) => row.client_msg_id)).toEqual(["before", "h1", "h2", "h3"]);
    } finally {
      await server.startAgain().catch(() => undefined);
      await running.stop(0);
    }
  }, 60_000);
});

describe("through the bridge", () => {
  it("a send core refused past the horizon holds the connection's later sends until it is resent: resent in order, all are stored in order", async () => {
    const { core: running } = await core({ horizonMs: 500 });
    const bridge = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: running.address, relayToken: TEST_RELAY_TOKEN, logger: logs.logger });
    const room = `bridge-outage-${process.pid}`;
    const client = await WsTestClient.connect(`http://${bridge.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, "outage-ws") });
    try {
      await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
      const send = (seq: number, key: string) => client.request({ requestId: `r${seq}`, request: { case: "send", value: { seq: BigInt(seq), room, body: key, clientMsgId: key } } }, { timeoutMs: 20_000 });
      expect((await send(1, "a")).kind.case).toBe("sendAck");
      await server.stop("fast");
      const refused = await send(2, "b");
      expect(refused.kind.case === "error" ? refused.kind.value.category : undefined).toBe(ErrorCategory.UNAVAILABLE);
      await server.startAgain();
      // The database is back, but "c" may not overtake "b".
      const overtaking = await send(3, "c");
      expect(overtaking.kind.case === "error" ? overtaking.kind.value.category : undefined).toBe(ErrorCategory.UNAVAILABLE);
      expect((await send(4, "b")).kind.case).toBe("sendAck");
      expect((await send(5, "c")).kind.case).toBe("sendAck");
      expect((await stored(room)).map((row) => row.client_msg_id)).toEqual(["a", "b", "c"]);
    } finally {
      await server.startAgain().catch(() => undefined);
      await client.close();
      await bridge.stop(0);
      await running.stop(0);
    }
  }, 60_000);
});

describe("a stalled LISTEN connection", () => {
  it("is found within 5 s by the listener's own heartbeat and replaced; a subscriber on core A still gets every message committed through core B, in order", async () => {
    const a = await core();
    const b = await core();
    const listener = a.core.listener;
    if (listener === undefined) throw new Error("core A runs without a listener");
    const readerToken = await mintToken(TEST_JWT_SECRET, "stall-reader");
    const reader = createClient(ChatService, a.core.address, { headers: () => ({ authorization: `Bearer ${readerToken}` }) });
    const room = `stall-${process.pid}`;
    const abort = new AbortController();
    const received: bigint[] = [];
    const state = { caughtUp: false };
    const reading = (async () => {
      for await (const { event } of reader.subscribe({ room, afterSeq: 0n }, { signal: abort.signal })) {
        if (event.case === "message") received.push(event.value.seq);
        else if (event.case === "messages") received.push(...event.value.messages.map((message) => message.seq));
        else if (event.case === "caughtUp") state.caughtUp = true;
      }
    })().catch(() => undefined);
    const pid = listener.backendPid;
    try {
      while (!state.caughtUp) await sleep(20);
      await b.chat.sendMessage({ room, body: "before", clientMsgId: "stall-before" });
      while (received.length < 1) await sleep(20);
      if (pid === undefined) throw new Error("the listener has no backend");
      process.kill(pid, "SIGSTOP");
      const stoppedAt = performance.now();
      for (let i = 0; i < 5; i++) await b.chat.sendMessage({ room, body: `during ${i}`, clientMsgId: `stall-during-${i}` });
      while (received.length < 6 && performance.now() - stoppedAt < 10_000) await sleep(50);
      const deliveredAfterMs = performance.now() - stoppedAt;
      expect(received).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
      expect(deliveredAfterMs).toBeLessThan(5_000);
      expect(logs.lines.some((line) => String(line.msg).startsWith("fan-out listener stalled"))).toBe(true);
      expect(listener.backendPid).not.toBe(pid);
    } finally {
      if (pid !== undefined) process.kill(pid, "SIGCONT");
      abort.abort();
      await reading;
      await a.core.stop(0);
      await b.core.stop(0);
    }
  }, 60_000);
});
