import { fromJsonString } from "@bufbuild/protobuf";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebhookDeliverySchema } from "../../../gen/parley/v1/notifications_pb.js";
import { migrate, type Orm, openOrm } from "../../../src/core/store/orm.js";
import { UnitOfWork } from "../../../src/core/store/unit-of-work.js";
import {
  redriveWebhooks,
  WebhookDispatcher,
  type WebhookDispatcherOptions,
  webhookVerdictForStatus,
} from "../../../src/core/notifications/webhook-dispatcher.js";
import {
  PARLEY_ATTEMPT_HEADER,
  PARLEY_DELIVERY_ID_HEADER,
  PARLEY_SIGNATURE_HEADER,
  signWebhook,
  verifyWebhookSignature,
} from "../../../src/core/notifications/webhook-signature.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { LogCapture } from "../../support/logs.js";

const SECRET = "whsec-test-0123456789abcdef";
const runParley = (args: readonly string[], env: NodeJS.ProcessEnv) => promisify(execFile)("node", ["bin/parley.js", ...args], { env });
const TINY_BACKOFF = { initialMs: 5, maxMs: 20, multiplier: 2 };
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

let db: TestDatabase;
let orm: Orm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ databaseUrl: db.url });
  await migrate(orm);
});

afterAll(async () => {
  await orm.close();
  await db.drop();
});

beforeEach(async () => {
  // Dispatchers claim every due row in the database: start each test empty.
  await db.sql("truncate webhook_attempts, webhook_deliveries, notifications, inboxes cascade");
});

afterEach(async () => {
  // Dispatchers stop before receivers close, newest first.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// ---------------------------------------------------------------- helpers

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly deliveryId: string;
  /** The status the receiver answered, once the response was written. */
  answered: number | undefined;
}

/** The receiver's answer to its n-th request (0-based): a status, or never. */
type Answer = (request: Received, index: number) => number | "hang" | Promise<number | "hang">;

interface Receiver {
  readonly url: string;
  readonly requests: Received[];
  /** Requests answered with a 2xx, by delivery id. */
  acknowledged(): Map<string, number>;
}

/** A real HTTP receiver on 127.0.0.1, port 0. */
async function startReceiver(answer: Answer): Promise<Receiver> {
  const requests: Received[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const received: Received = {
        headers: request.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        deliveryId: String(request.headers[PARLEY_DELIVERY_ID_HEADER]),
        answered: undefined,
      };
      const index = requests.push(received) - 1;
      void Promise.resolve(answer(received, index)).then((status) => {
        if (status === "hang") return;
        response.on("finish", () => {
          received.answered = status;
        });
        response.writeHead(status).end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/parley`,
    requests,
    acknowledged() {
      const counts = new Map<string, number>();
      for (const r of requests) {
        if (r.answered !== undefined && r.answered >= 200 && r.answered < 300) counts.set(r.deliveryId, (counts.get(r.deliveryId) ?? 0) + 1);
      }
      return counts;
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds; fails naming `what` after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

let recipientCounter = 0;

/** `count` notifications for a new recipient, each with a delivery due now. */
async function insertDeliveries(count: number, title = "Invoice paid"): Promise<{ deliveryId: string; notificationId: string }[]> {
  const recipient = `user-${++recipientCounter}`;
  await db.sql("insert into inboxes (user_id) values ($1)", [recipient]);
  const rows = await db.sql<{ delivery_id: string; notification_id: string }>(
    `with n as (
       insert into notifications (id, recipient_id, seq, sender, idempotency_key, kind, title, body, data)
       select gen_random_uuid(), $1, g, 'svc-billing', 'key-' || g, 'invoice.paid',
              case when $3::int = 1 then $2 else $2 || ' #' || g end, 'Thanks!', '{"invoice":"inv_42","amount":1200}'::jsonb
         from generate_series(1, $3::int) g
       returning id, seq
     )
     insert into webhook_deliveries (id, notification_id, next_attempt_at)
     select gen_random_uuid(), id, now() from n order by seq
     returning id as delivery_id, notification_id`,
    [recipient, title, count],
  );
  return rows.map((r) => ({ deliveryId: r.delivery_id, notificationId: r.notification_id }));
}

interface DeliveryState {
  status: string;
  attempts: number;
  lease_until: string | null;
  last_error_category: string | null;
}

async function deliveryState(id: string): Promise<DeliveryState> {
  const [row] = await db.sql<DeliveryState>(
    "select status, attempts, lease_until::text, last_error_category from webhook_deliveries where id = $1",
    [id],
  );
  if (row === undefined) throw new Error(`no delivery ${id}`);
  return row;
}

interface AttemptRow {
  attempt: number;
  status_code: number | null;
  outcome: string;
  error_category: string | null;
  error: string | null;
  duration_ms: number;
}

function attemptsOf(id: string): Promise<AttemptRow[]> {
  return db.sql<AttemptRow>(
    "select attempt, status_code, outcome, error_category, error, duration_ms from webhook_attempts where delivery_id = $1 order by attempt",
    [id],
  );
}

async function countByStatus(status: string): Promise<number> {
  const [row] = await db.sql<{ n: number }>("select count(*)::int as n from webhook_deliveries where status = $1", [status]);
  return row?.n ?? 0;
}

/** A started dispatcher, stopped after the test. */
function startDispatcher(
  url: string,
  options: Partial<WebhookDispatcherOptions> = {},
  logs = new LogCapture("debug"),
): { dispatcher: WebhookDispatcher; logs: LogCapture } {
  const dispatcher = new WebhookDispatcher({
    unitOfWork: new UnitOfWork(orm, logs.logger),
    logger: logs.logger,
    url,
    secret: SECRET,
    pollIntervalMs: 50,
    attemptTimeoutMs: 2_000,
    backoff: TINY_BACKOFF,
    ...options,
  });
  dispatcher.start();
  cleanups.push(() => dispatcher.stop());
  return { dispatcher, logs };
}

// ---------------------------------------------------------------- tests

describe("webhook delivery", () => {
  it("POSTs a signed, canonical proto3 JSON WebhookDelivery and records the attempt", async () => {
    const receiver = await startReceiver(() => 204);
    const [delivery] = await insertDeliveries(1, "Invoice paid");
    if (delivery === undefined) throw new Error("no delivery inserted");
    const { logs } = startDispatcher(receiver.url);

    await waitFor("the delivery to be recorded", async () => (await deliveryState(delivery.deliveryId)).status === "delivered");
    expect(receiver.requests).toHaveLength(1);
    const [request] = receiver.requests;
    if (request === undefined) throw new Error("no request");

    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers[PARLEY_DELIVERY_ID_HEADER]).toBe(delivery.deliveryId);
    expect(request.headers[PARLEY_ATTEMPT_HEADER]).toBe("1");
    const verification = verifyWebhookSignature(SECRET, request.headers[PARLEY_SIGNATURE_HEADER] as string, request.body);
    expect(verification).toMatchObject({ ok: true });

    const message = fromJsonString(WebhookDeliverySchema, request.body);
    expect(message.deliveryId).toBe(delivery.deliveryId);
    expect(message.attempt).toBe(1);
    expect(message.notification?.id).toBe(delivery.notificationId);
    expect(message.notification?.title).toBe("Invoice paid");
    expect(message.notification?.seq).toBe(1n);
    expect(message.notification?.data).toEqual({ invoice: "inv_42", amount: 1200 });
    const json = JSON.parse(request.body) as { sentAt: string; notification: { createdAt: string; readAt?: string } };
    expect(json.sentAt).toMatch(RFC3339_UTC);
    expect(json.notification.createdAt).toMatch(RFC3339_UTC);
    expect(json.notification.readAt).toBeUndefined();
    // The signature's timestamp is the send time.
    expect(Math.abs(Number(message.sentAt?.seconds) - (verification.ok ? verification.timestamp : 0))).toBeLessThanOrEqual(1);

    expect(await deliveryState(delivery.deliveryId)).toMatchObject({ status: "delivered", attempts: 1, lease_until: null, last_error_category: null });
    expect(await attemptsOf(delivery.deliveryId)).toEqual([
      expect.objectContaining({ attempt: 1, status_code: 204, outcome: "delivered", error_category: null, error: null }),
    ]);
    expect(logs.find({ msg: "webhook delivered", delivery_id: delivery.deliveryId })).toEqual([
      expect.objectContaining({ level: "info", notification_id: delivery.notificationId, attempt: 1, status_code: 204, recipient: expect.any(String) as unknown, duration_ms: expect.any(Number) as unknown }),
    ]);
  });

  it("retries 500 with backoff until a 200: one accepted delivery, three recorded attempts", async () => {
    const receiver = await startReceiver((_request, index) => (index < 2 ? 500 : 200));
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    const { logs } = startDispatcher(receiver.url, { maxAttempts: 5 });

    await waitFor("the delivery to be recorded", async () => (await deliveryState(delivery.deliveryId)).status === "delivered");
    expect(receiver.requests.map((r) => r.headers[PARLEY_ATTEMPT_HEADER])).toEqual(["1", "2", "3"]);
    expect(new Set(receiver.requests.map((r) => r.deliveryId))).toEqual(new Set([delivery.deliveryId]));
    expect(receiver.acknowledged()).toEqual(new Map([[delivery.deliveryId, 1]]));
    expect((await attemptsOf(delivery.deliveryId)).map((a) => [a.attempt, a.outcome, a.status_code, a.error_category])).toEqual([
      [1, "retry", 500, "DELIVERY"],
      [2, "retry", 500, "DELIVERY"],
      [3, "delivered", 200, null],
    ]);
    expect(await deliveryState(delivery.deliveryId)).toMatchObject({ status: "delivered", attempts: 3, last_error_category: null });
    expect(logs.find({ msg: "webhook attempt failed; retrying", level: "warn" })).toHaveLength(2);
  });

  it("a receiver that never answers: each attempt times out, then the delivery fails with DELIVERY; the notification stays unread", async () => {
    const receiver = await startReceiver(() => "hang");
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    const { logs } = startDispatcher(receiver.url, { maxAttempts: 3, attemptTimeoutMs: 200 });

    await waitFor("the delivery to fail", async () => (await deliveryState(delivery.deliveryId)).status === "failed");
    expect(await deliveryState(delivery.deliveryId)).toMatchObject({ status: "failed", attempts: 3, lease_until: null, last_error_category: "DELIVERY" });
    const attempts = await attemptsOf(delivery.deliveryId);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.status_code, a.error_category])).toEqual([
      [1, "retry", null, "TIMEOUT"],
      [2, "retry", null, "TIMEOUT"],
      [3, "failed", null, "TIMEOUT"],
    ]);
    for (const attempt of attempts) {
      expect(attempt.duration_ms).toBeGreaterThanOrEqual(150);
      expect(attempt.error).toContain("no response within 200 ms");
    }
    expect(receiver.requests).toHaveLength(3);
    const [notification] = await db.sql<{ read_at: string | null }>("select read_at from notifications where id = $1", [delivery.notificationId]);
    expect(notification?.read_at).toBeNull();
    expect(logs.find({ level: "error", category: "DELIVERY", delivery_id: delivery.deliveryId })).toEqual([
      expect.objectContaining({ attempt: 3, notification_id: delivery.notificationId, duration_ms: expect.any(Number) as unknown }),
    ]);
  });

  it("a 400 fails at once and is not retried", async () => {
    const receiver = await startReceiver(() => 400);
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    const { dispatcher } = startDispatcher(receiver.url, { maxAttempts: 5 });

    await waitFor("the delivery to fail", async () => (await deliveryState(delivery.deliveryId)).status === "failed");
    // Once failed it is no longer claimable; a kick and a stop prove nothing else was in flight.
    dispatcher.kick();
    await dispatcher.stop();
    expect(receiver.requests).toHaveLength(1);
    expect(await deliveryState(delivery.deliveryId)).toMatchObject({ status: "failed", attempts: 1, last_error_category: "DELIVERY" });
    expect((await attemptsOf(delivery.deliveryId)).map((a) => [a.attempt, a.outcome, a.status_code, a.error_category, a.error])).toEqual([
      [1, "failed", 400, "DELIVERY", "HTTP 400 Bad Request"],
    ]);
  });

  it("maps HTTP statuses to verdicts: 2xx delivered, 429 and 5xx retried, other 3xx/4xx failed", () => {
    const verdicts = Object.fromEntries([200, 202, 204, 299, 301, 304, 400, 401, 404, 408, 410, 429, 500, 502, 503, 504].map((s) => [s, webhookVerdictForStatus(s)]));
    expect(verdicts).toEqual({
      200: "delivered", 202: "delivered", 204: "delivered", 299: "delivered",
      301: "failed", 304: "failed", 400: "failed", 401: "failed", 404: "failed", 408: "failed", 410: "failed",
      429: "retry", 500: "retry", 502: "retry", 503: "retry", 504: "retry",
    });
  });

  it("leaves alone a delivery cancelled while its attempt was in flight", async () => {
    const gate: { open?: () => void } = {};
    const released = new Promise<undefined>((resolve) => {
      gate.open = () => { resolve(undefined); };
    });
    const receiver = await startReceiver(async () => { await released; return 500; });
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    const { logs } = startDispatcher(receiver.url);

    await waitFor("the attempt to arrive", () => receiver.requests.length === 1);
    // What the live path does when the recipient reads the notification meanwhile.
    const [cancelled] = await db.sql<{ row: string }>(
      "update webhook_deliveries set status = 'cancelled', updated_at = now() where id = $1 returning row(webhook_deliveries.*)::text as row",
      [delivery.deliveryId],
    );
    gate.open?.();
    await waitFor("the attempt to be recorded", async () => (await attemptsOf(delivery.deliveryId)).length === 1);
    // The attempt is on record, but the delivery row is exactly as cancelled.
    const [after] = await db.sql<{ row: string }>("select row(webhook_deliveries.*)::text as row from webhook_deliveries where id = $1", [delivery.deliveryId]);
    expect(after?.row).toBe(cancelled?.row);
    expect(await deliveryState(delivery.deliveryId)).toMatchObject({ status: "cancelled", attempts: 1 });
    expect((await attemptsOf(delivery.deliveryId))[0]).toMatchObject({ outcome: "retry", status_code: 500 });
    await waitFor("the log line", () => logs.find({ delivery_id: delivery.deliveryId, outcome: "retry" }).length === 1);
    expect(receiver.requests).toHaveLength(1);
  });
});

describe("webhook retries over an outage", () => {
  it("a receiver down past the retry budget: its deliveries fail; once it answers again they are re-driven and each is delivered exactly once", async () => {
    const receiver = { down: true };
    const endpoint = await startReceiver(() => (receiver.down ? 503 : 204));
    const deliveries = await insertDeliveries(5);
    const { logs } = startDispatcher(endpoint.url, { maxAttempts: 3 });
    await waitFor("every delivery to fail", async () => {
      const states = await Promise.all(deliveries.map((d) => deliveryState(d.deliveryId)));
      return states.every((state) => state.status === "failed");
    });
    receiver.down = false;
    // The endpoint is back: the next delivery that gets through re-drives the failed ones.
    const [fresh] = await insertDeliveries(1, "After the outage");
    if (fresh === undefined) throw new Error("no delivery inserted");
    const all = [...deliveries, fresh];
    await waitFor("every delivery to be delivered", async () => {
      const states = await Promise.all(all.map((d) => deliveryState(d.deliveryId)));
      return states.every((state) => state.status === "delivered");
    });
    expect(endpoint.acknowledged()).toEqual(new Map(all.map((d) => [d.deliveryId, 1])));
    // The new window's attempts follow the old ones: 3 that failed, then the one that got through.
    for (const delivery of deliveries) {
      expect((await attemptsOf(delivery.deliveryId)).map((a) => a.outcome)).toEqual(["retry", "retry", "failed", "delivered"]);
    }
    expect(logs.find({ msg: "webhook endpoint answers again; failed deliveries re-driven" })).toEqual([expect.objectContaining({ redriven: 5 })]);
  });

  it("the retry horizon fails a delivery that still has attempts left", async () => {
    const endpoint = await startReceiver(() => 503);
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    startDispatcher(endpoint.url, { maxAttempts: 10_000, retryHorizonMs: 300, backoff: { initialMs: 40, maxMs: 40, multiplier: 1 } });
    await waitFor("the delivery to fail", async () => (await deliveryState(delivery.deliveryId)).status === "failed");
    const attempts = await attemptsOf(delivery.deliveryId);
    expect(attempts.length).toBeGreaterThan(1);
    expect(attempts.length).toBeLessThan(30);
    expect(attempts.at(-1)?.outcome).toBe("failed");
  });

  it("a delivery the receiver refused (4xx) is not re-driven by itself, but is on demand (all)", async () => {
    const answers = { status: 400 };
    const endpoint = await startReceiver(() => answers.status);
    const [refused] = await insertDeliveries(1);
    if (refused === undefined) throw new Error("no delivery inserted");
    const { dispatcher } = startDispatcher(endpoint.url);
    await waitFor("the delivery to fail", async () => (await deliveryState(refused.deliveryId)).status === "failed");
    answers.status = 200;
    const [fresh] = await insertDeliveries(1);
    if (fresh === undefined) throw new Error("no delivery inserted");
    await waitFor("the new one to be delivered", async () => (await deliveryState(fresh.deliveryId)).status === "delivered");
    await delay(200);
    expect((await deliveryState(refused.deliveryId)).status).toBe("failed");
    const unitOfWork = new UnitOfWork(orm, new LogCapture("warn").logger);
    expect(await redriveWebhooks(unitOfWork, { all: false })).toBe(0);
    expect(await redriveWebhooks(unitOfWork, { all: true })).toBe(1);
    dispatcher.kick();
    await waitFor("the re-driven one to be delivered", async () => (await deliveryState(refused.deliveryId)).status === "delivered");
    expect(endpoint.acknowledged().get(refused.deliveryId)).toBe(1);
  });

  it("`parley webhooks redrive` re-drives the failed deliveries (--all: the refused ones too) and says how many; a wrong usage exits 2", async () => {
    const [exhausted, refused] = await insertDeliveries(2);
    if (exhausted === undefined || refused === undefined) throw new Error("no delivery inserted");
    await db.sql("update webhook_deliveries set status = 'failed', attempts = 1 where id = any($1::uuid[])", [[exhausted.deliveryId, refused.deliveryId]]);
    await db.sql("insert into webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, outcome) values ($1, 1, now(), 5, 503, 'failed'), ($2, 1, now(), 5, 410, 'failed')", [exhausted.deliveryId, refused.deliveryId]);
    const env = { ...process.env, DATABASE_URL: db.url, PARLEY_LOG_LEVEL: "info" };
    const plain = await runParley(["webhooks", "redrive"], env);
    expect(plain.stdout).toContain("1 failed webhook deliveries re-driven");
    expect((await deliveryState(exhausted.deliveryId)).status).toBe("pending");
    expect((await deliveryState(refused.deliveryId)).status).toBe("failed");
    const all = await runParley(["webhooks", "redrive", "--all"], env);
    expect(all.stdout).toContain("1 failed webhook deliveries re-driven");
    expect((await deliveryState(refused.deliveryId)).status).toBe("pending");
    const wrong = await runParley(["webhooks", "resend"], env).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(wrong?.code).toBe(2);
    expect(wrong?.stderr).toContain("usage: parley webhooks redrive");
  });

  it("records an attempt as in flight from its claim, before the request goes out, so a crash mid-attempt still shows it", async () => {
    const endpoint = await startReceiver(() => "hang");
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    startDispatcher(endpoint.url, { attemptTimeoutMs: 1_000, leaseMs: 5_000 });
    await waitFor("the request to arrive", () => endpoint.requests.length === 1);
    expect((await attemptsOf(delivery.deliveryId)).map((a) => [a.attempt, a.outcome, a.status_code])).toEqual([[1, "in_flight", null]]);
  });
});

describe("webhook signatures", () => {
  const body = '{"deliveryId":"d-1","attempt":1}';
  const now = 1_800_000_000;

  it("verify what was signed, with secrets rotated on either side", () => {
    const header = signWebhook(SECRET, body, now);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, header, body, { nowSeconds: now })).toEqual({ ok: true, timestamp: now });
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(body), { nowSeconds: now + 300 })).toEqual({ ok: true, timestamp: now });
    // Sender rotating: one v1 per secret; a receiver with either accepts.
    const rotating = signWebhook(["new-secret-0123456789", SECRET], body, now);
    expect(rotating.split(",")).toHaveLength(3);
    expect(verifyWebhookSignature(SECRET, rotating, body, { nowSeconds: now }).ok).toBe(true);
    expect(verifyWebhookSignature("new-secret-0123456789", rotating, body, { nowSeconds: now }).ok).toBe(true);
    // Receiver rotating: it accepts any of its secrets.
    expect(verifyWebhookSignature(["other-secret-0123456", SECRET], header, body, { nowSeconds: now }).ok).toBe(true);
    // Unknown schemes are ignored.
    expect(verifyWebhookSignature(SECRET, `${header},v2=abc`, body, { nowSeconds: now }).ok).toBe(true);
  });

  it("refuse a tampered body, a changed or old timestamp, a wrong secret and malformed headers", () => {
    const header = signWebhook(SECRET, body, now);
    const refused = (h: string | undefined, b = body, nowSeconds = now) => verifyWebhookSignature(SECRET, h, b, { nowSeconds });
    expect(refused(header, body.replace("1}", "2}"))).toEqual({ ok: false, reason: "mismatch" });
    expect(refused(header.replace(`t=${now}`, `t=${now + 1}`))).toEqual({ ok: false, reason: "mismatch" });
    expect(refused(signWebhook("wrong-secret-012345678", body, now))).toEqual({ ok: false, reason: "mismatch" });
    expect(refused(header, body, now + 301)).toEqual({ ok: false, reason: "stale" });
    expect(refused(header, body, now - 301)).toEqual({ ok: false, reason: "stale" });
    expect(verifyWebhookSignature(SECRET, header, body, { nowSeconds: now + 61, toleranceSeconds: 60 })).toEqual({ ok: false, reason: "stale" });
    expect(refused(undefined)).toEqual({ ok: false, reason: "malformed" });
    expect(refused("")).toEqual({ ok: false, reason: "malformed" });
    expect(refused(header.replace("v1=", "v1=zz"))).toEqual({ ok: false, reason: "malformed" });
    expect(refused(`t=${now},t=${now},${header.split(",")[1] ?? ""}`)).toEqual({ ok: false, reason: "malformed" });
    expect(refused(`t=${now}`)).toEqual({ ok: false, reason: "no-signature" });
  });

  it("refuse a real delivery's body once tampered with, and the same request replayed later", async () => {
    const receiver = await startReceiver(() => 200);
    const [delivery] = await insertDeliveries(1);
    if (delivery === undefined) throw new Error("no delivery inserted");
    startDispatcher(receiver.url);
    await waitFor("the delivery", () => receiver.requests.length === 1);
    const [request] = receiver.requests;
    if (request === undefined) throw new Error("no request");
    const header = request.headers[PARLEY_SIGNATURE_HEADER] as string;
    expect(verifyWebhookSignature(SECRET, header, request.body).ok).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, request.body.replace("Invoice paid", "Invoice unpaid"))).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhookSignature(SECRET, header, request.body, { nowSeconds: Math.floor(Date.now() / 1000) + 3600 })).toEqual({ ok: false, reason: "stale" });
  });
});

describe("webhook dispatch across instances and restarts", () => {
  it("two dispatchers on one database deliver each of 50 deliveries exactly once", async () => {
    const receiver = await startReceiver(async () => { await delay(5); return 200; });
    const deliveries = await insertDeliveries(50);
    // A second ORM: its own connection pool, as a second core instance has.
    const otherOrm = await openOrm({ databaseUrl: db.url });
    cleanups.push(() => otherOrm.close());
    const logsA = new LogCapture("debug");
    const logsB = new LogCapture("debug");
    startDispatcher(receiver.url, { batchSize: 4 }, logsA);
    const b = new WebhookDispatcher({ unitOfWork: new UnitOfWork(otherOrm, logsB.logger), logger: logsB.logger, url: receiver.url, secret: SECRET, pollIntervalMs: 50, batchSize: 4, backoff: TINY_BACKOFF });
    b.start();
    cleanups.push(() => b.stop());

    await waitFor("all 50 delivered", async () => (await countByStatus("delivered")) === 50);
    expect(receiver.requests).toHaveLength(50);
    expect([...receiver.acknowledged().values()]).toEqual(Array.from({ length: 50 }, () => 1));
    expect(new Set(receiver.requests.map((r) => r.deliveryId))).toEqual(new Set(deliveries.map((d) => d.deliveryId)));
    const [attempts] = await db.sql<{ n: number; max: number }>("select count(*)::int as n, max(attempt) as max from webhook_attempts");
    expect(attempts).toEqual({ n: 50, max: 1 });
    // Both instances took part (they claim side by side, not one after the other).
    expect(logsA.find({ msg: "webhook delivered" }).length).toBeGreaterThan(0);
    expect(logsB.find({ msg: "webhook delivered" }).length).toBeGreaterThan(0);
  });

  it("a dispatcher stopped mid-way leaves the rest pending; a new one delivers them and nothing acknowledged is sent twice", async () => {
    const receiver = await startReceiver(async () => { await delay(60); return 200; });
    const deliveries = await insertDeliveries(20);
    const { dispatcher: first } = startDispatcher(receiver.url, { batchSize: 3 });
    await waitFor("a few acknowledgements", () => receiver.acknowledged().size >= 4);
    await first.stop();

    // Every attempt in flight at stop was answered and recorded; nothing is leased.
    const acknowledgedBefore = receiver.acknowledged();
    expect(await countByStatus("delivered")).toBe(acknowledgedBefore.size);
    const pending = await countByStatus("pending");
    expect(pending).toBeGreaterThan(0);
    expect(pending + acknowledgedBefore.size).toBe(20);
    const [leased] = await db.sql<{ n: number }>("select count(*)::int as n from webhook_deliveries where lease_until is not null");
    expect(leased?.n).toBe(0);

    // "Later": a new instance, with its own pool and a short lease.
    const otherOrm = await openOrm({ databaseUrl: db.url });
    cleanups.push(() => otherOrm.close());
    const logs = new LogCapture("debug");
    const second = new WebhookDispatcher({ unitOfWork: new UnitOfWork(otherOrm, logs.logger), logger: logs.logger, url: receiver.url, secret: SECRET, leaseMs: 500, attemptTimeoutMs: 400, pollIntervalMs: 50, backoff: TINY_BACKOFF });
    second.start();
    cleanups.push(() => second.stop());
    await waitFor("all 20 delivered", async () => (await countByStatus("delivered")) === 20);

    expect(receiver.requests).toHaveLength(20);
    expect(new Set(receiver.requests.map((r) => r.deliveryId))).toEqual(new Set(deliveries.map((d) => d.deliveryId)));
    expect([...receiver.acknowledged().values()].every((n) => n === 1)).toBe(true);
  });

  it("deliveries leased by a crashed instance are taken over once the lease expires", async () => {
    const receiver = await startReceiver(() => 200);
    const deliveries = await insertDeliveries(3);
    // What a crash leaves behind: claimed (attempt 1 counted), leased, never recorded.
    const [lease] = await db.sql<{ until_ms: number }>(
      `update webhook_deliveries set attempts = 1, lease_until = now() + interval '400 milliseconds'
        returning (extract(epoch from lease_until) * 1000)::float8 as until_ms`,
    );
    startDispatcher(receiver.url, { leaseMs: 3_000 });

    await waitFor("the takeover", async () => (await countByStatus("delivered")) === 3);
    for (const request of receiver.requests) {
      expect(request.headers[PARLEY_ATTEMPT_HEADER]).toBe("2");
      const sentAt = fromJsonString(WebhookDeliverySchema, request.body).sentAt;
      expect(Number(sentAt?.seconds) * 1000 + (sentAt?.nanos ?? 0) / 1e6).toBeGreaterThanOrEqual((lease?.until_ms ?? 0) - 5);
    }
    expect(new Set(receiver.requests.map((r) => r.deliveryId))).toEqual(new Set(deliveries.map((d) => d.deliveryId)));
    for (const d of deliveries) expect((await attemptsOf(d.deliveryId)).map((a) => [a.attempt, a.outcome])).toEqual([[2, "delivered"]]);
  });
});

describe("docs/examples/verify-webhook.mjs", () => {
  it("answers 204 to a real delivery and prints the notification, and 401 to a forged signature", async () => {
    const child: ChildProcess = spawn(process.execPath, ["docs/examples/verify-webhook.mjs"], {
      // A receiver mid-rotation: its new secret first, the one parley signs with second.
      env: { ...process.env, PORT: "0", PARLEY_WEBHOOK_SECRET: `receivers-next-secret-0042,${SECRET}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    cleanups.push(async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    });
    let stdout = "";
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const lines = createInterface({ input: child.stdout ?? process.stdin });
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`the example did not start: ${stderr}`)); }, 10_000);
      lines.once("line", (line) => { clearTimeout(timer); resolve(line); });
    });
    lines.on("line", (line) => { stdout += `${line}\n`; });
    const port = /:(\d+)$/.exec(first)?.[1];
    expect(port).toBeDefined();
    const url = `http://127.0.0.1:${port ?? ""}/`;

    const [delivery] = await insertDeliveries(1, "Your invoice was paid");
    if (delivery === undefined) throw new Error("no delivery inserted");
    startDispatcher(url);
    await waitFor("the delivery", async () => (await deliveryState(delivery.deliveryId)).status === "delivered");
    expect(await attemptsOf(delivery.deliveryId)).toEqual([expect.objectContaining({ status_code: 204, outcome: "delivered" })]);
    await waitFor("the printed notification", () => stdout.includes("Your invoice was paid"));
    expect(stdout).toContain(delivery.notificationId);

    const forgedBody = JSON.stringify({ deliveryId: "forged", attempt: 1, notification: { title: "Forged" } });
    const forged = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", [PARLEY_SIGNATURE_HEADER]: signWebhook("not-the-secret-0123456", forgedBody, Math.floor(Date.now() / 1000)) },
      body: forgedBody,
    });
    expect(forged.status).toBe(401);
    const unsigned = await fetch(url, { method: "POST", body: forgedBody });
    expect(unsigned.status).toBe(401);
    const stale = await fetch(url, { method: "POST", headers: { [PARLEY_SIGNATURE_HEADER]: signWebhook(SECRET, forgedBody, Math.floor(Date.now() / 1000) - 3600) }, body: forgedBody });
    expect(stale.status).toBe(401);
    await waitFor("the refusals on stderr", () => stderr.includes("timestamp outside the tolerance"));
    expect(stdout).not.toContain("Forged");
  });
});
