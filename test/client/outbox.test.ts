// The client's sends answered with an error (src/client/outbox.ts), against
// a real bridge, core and PostgreSQL: refused for the user's send rate,
// refused while the database fails, refused for good, and given up past the
// horizon. What went over the wire is read off the client's own socket.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import type { AdmissionLimits } from "../../src/bridge/limits.js";
import { type ChatMessage, ParleyClient, ParleyClientError, type ParleyClientOptions } from "../../src/client/index.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { WireLog } from "../support/recording-socket.js";

const WAIT_MS = 15_000;

let db: TestDatabase;
let core: TestCore;
const bridgeLogs = new LogCapture("error");
const bridges: RunningBridge[] = [];
let clients: ParleyClient[] = [];
let unique = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
  // A database failure on demand: inserts of bodies starting with "flaky"
  // fail (SQLSTATE 28000, which core reports as UNAVAILABLE) until the
  // time in flaky_until.
  await db.sql("create table flaky_until (until timestamptz not null)");
  await db.sql(`create function flaky_insert() returns trigger language plpgsql as $$
    begin
      if exists (select 1 from flaky_until where until > clock_timestamp()) then
        raise exception 'the database is failing on purpose' using errcode = '28000';
      end if;
      return new;
    end $$`);
  await db.sql("create trigger flaky_insert before insert on chat_messages for each row when (new.body like 'flaky%') execute function flaky_insert()");
});

afterEach(() => {
  for (const client of clients) client.close();
  clients = [];
});

afterAll(async () => {
  for (const bridge of bridges) await bridge.stop(0);
  await core.stop(0);
  await db.drop();
});

function nextName(prefix: string): string {
  unique++;
  return `${prefix}-${process.pid}-${unique}`;
}

async function bridge(admission: Partial<AdmissionLimits> = {}): Promise<RunningBridge> {
  const started = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger, admission });
  bridges.push(started);
  return started;
}

async function newClient(user: string, on: RunningBridge, wire: WireLog, options: Partial<ParleyClientOptions> = {}): Promise<ParleyClient> {
  const client = new ParleyClient({ url: `ws://${on.address}`, token: await mintToken(TEST_JWT_SECRET, user), socketFactory: wire.factory, ...options });
  clients.push(client);
  await client.ready();
  return client;
}

/** The client_msg_ids stored for `sender` in `room`, in seq order, with their copies. */
async function stored(sender: string, room: string): Promise<{ client_msg_id: string; copies: number }[]> {
  return db.sql<{ client_msg_id: string; copies: number }>(
    `select client_msg_id, count(*)::int as copies from chat_messages where sender = $1 and room_id = $2
      group by client_msg_id order by min(seq)`,
    [sender, room],
  );
}

type Settled = { ok: true; message: ChatMessage; at: number } | { ok: false; error: ParleyClientError; at: number };

/** Each send's outcome and when it came (ms after `since`), within WAIT_MS. */
async function settle(sends: Promise<ChatMessage>[], since: number): Promise<Settled[]> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => { reject(new Error(`sends not settled within ${WAIT_MS} ms`)); }, WAIT_MS);
  });
  try {
    return await Promise.race([
      Promise.all(
        sends.map((send) =>
          send.then(
            (message): Settled => ({ ok: true, message, at: performance.now() - since }),
            (error: unknown): Settled => {
              if (!(error instanceof ParleyClientError)) throw error;
              return { ok: false, error, at: performance.now() - since };
            },
          ),
        ),
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The refusals the client received for its sends: request id → category. */
function refusals(wire: WireLog): Map<string, ErrorCategory> {
  const refused = new Map<string, ErrorCategory>();
  for (const event of wire.events) if ("in" in event && event.in.kind.case === "error") refused.set(event.in.requestId, event.in.kind.value.category);
  return refused;
}

/**
 * Walks the wire in order and fails where a send was written while an
 * earlier send (in `order`) waited to be resent after a retryable refusal.
 * Returns how many retryable refusals there were.
 */
function checkHeldInOrder(wire: WireLog, order: readonly string[]): number {
  const position = new Map(order.map((clientMsgId, index) => [clientMsgId, index]));
  const byRequest = new Map<string, string>();
  const waiting = new Set<string>();
  let refusedCount = 0;
  for (const event of wire.events) {
    if ("out" in event) {
      if (event.out.request.case !== "send") continue;
      const id = event.out.request.value.clientMsgId;
      byRequest.set(event.out.requestId, id);
      const index = position.get(id) ?? -1;
      const earlier = [...waiting].filter((other) => (position.get(other) ?? -1) < index);
      if (earlier.length > 0) throw new Error(`${id} was written while ${earlier.join(", ")} waited to be resent`);
      waiting.delete(id);
      continue;
    }
    const id = byRequest.get(event.in.requestId);
    if (id !== undefined && event.in.kind.case === "error" && event.in.kind.value.retryable) {
      waiting.add(id);
      refusedCount++;
    }
  }
  return refusedCount;
}

/** Send frames written (from the first retryable refusal on, when `afterRefusal`) while other sends were un-answered, as `id (n on the wire)`. */
function writtenAlongside(wire: WireLog, options: { afterRefusal: boolean; only?: string }): string[] {
  const onWire = new Map<string, string>();
  const found: string[] = [];
  let refused = !options.afterRefusal;
  for (const event of wire.events) {
    if ("out" in event) {
      if (event.out.request.case !== "send") continue;
      const id = event.out.request.value.clientMsgId;
      if (refused && onWire.size > 0 && (options.only === undefined || [...onWire.values()].includes(options.only))) found.push(`${id} (${onWire.size} on the wire)`);
      onWire.set(event.out.requestId, id);
      continue;
    }
    if (!onWire.delete(event.in.requestId)) continue;
    if (event.in.kind.case === "error" && event.in.kind.value.retryable) refused = true;
  }
  return found;
}

describe("sends the server refused with a retryable error", () => {
  it("a user sending faster than their send rate gets every send stored exactly once, in the order made, without the connection closing", async () => {
    const limited = await bridge({ sendsPerSecondPerUser: 5, sendBurstPerUser: 5 });
    const user = nextName("hasty");
    const room = nextName("room");
    const wire = new WireLog();
    const client = await newClient(user, limited, wire);
    const states: string[] = [];
    client.onStateChange((state) => states.push(state));
    const delays: (string | undefined)[] = [];
    client.onSendDelay((reason) => delays.push(reason?.category));

    const ids = Array.from({ length: 15 }, (_, i) => `${room}-${i}`);
    const started = performance.now();
    const results = await settle(ids.map((id) => client.send(room, `body ${id}`, id)), started);

    expect(results.map((result) => (result.ok ? result.message.clientMsgId : result.error.category))).toEqual(ids);
    const seqs = results.map((result) => (result.ok ? result.message.seq : -1n));
    expect(seqs).toEqual(ids.map((_, i) => BigInt(i + 1)));
    expect(await stored(user, room)).toEqual(ids.map((id) => ({ client_msg_id: id, copies: 1 })));
    // Ten past the burst of five at five a second: about two seconds.
    expect(results.at(-1)?.at ?? 0).toBeGreaterThan(1_500);

    const refused = [...refusals(wire).values()];
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((category) => category === ErrorCategory.RATE_LIMITED)).toBe(true);
    // Resends only of what was refused, each with its own client_msg_id.
    expect(wire.sends.length).toBe(ids.length + refused.length);
    expect(checkHeldInOrder(wire, ids)).toBe(refused.length);
    // After the first refusal one send at a time, paced to the rate: few refusals, no 4029.
    expect(writtenAlongside(wire, { afterRefusal: true })).toEqual([]);
    expect(refused.length).toBeLessThanOrEqual(ids.length);
    expect(states).toEqual([]);
    expect(delays.at(0)).toBe("RATE_LIMITED");
    expect(delays.at(-1)).toBeUndefined();
    expect(client.sendDelay).toBeUndefined();
  });

  it("a burst far past the user's burst is paced without the connection closing: refusals stay under the bridge's refusal burst", async () => {
    // 150 sends, 10 at once: with every send on the wire at once (256
    // allowed), 140 refusals would pass the refusal burst of 100 (4029).
    const limited = await bridge({ sendsPerSecondPerUser: 100, sendBurstPerUser: 10 });
    const user = nextName("bulk");
    const room = nextName("room");
    const wire = new WireLog();
    const client = await newClient(user, limited, wire);
    const states: string[] = [];
    client.onStateChange((state) => states.push(state));
    const ids = Array.from({ length: 150 }, (_, i) => `${room}-${i}`);
    const results = await settle(ids.map((id) => client.send(room, `body ${id}`, id)), performance.now());
    expect(results.filter((result) => !result.ok)).toEqual([]);
    expect(await stored(user, room)).toEqual(ids.map((id) => ({ client_msg_id: id, copies: 1 })));
    expect(states).toEqual([]);
    expect(refusals(wire).size).toBeLessThan(100);
  });

  it("sends refused while the database fails (UNAVAILABLE) are resent with backoff, the oldest alone first, and stored once each, in order", async () => {
    const on = await bridge();
    const user = nextName("patient");
    const room = nextName("room");
    const wire = new WireLog();
    const client = await newClient(user, on, wire, { sendRetryBackoff: { initialMs: 50, maxMs: 200, multiplier: 1.6 } });
    // The database fails until every send has been refused once: which
    // sends reach core before it recovers is then not a matter of timing.
    await db.sql("insert into flaky_until values ('infinity')");
    const ids = Array.from({ length: 6 }, (_, i) => `${room}-${i}`);
    const started = performance.now();
    const settling = settle(ids.map((id) => client.send(room, `flaky ${id}`, id)), started);
    const deadline = performance.now() + 10_000;
    while (refusals(wire).size < ids.length && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(refusals(wire).size).toBeGreaterThanOrEqual(ids.length);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const recovered = performance.now() - started;
    await db.sql("delete from flaky_until");
    const results = await settling;

    expect(results.map((result) => (result.ok ? result.message.clientMsgId : result.error.category))).toEqual(ids);
    expect(results[0]?.at ?? 0).toBeGreaterThan(recovered);
    expect(await stored(user, room)).toEqual(ids.map((id) => ({ client_msg_id: id, copies: 1 })));
    const refused = [...refusals(wire).values()];
    expect(refused.length).toBeGreaterThanOrEqual(ids.length);
    expect(refused.every((category) => category === ErrorCategory.UNAVAILABLE)).toBe(true);
    expect(checkHeldInOrder(wire, ids)).toBe(refused.length);
    // While the oldest is being resent, nothing is written after it.
    const resendsOfFirst = wire.sends.filter((send) => send.clientMsgId === ids[0]);
    expect(resendsOfFirst.length).toBeGreaterThan(1);
    expect(writtenAlongside(wire, { afterRefusal: true, only: ids[0] })).toEqual([]);
  });

  it("a send refused for good (VALIDATION) is rejected at once and not resent; the sends around it are stored in order", async () => {
    const on = await bridge();
    const user = nextName("careless");
    const room = nextName("room");
    const wire = new WireLog();
    const client = await newClient(user, on, wire);
    const sends = [client.send(room, "one", `${room}-1`), client.send(room, "", `${room}-empty`), client.send("not a room!", "x", `${room}-bad-room`), client.send(room, "two", `${room}-2`)];
    const results = await settle(sends, performance.now());
    expect(results.map((result) => (result.ok ? "stored" : `${result.error.category} ${result.error.field ?? ""}`))).toEqual(["stored", "VALIDATION send.body", "VALIDATION send.room", "stored"]);
    expect(wire.sends.map((send) => send.clientMsgId)).toEqual([`${room}-1`, `${room}-empty`, `${room}-bad-room`, `${room}-2`]);
    expect(await stored(user, room)).toEqual([
      { client_msg_id: `${room}-1`, copies: 1 },
      { client_msg_id: `${room}-2`, copies: 1 },
    ]);
  });

  it("a send still refused at its horizon is rejected with its last refusal, not resent past it; the send behind it is given up at its own", async () => {
    // One send every 5 s: the one after the first waits longer than the horizon.
    const slow = await bridge({ sendsPerSecondPerUser: 0.2, sendBurstPerUser: 1 });
    const user = nextName("stubborn");
    const room = nextName("room");
    const wire = new WireLog();
    const client = await newClient(user, slow, wire, { sendRetryHorizonMs: 600 });
    const started = performance.now();
    const results = await settle([client.send(room, "first", `${room}-1`), client.send(room, "second", `${room}-2`), client.send(room, "third", `${room}-3`)], started);
    const [first, second, third] = results;
    expect(first?.ok).toBe(true);
    if (second?.ok !== false || third?.ok !== false) throw new Error("the second and third sends should be given up");
    expect(second.error).toMatchObject({ category: "RATE_LIMITED", retryable: true });
    expect(second.error.retryAfterMs).toBeGreaterThan(1_000);
    expect(second.at).toBeGreaterThan(550);
    expect(second.at).toBeLessThan(2_000);
    expect(third.error.category).toBe("RATE_LIMITED");
    // Not resent: the server's retry_after lay beyond the horizon.
    expect(wire.sends.filter((send) => send.clientMsgId === `${room}-2`)).toHaveLength(1);
    expect(await stored(user, room)).toEqual([{ client_msg_id: `${room}-1`, copies: 1 }]);
  });

  it("close() rejects a send waiting for its resend with its refusal", async () => {
    const slow = await bridge({ sendsPerSecondPerUser: 0.2, sendBurstPerUser: 1 });
    const room = nextName("room");
    const client = await newClient(nextName("closing"), slow, new WireLog());
    const first = client.send(room, "first");
    const second = client.send(room, "second");
    await first;
    await expect.poll(() => client.sendDelay?.category, { timeout: WAIT_MS }).toBe("RATE_LIMITED");
    client.close();
    await expect(second).rejects.toMatchObject({ category: "RATE_LIMITED" });
  });
});
