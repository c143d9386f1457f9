import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ServerFrame } from "../../../gen/parley/v1/frames_pb.js";
import { mintToken } from "../../../src/runtime/auth/tokens.js";
import { type BridgeOptions, type RunningBridge, startBridge } from "../../../src/bridge/bridge-server.js";
import { startTestCore, TEST_JWT_SECRET, TEST_RELAY_TOKEN, type TestCore } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { LogCapture } from "../../support/logs.js";
import { startTcpProxy, type TcpProxy } from "../../support/tcp-proxy.js";
import { eventually, messagesOf, WsTestClient } from "../../support/ws-client.js";

let db: TestDatabase;
let core: TestCore;
const closers: { close(): unknown }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
});

afterEach(async () => {
  for (const closer of closers.splice(0).reverse()) await closer.close();
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

async function bridge(logs: LogCapture, options: Partial<BridgeOptions>): Promise<RunningBridge> {
  const started = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: logs.logger, ...options });
  closers.push({ close: () => started.stop(500) });
  return started;
}

async function connect(on: RunningBridge, path: string, user: string): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`http://${on.address}`, path, { token: await mintToken(TEST_JWT_SECRET, user) });
  closers.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

/**
 * A user sending to `room` every `everyMs` until `until` resolves, each send
 * awaited before the next: resolves with every answer, in order.
 */
async function steadySender(client: WsTestClient, room: string, prefix: string, everyMs: number, until: Promise<void>): Promise<ServerFrame[]> {
  const state = { done: false };
  void until.then(() => {
    state.done = true;
  });
  const answers: ServerFrame[] = [];
  for (let index = 0; !state.done; index++) {
    const started = Date.now();
    answers.push(
      await client.request(
        { requestId: `${prefix}-${index}`, request: { case: "send", value: { room, seq: BigInt(index + 1), body: `${prefix} ${index}`, clientMsgId: `${prefix}-${index}` } } },
        { timeoutMs: 20_000 },
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - started))));
  }
  return answers;
}

function failures(answers: readonly ServerFrame[]): ServerFrame[] {
  return answers.filter((frame) => frame.kind.case !== "sendAck");
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("the bridge's sessions to core", () => {
  it("subscribe churn far past the server's reset budget, on one session with no linger: no bystander send fails, no feed breaks", async () => {
    const logs = new LogCapture("info");
    // Everything on one HTTP/2 session, every unsubscribe a core stream
    // cancelled at once, and the attacker's own limits lifted: the worst
    // case for the link. Without pacing, ~1,000 resets end the session.
    const own = await bridge(logs, {
      coreSessions: 1,
      feedLingerMs: 0,
      limits: { framesPerSecond: 10_000, frameBurst: 10_000 },
      admission: { subscribesPerSecondPerUser: 10_000, subscribeBurstPerUser: 10_000, maxCoreCallsPerUser: 64 },
    });
    const room = "churn-bystanders";
    const watcher = await connect(own, `/ws/chat/${room}`, "churn-watcher");
    const sender = await connect(own, `/ws/chat/${room}`, "churn-sender");
    const attacker = await connect(own, "/ws", "churn-attacker");
    await watcher.waitFor((frame) => frame.kind.case === "caughtUp", { what: "caught_up" });

    // 1,500 subscribe/unsubscribe pairs over 64 rooms, 16 at a time: each
    // room is left once its subscribe was answered (its feed is open), so
    // each pair opens a core stream and cancels it — far past the server's
    // budget (500, then 25 a second) however fast this machine is today.
    const PAIRS = 1_500;
    let pairs = 0;
    const attack = Promise.all(
      Array.from({ length: 16 }, async (_, worker) => {
        for (let turn = 0; pairs < PAIRS; turn++) {
          pairs++;
          const room = `churned-${worker * 4 + (turn % 4)}`;
          await attacker.request({ requestId: `s-${worker}-${turn}`, request: { case: "subscribe", value: { room } } }, { timeoutMs: 30_000 });
          await attacker.request({ requestId: `u-${worker}-${turn}`, request: { case: "unsubscribe", value: { room } } }, { timeoutMs: 30_000 });
        }
      }),
    );
    const answers = await steadySender(sender, room, "bystander", 20, attack.then(() => undefined));
    await sleep(300);

    // Few when the machine is busy: the bridge, core and both clients share this process.
    expect(answers.length).toBeGreaterThan(5);
    expect(failures(answers)).toEqual([]);
    const acked = answers.flatMap((frame) => (frame.kind.case === "sendAck" ? [frame.kind.value.seq] : []));
    expect(acked).toEqual([...acked].sort((a, b) => (a < b ? -1 : 1)));
    // The follower saw every message, in order, without a gap.
    const lastSeq = acked.at(-1) ?? 0n;
    await eventually(() => (messagesOf(watcher, room).at(-1)?.seq ?? 0n) >= lastSeq, 10_000, "the watcher has every message");
    expect(messagesOf(watcher, room).map((message) => message.seq)).toEqual(acked);
    // The budget was reached (cancellations waited), and nothing on the session broke.
    expect(logs.find({ msg: "cancellations to core over budget: they wait their turn (streams stay open at core meanwhile)" }).length).toBeGreaterThan(0);
    expect(logs.find({ msg: "room feed from core broken; resubscribing" })).toEqual([]);
    expect(logs.find({ msg: "send stream to core broken; resending un-answered items" })).toEqual([]);
    expect(attacker.isOpen).toBe(true);
  }, 60_000);

  it("losing one session of several: its sends are resent in order and its feeds resubscribe; the other session's calls never notice", async () => {
    const logs = new LogCapture("info");
    const proxy: TcpProxy = await startTcpProxy(core.core.address);
    closers.push(proxy);
    const own = await bridge(logs, { coreAddress: proxy.address, coreSessions: 2 });
    // Four senders (on the sessions their user ids hash to), each following its own room.
    const rooms = ["lost-a", "lost-b", "lost-c", "lost-d"];
    const senders = await Promise.all(rooms.map((room, index) => connect(own, `/ws/chat/${room}`, `lost-sender-${index}`)));
    // Followed from the head: what is sent once caught up is what each must see.
    await Promise.all(senders.map((sender) => sender.waitFor((frame) => frame.kind.case === "caughtUp", { what: "caught_up" })));
    let cut!: () => void;
    const stop = new Promise<void>((resolve) => {
      cut = resolve;
    });
    const sending = senders.map((sender, index) => steadySender(sender, rooms[index] ?? "", `lost-${index}`, 10, stop));
    await sleep(700);
    const before = proxy.connections;
    // Sends on the held session go unanswered, then the session is lost with them.
    const cutHeld = proxy.holdBusiest();
    await sleep(300);
    cutHeld();
    await sleep(1_500);
    cut();
    const answers = await Promise.all(sending);

    expect(proxy.connections).toBe(before + 1);
    for (const [index, sent] of answers.entries()) {
      expect(failures(sent), `sender ${index}`).toEqual([]);
      const acked = sent.flatMap((frame) => (frame.kind.case === "sendAck" ? [frame.kind.value.seq] : []));
      // Stored once each, in the order sent: seq 1..n.
      expect(acked).toEqual(Array.from({ length: sent.length }, (_, i) => BigInt(i + 1)));
      const room = rooms[index] ?? "";
      await eventually(() => messagesOf(senders[index] as WsTestClient, room).length >= sent.length, 10_000, `sender ${index} sees its messages`);
      expect(messagesOf(senders[index] as WsTestClient, room).map((message) => message.seq)).toEqual(acked);
    }
    // One session's send stream broke and was resent; no send surfaced an error.
    expect(logs.find({ msg: "send stream to core broken; resending un-answered items" }).length).toBeGreaterThan(0);
    expect(new Set(logs.find({ msg: "send stream to core broken; resending un-answered items" }).map((line) => line.core_session)).size).toBe(1);
  }, 60_000);
});
