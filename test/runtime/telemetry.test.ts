import { createServer, type Server } from "node:http";
import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

// Telemetry must start before the database driver loads (the pg
// instrumentation patches it on load), so everything else is imported after.
const exporter = new InMemorySpanExporter();
const { startTelemetry } = await import("../../src/runtime/telemetry/setup.js");
const telemetry = startTelemetry({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

const { ChatService } = await import("../../gen/parley/v1/chat_pb.js");
const { ErrorCategory } = await import("../../gen/parley/v1/errors_pb.js");
const { mintToken, NOTIFICATIONS_SEND_SCOPE } = await import("../../src/runtime/auth/tokens.js");
const { startBridge } = await import("../../src/bridge/bridge-server.js");
const { startCore } = await import("../../src/core/core-server.js");
const { createClient } = await import("../../src/runtime/grpc/client.js");
const { NotificationService } = await import("../../gen/parley/v1/notifications_pb.js");
const { TEST_JWT_SECRET, TEST_RELAY_TOKEN, TEST_TOKEN_RULES } = await import("../support/core.js");
const { createTestDatabase } = await import("../support/database.js");
const { LogCapture } = await import("../support/logs.js");

type Core = Awaited<ReturnType<typeof startCore>>;
type Bridge = Awaited<ReturnType<typeof startBridge>>;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let core: Core;
let bridge: Bridge;
let receiver: Server;
const coreLogs = new LogCapture("debug");
const bridgeLogs = new LogCapture("debug");

beforeAll(async () => {
  db = await createTestDatabase();
  // A webhook receiver that always fails, for the DELIVERY path.
  receiver = createServer((_request, response) => response.writeHead(500).end());
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", () => { resolve(); }));
  const address = receiver.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  core = await startCore({
    databaseUrl: db.url,
    grpcAddress: "127.0.0.1:0",
    tokens: TEST_TOKEN_RULES,
    logger: coreLogs.logger,
    migrate: true,
    implicitRooms: true,
    webhook: {
      url: `http://127.0.0.1:${port}/hook`,
      secret: "webhook-secret-for-tests",
      graceMs: 0,
      tuning: { pollIntervalMs: 50, maxAttempts: 1, attemptTimeoutMs: 1_000, leaseMs: 5_000 },
    },
  });
  bridge = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger });
});

afterAll(async () => {
  await bridge.stop(500);
  await core.stop(500);
  await new Promise((resolve) => receiver.close(resolve));
  await db.drop();
  await telemetry.shutdown();
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const spans = () => exporter.getFinishedSpans();
const byName = (name: string, traceId?: string) => spans().filter((s) => s.name === name && (traceId === undefined || s.spanContext().traceId === traceId));
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

function connect(path: string, token: string): Promise<{ socket: WebSocket; frames: Record<string, unknown>[] }> {
  const socket = new WebSocket(`ws://${bridge.address}${path}${path.includes("?") ? "&" : "?"}token=${token}`);
  const frames: Record<string, unknown>[] = [];
  socket.on("message", (data: Buffer) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
  return new Promise((resolve, reject) => {
    socket.once("open", () => { resolve({ socket, frames }); });
    socket.once("error", reject);
  });
}

/** The failed span's category, status and exception event, and its log line with the same trace id. */
function expectCategorized(span: ReadableSpan, category: string, logs: InstanceType<typeof LogCapture>): void {
  expect(span.attributes["error.category"]).toBe(category);
  expect(span.status.code).toBe(SpanStatusCode.ERROR);
  expect(span.events.some((event) => event.name === "exception")).toBe(true);
  const traceId = span.spanContext().traceId;
  const lines = logs.lines.filter((line) => line.trace_id === traceId && line.category === category);
  expect(lines.length).toBeGreaterThan(0);
}

describe("one trace from browser frame to database row", () => {
  it("continues the browser's traceparent through bridge → core → PostgreSQL, and links the fan-out delivery", async () => {
    const token = await mintToken(TEST_JWT_SECRET, "tracer");
    const { socket, frames } = await connect("/ws/chat/traced?after_seq=0", token);
    // First a message that proves the room's live feed is up (before that, a
    // message may reach the subscriber through the replay read instead).
    socket.send(JSON.stringify({ requestId: "t-0", send: { seq: "1", body: "warm-up", clientMsgId: "traced-0" } }));
    await until("the warm-up delivery", () => frames.find((f) => (f.message as { body?: string } | undefined)?.body === "warm-up"));
    const browserTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const browserSpan = "00f067aa0ba902b7";
    socket.send(
      JSON.stringify({
        requestId: "t-1",
        traceparent: `00-${browserTrace}-${browserSpan}-01`,
        send: { seq: "2", body: "traced hello", clientMsgId: "traced-1" },
      }),
    );
    await until("the ack", () => frames.find((f) => f.requestId === "t-1"));
    const frameSpan = await until("the frame span", () => byName("ws.frame send", browserTrace)[0]);
    expect(parentOf(frameSpan)).toBe(browserSpan);
    expect(frameSpan.attributes).toMatchObject({ "parley.frame.kind": "send", "parley.room": "traced", "parley.request.id": "t-1" });
    expect(frameSpan.attributes["parley.connection.id"]).toBeTypeOf("string");

    const send = await until("core's item span", () => byName("chat.send", browserTrace)[0]);
    expect(parentOf(send)).toBe(frameSpan.spanContext().spanId);
    const batch = await until("the group commit span", () => byName("group-commit chat.send-batch", browserTrace)[0]);
    expect(parentOf(batch)).toBe(send.spanContext().spanId);
    expect(batch.attributes["parley.batch.size"]).toBe(1);
    const unit = await until("the unit of work span", () => byName("db.statement chat.send-batch", browserTrace)[0]);
    expect(parentOf(unit)).toBe(batch.spanContext().spanId);
    const queries = spans().filter((s) => s.spanContext().traceId === browserTrace && s.name.startsWith("pg.query"));
    expect(queries.length).toBeGreaterThan(0);
    const unitId = unit.spanContext().spanId;
    // The queries hang below the unit of work (pg.connect/query spans may nest).
    const ancestors = (span: ReadableSpan): string[] => {
      const chain: string[] = [];
      let current: ReadableSpan | undefined = span;
      while (current) {
        const parentId = parentOf(current);
        if (parentId === undefined) break;
        chain.push(parentId);
        current = spans().find((s) => s.spanContext().spanId === parentId);
      }
      return chain;
    };
    expect(queries.every((query) => ancestors(query).includes(unitId))).toBe(true);
    expect(queries.some((query) => String(query.attributes["db.statement"] ?? query.attributes["db.query.text"] ?? query.name).includes("parley_store_chat_batch"))).toBe(true);

    // The subscriber's delivery is its own trace, linked to the commit.
    const delivery = await until("the fan-out delivery span", () =>
      spans().find((s) => s.name === "fanout.deliver message" && s.links.some((link) => link.context.spanId === batch.spanContext().spanId)),
    );
    expect(delivery.attributes["parley.topic"]).toBe("traced");
    socket.close();
  });
});

describe("gRPC client and server spans", () => {
  it("a history frame is a frame span → gRPC client span → gRPC server span → database read, in one trace", async () => {
    const { SpanKind } = await import("@opentelemetry/api");
    const { socket, frames } = await connect("/ws/chat/traced", await mintToken(TEST_JWT_SECRET, "reader"));
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    socket.send(JSON.stringify({ requestId: "h-1", traceparent: `00-${traceId}-b7ad6b7169203331-01`, history: { pageSize: 5 } }));
    await until("the history answer", () => frames.find((f) => f.requestId === "h-1"));
    const frame = await until("the frame span", () => byName("ws.frame history", traceId)[0]);
    const client = await until("the client span", () =>
      byName("parley.v1.ChatService/ListMessages", traceId).find((s) => s.kind === SpanKind.CLIENT),
    );
    const server = await until("the server span", () =>
      byName("parley.v1.ChatService/ListMessages", traceId).find((s) => s.kind === SpanKind.SERVER),
    );
    expect(parentOf(client)).toBe(frame.spanContext().spanId);
    expect(parentOf(server)).toBe(client.spanContext().spanId);
    const read = await until("the unit of work span", () => byName("db.read chat.list", traceId)[0]);
    expect(parentOf(read)).toBe(server.spanContext().spanId);
    socket.close();
  });
});

describe("failures carry their category on the span and the log line", () => {
  it("bad frame → VALIDATION", async () => {
    const { socket, frames } = await connect("/ws/chat/bad-frames", await mintToken(TEST_JWT_SECRET, "fumbler"));
    socket.send(JSON.stringify({ requestId: "bad-1", send: { seq: "1", body: "x", clientMsgId: "c", sender: "mallory" } }));
    const answer = await until("the error frame", () => frames.find((f) => f.requestId === "bad-1"));
    expect(answer.error).toMatchObject({ category: "ERROR_CATEGORY_VALIDATION" });
    const span = await until("the frame span", () => spans().find((s) => s.name.startsWith("ws.frame") && s.attributes["parley.request.id"] === "bad-1"));
    expectCategorized(span, "VALIDATION", bridgeLogs);
    // The error frame names the same trace.
    expect((answer.error as { traceId?: string }).traceId).toBe(span.spanContext().traceId);
    socket.close();
  });

  it("unknown route → ROUTING, failed auth → UNAUTHENTICATED (at the upgrade)", async () => {
    const refused = (path: string) =>
      new Promise<number>((resolve) => {
        const socket = new WebSocket(`ws://${bridge.address}${path}`);
        socket.on("unexpected-response", (_request, response) => { resolve(response.statusCode ?? 0); });
        socket.on("error", () => undefined);
      });
    expect(await refused("/ws/nowhere?token=x")).toBe(404);
    expect(await refused("/ws/chat/room")).toBe(401);
    const routing = await until("the ROUTING upgrade span", () => byName("ws.upgrade").find((s) => s.attributes["url.path"] === "/ws/nowhere"));
    expectCategorized(routing, "ROUTING", bridgeLogs);
    const auth = await until("the UNAUTHENTICATED upgrade span", () => byName("ws.upgrade").find((s) => s.attributes["url.path"] === "/ws/chat/room"));
    expectCategorized(auth, "UNAUTHENTICATED", bridgeLogs);
  });

  it("database failure → PERSISTENCE on the server span, the batch and the log", async () => {
    await db.sql(`create or replace function refuse_poison() returns trigger language plpgsql as $$
      begin if new.body = 'poison' then raise exception 'poison refused'; end if; return new; end $$`);
    await db.sql("create trigger refuse_poison before insert on chat_messages for each row execute function refuse_poison()");
    try {
      const token = await mintToken(TEST_JWT_SECRET, "poisoner");
      const chat = createClient(ChatService, core.address, { headers: () => ({ authorization: `Bearer ${token}` }) });
      const error = await chat.sendMessage({ room: "poisoned", body: "poison", clientMsgId: "p-1" }).then(
        () => undefined,
        (e: unknown) => e as { category: number; context: Record<string, unknown> },
      );
      chat.close();
      expect(error?.category).toBe(ErrorCategory.PERSISTENCE);
      const server = await until("the server span", () => byName("parley.v1.ChatService/SendMessage").find((s) => s.attributes["error.category"] === "PERSISTENCE"));
      expectCategorized(server, "PERSISTENCE", coreLogs);
      const traceId = server.spanContext().traceId;
      expect(error?.context.remote_trace_id).toBe(traceId);
      const batch = byName("group-commit chat.send-batch", traceId)[0];
      expect(batch?.attributes["error.category"]).toBe("PERSISTENCE");
    } finally {
      await db.sql("drop trigger refuse_poison on chat_messages");
    }
  });

  it("core unavailable, then retried → UNAVAILABLE on the retry span and log line, and the send still succeeds", async () => {
    const { startCore: restartCore } = await import("../../src/core/core-server.js");
    const spare = await restartCore({ databaseUrl: db.url, grpcAddress: "127.0.0.1:0", tokens: TEST_TOKEN_RULES, logger: coreLogs.logger, implicitRooms: true });
    const port = Number(spare.address.split(":")[1]);
    const spareBridge = await startBridge({ httpAddress: "127.0.0.1:0", coreAddress: spare.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger });
    try {
      const socket = new WebSocket(`ws://${spareBridge.address}/ws/chat/outage?token=${await mintToken(TEST_JWT_SECRET, "patient")}`);
      const frames: Record<string, unknown>[] = [];
      socket.on("message", (data: Buffer) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
      await new Promise((resolve) => socket.once("open", resolve));
      socket.send(JSON.stringify({ requestId: "o-1", send: { seq: "1", body: "before", clientMsgId: "o-1" } }));
      await until("the first ack", () => frames.find((f) => f.requestId === "o-1"));
      await spare.stop(0);
      socket.send(JSON.stringify({ requestId: "o-2", send: { seq: "2", body: "during", clientMsgId: "o-2" } }));
      const retry = await until("a retry span", () => byName("bridge.send_stream.retry").find((s) => s.attributes["error.category"] === "UNAVAILABLE"));
      expectCategorized(retry, "UNAVAILABLE", bridgeLogs);
      expect(retry.events.some((event) => event.name === "retry" && event.attributes?.["error.category"] === "UNAVAILABLE")).toBe(true);
      const metricsText = await (await fetch(`http://${spareBridge.address}/metrics`)).text();
      expect(metricsText).toMatch(/^parley_retries_total\{component="bridge",category="UNAVAILABLE"/m);
      const revived = await restartCore({ databaseUrl: db.url, grpcAddress: `127.0.0.1:${port}`, tokens: TEST_TOKEN_RULES, logger: coreLogs.logger, implicitRooms: true });
      try {
        const ack = await until("the retried ack", () => frames.find((f) => f.requestId === "o-2"), 20_000);
        expect(ack.sendAck).toBeDefined();
      } finally {
        socket.close();
        await spareBridge.stop(200);
        await revived.stop(200);
      }
    } finally {
      await spareBridge.stop(200).catch(() => undefined);
    }
  });

  it("serialization failure → SERIALIZATION, with a fallback error frame", async () => {
    const { socket, frames } = await connect("/ws/chat/unencodable", await mintToken(TEST_JWT_SECRET, "encoder"));
    await until("the caught-up frame", () => frames.find((f) => f.caughtUp !== undefined));
    const { EncodedEvent } = await import("../../src/bridge/encoded-event.js");
    const { create } = await import("@bufbuild/protobuf");
    const { ChatMessageSchema } = await import("../../gen/parley/v1/chat_pb.js");
    // A timestamp no encoder accepts (nanos out of range) reaches the connection.
    const broken = create(ChatMessageSchema, { room: "unencodable", seq: 1n, body: "x", createdAt: { seconds: 0n, nanos: -5 } });
    bridge.roomFeeds.hub.publish("unencodable", [EncodedEvent.message(broken)]);
    const fallback = await until("the fallback error frame", () => frames.find((f) => (f.error as { category?: string } | undefined)?.category === "ERROR_CATEGORY_SERIALIZATION"));
    expect(fallback).toBeDefined();
    const span = await until("the encode span", () => byName("ws.frame encode").find((s) => s.attributes["error.category"] === "SERIALIZATION"));
    expectCategorized(span, "SERIALIZATION", bridgeLogs);
    socket.close();
  });

  it("webhook failure → DELIVERY on the attempt span and the log line", async () => {
    const service = await mintToken(TEST_JWT_SECRET, "alerter", { scopes: [NOTIFICATIONS_SEND_SCOPE] });
    const notifications = createClient(NotificationService, core.address, { headers: () => ({ authorization: `Bearer ${service}` }) });
    await notifications.sendNotification({ recipients: ["nobody-listening"], kind: "alert", title: "t", idempotencyKey: "hook-1" });
    notifications.close();
    const attempt = await until("the webhook attempt span", () => byName("webhook.attempt").find((s) => s.attributes["error.category"] === "DELIVERY"));
    expectCategorized(attempt, "DELIVERY", coreLogs);
    expect(attempt.attributes["http.response.status_code"]).toBe(500);
  });
});

describe("metrics", () => {
  it("serves the counters at /metrics in Prometheus text format with plausible values", async () => {
    const token = await mintToken(TEST_JWT_SECRET, "counter");
    const { socket, frames } = await connect("/ws/chat/metered?after_seq=0", token);
    for (let i = 1; i <= 5; i++) socket.send(JSON.stringify({ requestId: `m-${i}`, send: { seq: String(i), body: `m${i}`, clientMsgId: `metered-${i}` } }));
    socket.send("not json");
    await until("five acks", () => frames.filter((f) => f.sendAck !== undefined).length === 5 || undefined);
    await until("five deliveries", () => frames.filter((f) => f.message !== undefined).length === 5 || undefined);
    const text = await (await fetch(`http://${bridge.address}/metrics`)).text();
    const value = (pattern: RegExp) => {
      const match = pattern.exec(text);
      return match?.[1] === undefined ? undefined : Number(match[1]);
    };
    expect(value(/^parley_connections_open(?:\{[^}]*\})? (\d+)/m)).toBeGreaterThanOrEqual(1);
    expect(value(/^parley_frames_in_total\{[^}]*kind="send"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^parley_frames_out_total\{[^}]*kind="sendAck"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^parley_messages_stored_total(?:\{[^}]*\})? (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^parley_fanout_deliveries_total\{[^}]*kind="message"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^parley_send_latency_seconds_count(?:\{[^}]*\})? (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^parley_errors_total\{[^}]*category="VALIDATION"[^}]*component="bridge"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    // The process's own pauses, from the Node runtime instrumentation: the
    // event-loop delay since the previous scrape (in seconds) and how busy the loop is.
    expect(value(/^nodejs_eventloop_delay_max(?:\{[^}]*\})? ([\d.e-]+)/m)).toBeGreaterThan(0);
    const utilization = value(/^nodejs_eventloop_utilization(?:\{[^}]*\})? ([\d.e-]+)/m);
    expect(utilization).toBeGreaterThan(0);
    expect(utilization).toBeLessThanOrEqual(1);
    socket.close();
  });

  it("the Grafana dashboard queries only metrics parley defines", async () => {
    const { readFileSync } = await import("node:fs");
    const dashboard = readFileSync(new URL("../../deploy/grafana/parley-dashboard.json", import.meta.url), "utf8");
    const source = readFileSync(new URL("../../src/runtime/telemetry/metrics.ts", import.meta.url), "utf8");
    // Instrument name → the series Prometheus shows for it.
    const defined = new Set<string>();
    for (const [, created = "", hotPath = "", name = ""] of source.matchAll(/(?:create(Counter|UpDownCounter|Histogram)\(|(kindCounter)\(meter, )"([a-z.]+)"/g)) {
      const base = name.replaceAll(".", "_");
      const kind = hotPath === "" ? created : "Counter";
      if (kind === "Counter") defined.add(`${base}_total`);
      else if (kind === "Histogram") for (const suffix of ["_bucket", "_count", "_sum"]) defined.add(base + suffix);
      else defined.add(base);
    }
    const queried = new Set(dashboard.match(/parley_[a-z_]+/g) ?? []);
    expect(queried.size).toBeGreaterThan(5);
    for (const name of queried) expect(defined, `dashboard queries ${name}`).toContain(name);
  });

  it("the Grafana dashboard's runtime series are ones the Node runtime instrumentation serves", async () => {
    const { readFileSync } = await import("node:fs");
    const dashboard = readFileSync(new URL("../../deploy/grafana/parley-dashboard.json", import.meta.url), "utf8");
    // (GC series appear once a collection has been observed: long since, in this file.)
    const text = await (await fetch(`http://${bridge.address}/metrics`)).text();
    const served = new Set([...text.matchAll(/^([a-z0-9_]+)[{ ]/gm)].map((match) => match[1]));
    // Series names are followed by their selector's "{" (labels such as v8js_gc_type are not).
    const queried = new Set([...dashboard.matchAll(/\b((?:nodejs|v8js)_[a-z_]+)\{/g)].map((match) => match[1]));
    expect(queried.size).toBeGreaterThanOrEqual(2);
    for (const name of queried) expect(served, `dashboard queries ${name}`).toContain(name);
  });
});
