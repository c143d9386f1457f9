import { execFile } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { promisify } from "node:util";
import { fromJsonString } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotificationService, WebhookDeliverySchema } from "../../../gen/parley/v1/notifications_pb.js";
import { mintToken, NOTIFICATIONS_SEND_SCOPE } from "../../../src/runtime/auth/tokens.js";
import { verifyWebhookSignature } from "../../../src/core/notifications/webhook-signature.js";
import { createClient } from "../../../src/runtime/grpc/client.js";
import { TEST_JWT_SECRET } from "../../support/core.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { spawnCore, withoutUnset } from "../../support/processes.js";

const WEBHOOK_SECRET = "webhook-secret-for-tests";

interface Received {
  readonly deliveryId: string;
  readonly notificationId: string;
  readonly title: string;
  readonly verified: boolean;
}

let db: TestDatabase;
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString()));
    request.on("end", () => { resolve(body); });
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  receiver = createServer((request, response) => {
    void readBody(request).then((body) => {
      // The documented procedure: HMAC over "<t>.<raw body>", constant-time compare, fresh t.
      const verification = verifyWebhookSignature(WEBHOOK_SECRET, request.headers["parley-signature"] as string | undefined, body);
      const delivery = fromJsonString(WebhookDeliverySchema, body);
      received.push({
        deliveryId: delivery.deliveryId,
        notificationId: delivery.notification?.id ?? "",
        title: delivery.notification?.title ?? "",
        verified: verification.ok,
      });
      response.writeHead(verification.ok ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", () => { resolve(); }));
  const address = receiver.address();
  receiverUrl = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/hooks`;
});

afterAll(async () => {
  await new Promise((resolve) => receiver.close(resolve));
  await db.drop();
});

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("notification webhooks through a real core process", () => {
  it("delivers signed webhooks for notifications nobody received live, and after a kill -9 delivers the pending ones exactly once", async () => {
    const env = {
      DATABASE_URL: db.url,
      PARLEY_JWT_SECRET: TEST_JWT_SECRET,
      PARLEY_MIGRATE: "1",
      PARLEY_WEBHOOK_URL: receiverUrl,
      PARLEY_WEBHOOK_SECRET: WEBHOOK_SECRET,
      PARLEY_WEBHOOK_GRACE_MS: "300",
    };
    const token = await mintToken(TEST_JWT_SECRET, "alerts", { scopes: [NOTIFICATIONS_SEND_SCOPE] });
    const headers = () => ({ authorization: `Bearer ${token}` });

    // First run: 5 notifications, all delivered and acknowledged (204).
    const first = await spawnCore(env);
    let client = createClient(NotificationService, first.address, { headers });
    const firstIds: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const sent = await client.sendNotification({ recipients: ["offline-user"], kind: "alert", title: `first ${i}`, idempotencyKey: `first-${i}` });
      firstIds.push(sent.notifications[0]?.id ?? "");
    }
    await until(() => firstIds.every((id) => received.some((r) => r.notificationId === id)));
    expect(received.every((r) => r.verified)).toBe(true);
    await until(async () => {
      const rows = await db.sql<{ n: string }>("select count(*) as n from webhook_deliveries where status = 'delivered'");
      return rows[0]?.n === "5";
    });

    // Then 5 more, and the process is killed before their grace period ends.
    const secondIds: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const sent = await client.sendNotification({ recipients: ["offline-user"], kind: "alert", title: `second ${i}`, idempotencyKey: `second-${i}` });
      secondIds.push(sent.notifications[0]?.id ?? "");
    }
    await first.process.kill();
    client.close();
    const pending = await db.sql<{ n: string }>("select count(*) as n from webhook_deliveries where status = 'pending'");
    expect(Number(pending[0]?.n)).toBeGreaterThan(0);

    // Restart: the pending deliveries come from the database.
    const second = await spawnCore({ ...env, PARLEY_MIGRATE: "0" });
    try {
      await until(() => secondIds.every((id) => received.some((r) => r.notificationId === id)));
      await until(async () => {
        const rows = await db.sql<{ n: string }>("select count(*) as n from webhook_deliveries where status = 'delivered'");
        return rows[0]?.n === "10";
      });
      const perDelivery = new Map<string, number>();
      for (const r of received) perDelivery.set(r.deliveryId, (perDelivery.get(r.deliveryId) ?? 0) + 1);
      expect([...perDelivery.values()].every((count) => count === 1)).toBe(true);
      expect(perDelivery.size).toBe(10);
      expect(received.every((r) => r.verified)).toBe(true);
      // Still unread in the inbox: a webhook is a fallback, not a read.
      const unread = await db.sql<{ n: string }>("select count(*) as n from notifications where read_at is null");
      expect(unread[0]?.n).toBe("10");
      // Every attempt is on record.
      const attempts = await db.sql<{ outcome: string; status_code: number }>("select outcome, status_code from webhook_attempts");
      expect(attempts).toHaveLength(10);
      expect(attempts.every((a) => a.outcome === "delivered" && a.status_code === 204)).toBe(true);
      client = createClient(NotificationService, second.address, { headers });
      client.close();
    } finally {
      await second.process.stop();
    }
  }, 60_000);
});

describe("rotating the webhook secret", () => {
  it("signs each delivery once per configured secret, so receivers holding either the old or the new secret verify it", async () => {
    const OLD = "old-webhook-secret-0001";
    const NEW = "new-webhook-secret-0002";
    const seen: { header: string; body: string }[] = [];
    const rotating = createServer((request, response) => {
      void readBody(request).then((body) => {
        seen.push({ header: String(request.headers["parley-signature"]), body });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => rotating.listen(0, "127.0.0.1", () => { resolve(); }));
    const address = rotating.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/hooks`;
    const core = await spawnCore({
      DATABASE_URL: db.url,
      PARLEY_JWT_SECRET: TEST_JWT_SECRET,
      PARLEY_MIGRATE: "1",
      PARLEY_WEBHOOK_URL: url,
      PARLEY_WEBHOOK_SECRET: `${OLD},${NEW}`,
      PARLEY_WEBHOOK_GRACE_MS: "0",
    });
    try {
      const token = await mintToken(TEST_JWT_SECRET, "rotation", { scopes: [NOTIFICATIONS_SEND_SCOPE] });
      const client = createClient(NotificationService, core.address, { headers: () => ({ authorization: `Bearer ${token}` }) });
      await client.sendNotification({ recipients: ["rotated-user"], kind: "alert", title: "rotation", idempotencyKey: "rotation-1" });
      client.close();
      await until(() => seen.length > 0);
      const [delivery] = seen;
      if (delivery === undefined) throw new Error("no delivery arrived");
      expect(delivery.header).toMatch(/^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
      // A receiver on the old secret, one on the new, one on both: all accept.
      for (const secrets of [OLD, NEW, [OLD, NEW]]) {
        expect(verifyWebhookSignature(secrets, delivery.header, delivery.body)).toMatchObject({ ok: true });
      }
      expect(verifyWebhookSignature("some-other-secret-0003", delivery.header, delivery.body)).toEqual({ ok: false, reason: "mismatch" });
    } finally {
      await core.process.stop();
      await new Promise((resolve) => rotating.close(resolve));
    }
  });

  it("refuses to start with a short secret in the list, naming the variable and not the secret", async () => {
    const failure = await promisify(execFile)(process.execPath, ["bin/parley.js", "core"], {
      env: withoutUnset({
        ...process.env,
        DATABASE_URL: db.url,
        PARLEY_JWT_SECRET: TEST_JWT_SECRET,
        PARLEY_GRPC_ADDR: "127.0.0.1:0",
        PARLEY_WEBHOOK_URL: "http://127.0.0.1:9/hooks",
        PARLEY_WEBHOOK_SECRET: "old-webhook-secret-0001,tooshort",
      }),
      timeout: 30_000,
    }).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string; stdout: string },
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toMatch(/PARLEY_WEBHOOK_SECRET must be at least 16 characters per secret/);
    expect(`${failure?.stderr ?? ""}${failure?.stdout ?? ""}`).not.toContain("tooshort");
  });
});

describe("parley core as its own process", () => {
  it("serves /metrics on PARLEY_METRICS_ADDR", async () => {
    const { createServer: createProbe } = await import("node:net");
    const port = await new Promise<number>((resolve) => {
      const probe = createProbe().listen(0, "127.0.0.1", () => {
        const address = probe.address();
        probe.close(() => { resolve(typeof address === "object" && address !== null ? address.port : 0); });
      });
    });
    const core = await spawnCore({ DATABASE_URL: db.url, PARLEY_JWT_SECRET: TEST_JWT_SECRET, PARLEY_MIGRATE: "1", PARLEY_METRICS_ADDR: `127.0.0.1:${port}` });
    try {
      await core.process.waitFor((line) => line.msg === "metrics serving");
      const token = await mintToken(TEST_JWT_SECRET, "metered", { scopes: [NOTIFICATIONS_SEND_SCOPE] });
      const client = createClient(NotificationService, core.address, { headers: () => ({ authorization: `Bearer ${token}` }) });
      await client.sendNotification({ recipients: ["someone"], kind: "k", title: "t", idempotencyKey: "metrics-1" });
      client.close();
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(/^parley_notifications_stored_total(\{[^}]*\})? 1$/m);
    } finally {
      await core.process.stop();
    }
  });
});
