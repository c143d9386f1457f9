import { createServer } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import type { ErrorDetail } from "../../gen/parley/v1/errors_pb.js";
import { CloseCode, type ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, range, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ParleyProcess, spawnCore } from "../support/processes.js";
import { type CloseInfo, eventually, messagesOf, messagesUpTo, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
const bridgeLogs = new LogCapture("info");
const running = new Set<RunningBridge>();
const processes: ParleyProcess[] = [];
const cores: TestCore[] = [];
const clients: WsTestClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const bridge of [...running]) {
    running.delete(bridge);
    await bridge.stop(500);
  }
  for (const child of processes.splice(0)) await child.kill();
  for (const core of cores.splice(0)) await core.stop();
});

afterAll(async () => {
  await db.drop();
});

async function startTestBridge(coreAddress: string): Promise<RunningBridge> {
  const bridge = await startBridge({
    httpAddress: "127.0.0.1:0",
    coreAddress,
    relayToken: TEST_RELAY_TOKEN,
    logger: bridgeLogs.logger,
    limits: { maxInflightSends: 64 },
    sendAnswerTimeoutMs: 3_000,
  });
  running.add(bridge);
  return bridge;
}

async function joinRoom(bridge: RunningBridge, room: string, user: string, afterSeq?: bigint): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${bridge.address}`, `/ws/chat/${room}`, {
    token: await mintToken(TEST_JWT_SECRET, user),
    query: afterSeq === undefined ? {} : { after_seq: String(afterSeq) },
  });
  clients.push(client);
  await client.waitFor((frame) => frame.requestId === "" && frame.kind.case === "caughtUp", { what: "caught_up", timeoutMs: 15_000 });
  return client;
}

/** A port nobody listens on right now, so that core can be restarted at the same address. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

interface SendSpec {
  readonly body: string;
  readonly clientMsgId: string;
}

interface SendOutcome {
  /** Stored messages by client_msg_id. */
  readonly acked: Map<string, ChatMessage>;
  /** client_msg_ids in the order their first attempt was written. */
  readonly firstWritten: string[];
  /** Every error frame a send got (each retryable one was resent with the same client_msg_id). */
  readonly errors: ErrorDetail[];
  /** Specs that never got an answer because the socket closed. */
  readonly unanswered: SendSpec[];
}

/**
 * Sends `specs` with at most `window` un-answered, the way a client should:
 * send.seq increases per frame written on this connection; a retryable error
 * is resent with the same client_msg_id (after its retry_after); a closed
 * socket leaves the rest un-answered for the caller to resend elsewhere.
 */
async function sendAll(client: WsTestClient, specs: readonly SendSpec[], window: number, onAck?: (acked: number) => void): Promise<SendOutcome> {
  const outcome: SendOutcome = { acked: new Map(), firstWritten: [], errors: [], unanswered: [] };
  let nextSeq = 1n;
  let next = 0;
  let requestNo = 0;
  const lane = async (): Promise<void> => {
    while (next < specs.length && client.isOpen) {
      const spec = specs[next++];
      if (spec === undefined) return;
      outcome.firstWritten.push(spec.clientMsgId);
      for (;;) {
        const requestId = `q-${requestNo++}`;
        let answer: ServerFrame;
        try {
          answer = await client.request({ requestId, request: { case: "send", value: { seq: nextSeq++, ...spec } } }, { timeoutMs: 30_000 });
        } catch (error) {
          if (client.closeInfo !== undefined) return;
          throw error;
        }
        if (answer.kind.case === "sendAck" && answer.kind.value.message !== undefined) {
          outcome.acked.set(spec.clientMsgId, answer.kind.value.message);
          onAck?.(outcome.acked.size);
          break;
        }
        if (answer.kind.case !== "error") throw new Error(`unexpected answer ${answer.kind.case ?? "none"} to ${requestId}`);
        const error = answer.kind.value;
        outcome.errors.push(error);
        if (!error.retryable) throw new Error(`send ${spec.clientMsgId} failed for good: ${error.message}`);
        const waitMs = error.retryAfter === undefined ? 100 : Number(error.retryAfter.seconds) * 1000 + error.retryAfter.nanos / 1e6;
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  for (const spec of specs) if (!outcome.acked.has(spec.clientMsgId)) outcome.unanswered.push(spec);
  return outcome;
}

function specs(from: number, to: number, prefix: string): SendSpec[] {
  return range(from, to).map((i) => ({ body: `${prefix} ${i}`, clientMsgId: `${prefix}-${i}` }));
}

async function storedIds(room: string): Promise<{ seq: bigint; clientMsgId: string }[]> {
  const rows = await db.sql<{ seq: string; client_msg_id: string }>("select seq, client_msg_id from chat_messages where room_id = $1 order by seq", [room]);
  return rows.map((row) => ({ seq: BigInt(row.seq), clientMsgId: row.client_msg_id }));
}

describe("core restart under load", () => {
  it("a request in flight when its connection closes ends without an error log: nobody is left to answer", { timeout: 30_000 }, async () => {
    // Core goes down once the connection is open (it is asked who the token is), so the call is retried until the connection goes.
    const doomed = await startTestCore(db);
    const bridge = await startTestBridge(doomed.core.address);
    const client = await WsTestClient.connect(`http://${bridge.address}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, "leaver") });
    clients.push(client);
    await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
    await doomed.stop(0);
    const from = bridgeLogs.lines.length;
    client.sendJson({ requestId: "gone-1", request: { case: "listMyRooms", value: {} } });
    await eventually(() => bridgeLogs.lines.slice(from).some((line) => line.msg === "core call failed; retrying" && line.call === "list_my_rooms"), 10_000, "the call is retried");
    await client.close();
    await eventually(() => bridgeLogs.lines.slice(from).some((line) => line.request_id === "gone-1"), 10_000, "the request's end is logged");
    const lines = bridgeLogs.lines.slice(from);
    expect(lines.filter((line) => line.request_id === "gone-1")).toMatchObject([{ level: "info", category: "UNAVAILABLE" }]);
    expect(lines.filter((line) => line.level === "error")).toEqual([]);
  });

  it("kill -9 of core mid-stream: every send acked once, stored in send order, the socket never closes", { timeout: 180_000 }, async () => {
    const port = await freePort();
    const env = { DATABASE_URL: db.url, PARLEY_JWT_SECRET: TEST_JWT_SECRET, PARLEY_MIGRATE: "1", PARLEY_GRPC_ADDR: `127.0.0.1:${port}` };
    const first = await spawnCore(env);
    processes.push(first.process);
    expect(first.address).toBe(`127.0.0.1:${port}`);

    const bridge = await startTestBridge(first.address);
    const room = "core-restart";
    const client = await joinRoom(bridge, room, "steady-sender");
    let closedDuringRun: CloseInfo | undefined;
    void client.closed.then((info) => (closedDuringRun = info));

    const total = 600;
    let ackedAtKill = -1;
    let restarted: Promise<void> | undefined;
    const outcome = await sendAll(client, specs(1, total, "cr"), 8, (acked) => {
      if (acked < 150 || restarted !== undefined) return;
      ackedAtKill = acked;
      restarted = (async () => {
        await first.process.kill();
        // Core stays down for about a second while sends keep coming in.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        const second = await spawnCore(env);
        processes.push(second.process);
        expect(second.address).toBe(first.address);
      })();
    });
    await restarted;

    expect(ackedAtKill).toBeGreaterThanOrEqual(150);
    expect(ackedAtKill).toBeLessThan(total);
    expect(closedDuringRun).toBeUndefined();
    expect(client.isOpen).toBe(true);
    expect(outcome.unanswered).toEqual([]);
    expect(outcome.acked.size).toBe(total);
    // Report what the client saw: with SendLink's ordered retry, no error frames at all.
    for (const error of outcome.errors) expect(error.retryable).toBe(true);
    expect(outcome.errors).toEqual([]);
    // The bridge noticed the broken stream and resent (not just luck with timing).
    expect(bridgeLogs.find({ msg: "send stream to core broken; resending un-answered items" }).length).toBeGreaterThan(0);

    const counts = await db.sql<{ client_msg_id: string; n: string }>(
      "select client_msg_id, count(*) as n from chat_messages where room_id = $1 group by client_msg_id having count(*) <> 1",
      [room],
    );
    expect(counts).toEqual([]);
    const stored = await storedIds(room);
    expect(stored.map((row) => row.seq)).toEqual(range(1, total));
    expect(stored.map((row) => row.clientMsgId)).toEqual(outcome.firstWritten);
    expect(stored.map((row) => row.clientMsgId)).toEqual(specs(1, total, "cr").map((spec) => spec.clientMsgId));
    for (const row of stored) expect(outcome.acked.get(row.clientMsgId)?.seq).toBe(row.seq);

    // The connection's own subscription survived the restart too: every seq once, in order.
    const seen = await messagesUpTo(client, room, BigInt(total), 30_000);
    expect(seen.map((m) => m.seq)).toEqual(range(1, total));
  });
});

describe("bridge restart with client resume", () => {
  it("a subscriber resumes on a new bridge with after_seq and gets exactly last+1..N while another client keeps sending", { timeout: 120_000 }, async () => {
    const core = await startTestCore(db);
    cores.push(core);
    const room = "bridge-restart";
    const oldBridge = await startTestBridge(core.core.address);
    const listener = await joinRoom(oldBridge, room, "listener");
    const firstSender = await joinRoom(oldBridge, room, "sender-one");

    // Keep sending through the old bridge until it goes away under the sender's feet.
    const firstBatch = specs(1, 400, "br1");
    let stopped: Promise<void> | undefined;
    const stopOld = (): Promise<void> => {
      running.delete(oldBridge);
      stopped ??= oldBridge.stop(5_000);
      return stopped;
    };
    const sending = sendAll(firstSender, firstBatch, 4, (acked) => {
      if (acked === 60) void stopOld();
    });
    const firstOutcome = await sending;
    await stopOld();

    const listenerClosed = await listener.waitClosed();
    expect(listenerClosed.code).toBe(1001);
    const goAway = listener.frames.find((frame) => frame.kind.case === "goAway");
    expect(goAway?.kind.case === "goAway" && goAway.kind.value.closeCode).toBe(CloseCode.GOING_AWAY);
    expect((await firstSender.waitClosed()).code).toBe(1001);
    expect(firstOutcome.errors).toEqual([]);
    expect(firstOutcome.acked.size).toBeGreaterThanOrEqual(60);

    const before = messagesOf(listener, room);
    expect(before.map((m) => m.seq)).toEqual(range(1, before.length));
    const last = before.at(-1)?.seq ?? 0n;

    // The sender resends its un-answered sends (same client_msg_id) through the new bridge, then more.
    const newBridge = await startTestBridge(core.core.address);
    const secondSender = await joinRoom(newBridge, room, "sender-one");
    const rest = [...firstOutcome.unanswered, ...specs(1, 150, "br2")];
    const resending = sendAll(secondSender, rest, 4);
    const resumed = await joinRoom(newBridge, room, "listener", last);
    const secondOutcome = await resending;
    expect(secondOutcome.errors).toEqual([]);
    expect(secondOutcome.unanswered).toEqual([]);

    const stored = await storedIds(room);
    const head = stored.at(-1)?.seq ?? 0n;
    expect(stored.map((row) => row.seq)).toEqual(range(1, Number(head)));
    expect(new Set(stored.map((row) => row.clientMsgId)).size).toBe(stored.length);
    expect(stored.length).toBe(firstBatch.length + 150);

    const after = await messagesUpTo(resumed, room, head, 30_000);
    expect(after.map((m) => m.seq)).toEqual(range(Number(last) + 1, Number(head)));
    expect(after.map((m) => m.clientMsgId)).toEqual(stored.slice(Number(last)).map((row) => row.clientMsgId));
  });
});
