import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage } from "../../gen/parley/v1/chat_pb.js";
import { type ErrorDetail, ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { CloseCode, type GoAway, type SendAck, type ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import type { Notification } from "../../gen/parley/v1/notifications_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type BridgeOptions, ROUTES, type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import type { ConnectionLimits } from "../../src/bridge/limits.js";
import { type RouteDefinition, RouteTable, RouteTableError } from "../../src/bridge/routes.js";
import { clientFacing } from "../../src/bridge/client-facing.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, range, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ClientFrameInit, type ConnectOptions, eventually, messagesOf, messagesUpTo, type Received, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
let core: TestCore;
let main: RunningBridge;
const bridgeLogs = new LogCapture("info");
const running = new Set<RunningBridge>();
const clients: WsTestClient[] = [];

const MAIN_LIMITS: Partial<ConnectionLimits> = { maxConsecutiveErrors: 6, maxInflightSends: 64 };

async function bridge(limits: Partial<ConnectionLimits> = {}, extra: Partial<BridgeOptions> = {}): Promise<RunningBridge> {
  const started = await startBridge({
    httpAddress: "127.0.0.1:0",
    coreAddress: core.core.address,
    relayToken: TEST_RELAY_TOKEN,
    logger: bridgeLogs.logger,
    limits,
    sendAnswerTimeoutMs: 5_000,
    ...extra,
  });
  running.add(started);
  return started;
}

async function stopBridge(target: RunningBridge, graceMs?: number): Promise<void> {
  running.delete(target);
  await target.stop(graceMs);
}

function base(target: RunningBridge): string {
  return `http://${target.address}`;
}

/** Connects as `user` (token in the query unless the options say otherwise) and waits for `welcome`. */
async function connect(path: string, user: string, options: ConnectOptions & { on?: RunningBridge } = {}): Promise<WsTestClient> {
  const token = options.bearer === undefined && options.token === undefined ? await mintToken(TEST_JWT_SECRET, user) : options.token;
  const client = await WsTestClient.connect(base(options.on ?? main), path, { ...options, token });
  clients.push(client);
  await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
  return client;
}

/**
 * A client on a bridge whose core is gone: the bridge asks core who a token
 * is, so the client connects while a core of its own serves, which then stops.
 */
async function strandedClient(path: string, user: string, limits: Partial<ConnectionLimits>): Promise<{ stranded: RunningBridge; client: WsTestClient }> {
  const doomed = await startTestCore(db);
  const stranded = await bridge(limits, { coreAddress: doomed.core.address });
  const client = await connect(path, user, { on: stranded });
  await doomed.stop(0);
  return { stranded, client };
}

/** Connects to a chat room and waits for the automatic subscription's caught_up. */
async function joinRoom(room: string, user: string, options: ConnectOptions & { on?: RunningBridge } = {}): Promise<WsTestClient> {
  const client = await connect(`/ws/chat/${room}`, user, options);
  await client.waitFor((frame) => frame.requestId === "" && frame.kind.case === "caughtUp", { what: "caught_up" });
  return client;
}

function errorOf(frame: ServerFrame): ErrorDetail {
  if (frame.kind.case !== "error") throw new Error(`expected an error frame, got ${frame.kind.case ?? "none"}`);
  return frame.kind.value;
}

function ackOf(frame: ServerFrame): SendAck {
  if (frame.kind.case !== "sendAck") {
    const detail = frame.kind.case === "error" ? `: ${frame.kind.value.message}` : "";
    throw new Error(`expected send_ack, got ${frame.kind.case ?? "none"}${detail}`);
  }
  return frame.kind.value;
}

function ackedMessage(frame: ServerFrame): ChatMessage {
  const message = ackOf(frame).message;
  if (message === undefined) throw new Error("send_ack without a message");
  return message;
}

function goAwayOf(received: readonly Received[]): GoAway | undefined {
  for (const { frame } of received) if (frame.kind.case === "goAway") return frame.kind.value;
  return undefined;
}

/** Notification frames, in arrival order. */
function notificationsOf(client: WsTestClient): Notification[] {
  const found: Notification[] = [];
  for (const { frame } of client.received) if (frame.kind.case === "notification") found.push(frame.kind.value);
  return found;
}

interface SendSpec {
  readonly body: string;
  readonly clientMsgId: string;
  readonly room?: string;
}

/**
 * Sends `specs` over `client` with at most `window` un-answered at a time;
 * send.seq increases with each frame written. Resolves with the answers by index.
 */
async function sendWindowed(client: WsTestClient, specs: readonly SendSpec[], window: number, firstSeq = 1, prefix = "s"): Promise<ServerFrame[]> {
  const answers: ServerFrame[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < specs.length) {
      const index = next++;
      const spec = specs[index];
      if (spec === undefined) return;
      answers[index] = await client.request(
        { requestId: `${prefix}-${index}`, request: { case: "send", value: { seq: BigInt(firstSeq + index), ...spec } } },
        { timeoutMs: 20_000 },
      );
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return answers;
}

function specs(count: number, prefix: string, body = (i: number) => `${prefix} message ${i}`): SendSpec[] {
  return Array.from({ length: count }, (_, i) => ({ body: body(i), clientMsgId: `${prefix}-${i}` }));
}

async function storedCount(sql: string, params: unknown[]): Promise<number> {
  const rows = await db.sql<{ n: string }>(sql, params);
  return Number(rows[0]?.n ?? "NaN");
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
  main = await bridge(MAIN_LIMITS);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const leftover of [...running]) await stopBridge(leftover, 500);
  await core.stop();
  await db.drop();
});

describe("routes are data", () => {
  const room = /^[a-z]+$/;
  it.each<[string, RouteDefinition]>([
    ["an unclosed parameter", { pattern: "/ws/chat/{room", kind: "chat", params: { room } }],
    ["no leading slash", { pattern: "ws/no-slash", kind: "chat" }],
    ["a parameter twice", { pattern: "/ws/{a}/{a}", kind: "chat", params: { a: room } }],
    ["a parameter without a validator", { pattern: "/ws/chat/{room}", kind: "chat" }],
    ["a validator for a missing parameter", { pattern: "/ws/chat", kind: "chat", params: { room } }],
    ["a trailing slash", { pattern: "/ws/chat/", kind: "chat" }],
    ["a segment with a space", { pattern: "/ws/my room", kind: "chat" }],
  ])("rejects %s, naming the pattern", (_label, definition) => {
    let thrown: unknown;
    try {
      new RouteTable([definition]);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RouteTableError);
    expect((thrown as RouteTableError).pattern).toBe(definition.pattern);
    expect((thrown as RouteTableError).message).toContain(`"${definition.pattern}"`);
  });

  it("rejects two routes that match the same paths, naming both", () => {
    const definitions: RouteDefinition[] = [
      { pattern: "/ws/chat/{room}", kind: "chat", params: { room } },
      { pattern: "/ws/chat/{other}", kind: "chat", params: { other: room } },
    ];
    expect(() => new RouteTable(definitions)).toThrow(RouteTableError);
    expect(() => new RouteTable(definitions)).toThrow(/"\/ws\/chat\/\{other\}".*"\/ws\/chat\/\{room\}"/);
  });

  it("parley's own table compiles", () => {
    expect(() => new RouteTable(ROUTES)).not.toThrow();
  });

  it("startBridge with a broken route rejects (start-up stops) and serves nothing", async () => {
    const broken: RouteDefinition = { pattern: "/ws/chat/{room", kind: "chat", params: { room } };
    const start = startBridge({ httpAddress: "127.0.0.1:0", coreAddress: core.core.address, relayToken: TEST_RELAY_TOKEN, logger: bridgeLogs.logger, routes: [broken] });
    await expect(start).rejects.toThrow(RouteTableError);
    await expect(start).rejects.toThrow(/\/ws\/chat\/\{room/);
  });
});

describe("upgrade refusals (before any WebSocket opens)", () => {
  it.each([
    ["an unknown path", "/ws/unknown", 404, "ROUTING"],
    ["a path below a known one", "/ws/chat/lobby/extra", 404, "ROUTING"],
    ["the bare root", "/", 404, "ROUTING"],
    ["a room with a space", "/ws/chat/bad%20room", 400, "VALIDATION"],
    ["a 200-character room", `/ws/chat/${"r".repeat(200)}`, 400, "VALIDATION"],
    ["broken percent-encoding", "/ws/chat/%E0%A4%A", 400, "VALIDATION"],
  ])("%s (%s) → %i %s", async (_label, path, status, category) => {
    const refusal = await WsTestClient.refusal(base(main), path, { token: await mintToken(TEST_JWT_SECRET, "refused") });
    expect(refusal.status).toBe(status);
    expect(refusal.body.category).toBe(category);
    expect(refusal.body.message).toEqual(expect.any(String));
  });

  it("a bad after_seq → 400 naming the parameter", async () => {
    const refusal = await WsTestClient.refusal(base(main), "/ws/chat/lobby", { token: await mintToken(TEST_JWT_SECRET, "u"), query: { after_seq: "-1" } });
    expect(refusal.status).toBe(400);
    expect(refusal.body).toMatchObject({ category: "VALIDATION", field: "after_seq" });
  });

  // Regression: values above 2^63-1 once passed the check and failed later, inside.
  it("an after_seq beyond int64 → 400 naming the parameter", async () => {
    const refusal = await WsTestClient.refusal(base(main), "/ws/chat/lobby", { token: await mintToken(TEST_JWT_SECRET, "u"), query: { after_seq: "9999999999999999999" } });
    expect(refusal.status).toBe(400);
    expect(refusal.body).toMatchObject({ category: "VALIDATION", field: "after_seq" });
  });

  it.each([
    ["a missing token", async (): Promise<ConnectOptions> => Promise.resolve({})],
    ["a forged token", async (): Promise<ConnectOptions> => ({ token: await mintToken("some-other-secret-that-is-long-enough", "mallory") })],
    ["an expired token", async (): Promise<ConnectOptions> => ({ token: await mintToken(TEST_JWT_SECRET, "late", { expiresInSeconds: -60 }) })],
    ["a malformed token", async (): Promise<ConnectOptions> => Promise.resolve({ token: "not.a.jwt" })],
    ["a forged bearer subprotocol", async (): Promise<ConnectOptions> => ({ protocols: ["parley.v1"], bearer: await mintToken("some-other-secret-that-is-long-enough", "mallory") })],
  ])("%s → 401 UNAUTHENTICATED", async (_label, options) => {
    for (const path of ["/ws/chat/lobby", "/ws/notifications"]) {
      const refusal = await WsTestClient.refusal(base(main), path, await options());
      expect(refusal.status).toBe(401);
      expect(refusal.body.category).toBe("UNAUTHENTICATED");
      expect(refusal.body.message).toMatch(/unauthenticated/);
    }
  });

  it("a token with characters no header may carry (a pasted newline, a tab, non-ASCII) → 401 UNAUTHENTICATED, never echoed, neither at the upgrade nor in refresh_token", async () => {
    const jwt = await mintToken(TEST_JWT_SECRET, "paster");
    const from = bridgeLogs.lines.length;
    for (const token of [`${jwt}\n`, `${jwt}\tx`, `${jwt}é`]) {
      const refusal = await WsTestClient.refusal(base(main), "/ws/notifications", { token });
      expect(refusal.status).toBe(401);
      expect(refusal.body).toMatchObject({ category: "UNAUTHENTICATED", message: "unauthenticated: token is malformed" });
    }
    const client = await connect("/ws", "paster", { token: jwt });
    const refusal = errorOf(await client.request({ requestId: "refresh-pasted", request: { case: "refreshToken", value: { token: `${jwt}\r\n` } } }));
    expect(refusal).toMatchObject({ category: ErrorCategory.UNAUTHENTICATED, message: "unauthenticated: token is malformed" });
    expect(client.isOpen).toBe(true);
    const logged = bridgeLogs.lines.slice(from);
    expect(JSON.stringify(logged)).not.toContain(jwt.split(".")[2]);
    expect(logged.filter((line) => line.level === "error")).toEqual([]);
  });

  it("accepts the token in ?token= and in Sec-WebSocket-Protocol (selecting parley.v1)", async () => {
    const viaQuery = await connect("/ws/chat/lobby", "query-user");
    expect(viaQuery.received[0]?.frame.kind.case).toBe("welcome");

    const jwt = await mintToken(TEST_JWT_SECRET, "header-user");
    const viaHeader = await connect("/ws/chat/lobby", "header-user", { protocols: ["parley.v1"], bearer: jwt });
    expect(viaHeader.socket.protocol).toBe("parley.v1");
    const welcome = viaHeader.received[0]?.frame.kind;
    expect(welcome?.case === "welcome" && welcome.value.user).toBe("header-user");

  });

  it("never echoes the token: a bearer entry offered without parley.v1 is refused with 400, before any token check", async () => {
    const jwt = await mintToken(TEST_JWT_SECRET, "bearer-only");
    const refusal = await WsTestClient.refusal(base(main), "/ws/notifications", { bearer: jwt });
    expect(refusal.status).toBe(400);
    expect(refusal.body).toMatchObject({ category: "VALIDATION", field: "Sec-WebSocket-Protocol" });
    expect(JSON.stringify(refusal)).not.toContain(jwt);
    // With parley.v1 offered, parley.v1 is the answer, never the bearer entry.
    const accepted = await connect("/ws/notifications", "bearer-only", { protocols: ["parley.v1"], bearer: jwt });
    expect(accepted.socket.protocol).toBe("parley.v1");
  });
});

describe("browser origins at the upgrade", () => {
  it("refuses a foreign page with 403 PERMISSION_DENIED even with a valid token, before any connection or subscription exists", async () => {
    const fresh = await bridge();
    const token = await mintToken(TEST_JWT_SECRET, "hijacked");
    for (const [path, origin] of [
      ["/ws/chat/origin-room", "https://evil.example"],
      ["/ws/notifications", `http://evil.example:${fresh.port}`],
      ["/ws", "null"],
    ] as const) {
      const refusal = await WsTestClient.refusal(base(fresh), path, { token, origin });
      expect(refusal.status).toBe(403);
      expect(refusal.body).toMatchObject({ category: "PERMISSION_DENIED", message: expect.stringMatching(/may not open a WebSocket here \(PARLEY_ALLOWED_ORIGINS\)/) as unknown });
    }
    expect(fresh.connections.size).toBe(0);
    expect(fresh.roomFeeds.roomCount).toBe(0);
    expect(bridgeLogs.find({ category: "PERMISSION_DENIED", path: "/ws/chat/origin-room" })).not.toHaveLength(0);
    await stopBridge(fresh);
  });

  it("by default accepts a page of the bridge's own host and port, and a program that sends no Origin", async () => {
    const own = await connect("/ws/chat/origin-room", "own-page", { origin: `http://${main.address}` });
    expect(own.received[0]?.frame.kind.case).toBe("welcome");
    // Behind a TLS-terminating proxy the page is https while the bridge sees http.
    const proxied = await connect("/ws/notifications", "proxied-page", { origin: `https://${main.address}` });
    expect(proxied.received[0]?.frame.kind.case).toBe("welcome");
    const program = await connect("/ws/notifications", "a-service");
    expect(program.received[0]?.frame.kind.case).toBe("welcome");
    // Another port of the same host is another origin.
    const refusal = await WsTestClient.refusal(base(main), "/ws", { token: await mintToken(TEST_JWT_SECRET, "other-port"), origin: `http://127.0.0.1:${main.port + 1}` });
    expect(refusal.status).toBe(403);
  });

  it("with an allow-list accepts exactly the listed origins (the bridge's own included only when listed); `*` accepts any", async () => {
    const listed = await bridge({}, { origins: { allowed: ["https://app.example.com", "http://localhost:3000"] } });
    const token = await mintToken(TEST_JWT_SECRET, "listed-user");
    for (const origin of ["https://app.example.com", "https://APP.example.com", "http://localhost:3000"]) {
      const client = await connect("/ws", "listed-user", { on: listed, origin });
      expect(client.received[0]?.frame.kind.case, origin).toBe("welcome");
    }
    for (const origin of ["https://app.example.com.evil.example", "http://app.example.com", "https://app.example.com:8443", `http://${listed.address}`, "null"]) {
      expect((await WsTestClient.refusal(base(listed), "/ws", { token, origin })).status, origin).toBe(403);
    }
    await stopBridge(listed);

    const open = await bridge({}, { origins: { allowed: "*" } });
    for (const origin of ["https://anywhere.example", "null"]) {
      const client = await connect("/ws", "anyone", { on: open, origin });
      expect(client.received[0]?.frame.kind.case, origin).toBe("welcome");
    }
    await stopBridge(open);
  });

  it("the development mode's own page counts only under a loopback Host: a DNS-rebound name is refused", async () => {
    const dev = await bridge({}, { origins: { sameOrigin: "loopback" } });
    const ownPage = `http://localhost:${dev.port}`;
    const client = await connect("/ws", "demo-user", { on: dev, origin: ownPage, host: `localhost:${dev.port}` });
    expect(client.received[0]?.frame.kind.case).toBe("welcome");
    const token = await mintToken(TEST_JWT_SECRET, "demo-user");
    const rebound = await WsTestClient.refusal(base(dev), "/ws/chat/dev-room", { token, origin: `http://rebound.example:${dev.port}`, host: `rebound.example:${dev.port}` });
    expect(rebound).toMatchObject({ status: 403, body: { category: "PERMISSION_DENIED" } });
    expect(dev.roomFeeds.roomCount).toBe(0);
    await stopBridge(dev);
  });
});

describe("connection start and identity", () => {
  it("welcome comes first, with the limits; the sender of stored messages is the token's sub", async () => {
    const client = await connect("/ws/chat/identity", "alice");
    const first = client.received[0];
    expect(first?.frame.requestId).toBe("");
    const welcome = first?.frame.kind;
    if (welcome?.case !== "welcome") throw new Error("welcome was not first");
    expect(welcome.value).toMatchObject({ user: "alice", room: "identity", maxFrameBytes: 65_536, maxInflightSends: 64 });
    expect(welcome.value.connectionId).not.toBe("");
    expect(welcome.value.heartbeatInterval?.seconds).toBe(15n);
    // JSON on the wire: durations as "15s".
    expect(JSON.parse(first?.text ?? "{}")).toMatchObject({ welcome: { heartbeatInterval: "15s" } });

    const ack = ackedMessage(await client.request({ requestId: "id-1", request: { case: "send", value: { seq: 1n, body: "who am I", clientMsgId: "identity-1" } } }));
    expect(ack.sender).toBe("alice");
    const rows = await db.sql<{ sender: string }>("select sender from chat_messages where client_msg_id = 'identity-1'");
    expect(rows).toEqual([{ sender: "alice" }]);

    // A frame cannot name a sender: the field does not exist.
    const forged = `{"requestId":"id-2","send":{"seq":"2","body":"hi","clientMsgId":"identity-2","sender":"mallory"}}`;
    const from = client.received.length;
    client.sendRaw(forged);
    const error = errorOf((await client.waitFor((f) => f.requestId === "id-2", { from })).frame);
    expect(error).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.sender" });
    expect(error.message).toContain("send.sender");
    expect(await storedCount("select count(*) as n from chat_messages where client_msg_id = 'identity-2'", [])).toBe(0);
  });

  // Regression: Node fires timers longer than 2^31-1 ms at once; the expiry
  // timer once closed connections of long-lived tokens immediately.
  it("a token valid for 30 days keeps the connection open (expiry timer must not overflow)", async () => {
    const token = await mintToken(TEST_JWT_SECRET, "long-lived", { expiresInSeconds: 30 * 24 * 3600 });
    const client = await connect("/ws/chat/long-lived", "long-lived", { token });
    expect((await client.request({ requestId: "long-ping", request: { case: "ping", value: {} } })).kind.case).toBe("pong");
    expect(client.isOpen).toBe(true);
  });

  it("?format=binary makes pushed frames binary until the client speaks", async () => {
    const client = await connect("/ws/notifications", "binary-fan", { query: { format: "binary" } });
    expect(client.received[0]?.binary).toBe(true);
    expect(client.received[0]?.frame.kind.case).toBe("welcome");
    const pong = await client.request({ requestId: "p-json", request: { case: "ping", value: {} } });
    expect(pong.kind.case).toBe("pong");
    expect(client.received.find((r) => r.frame.requestId === "p-json")?.binary).toBe(false);
  });
});

describe("what a browser learns about the inside", () => {
  it("transport failures lose their addresses on the way to a browser; field paths and the rest stay", () => {
    const failure = new ParleyError(ErrorCategory.UNAVAILABLE, "14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 10.0.0.5:50051 (dns:core.internal:50051, [fd00::5]:50051)", { retryAfterMs: 100 });
    const seen = clientFacing(failure);
    expect(seen.message).toBe("14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED <internal address> (<internal address>, <internal address>)");
    expect(seen).toMatchObject({ category: ErrorCategory.UNAVAILABLE, retryable: true, retryAfterMs: 100 });
    const validation = new ParleyError(ErrorCategory.VALIDATION, "ids[0]: is not a notification id", { field: "ids[0]" });
    expect(clientFacing(validation)).toBe(validation);
  });

  it("with core unreachable, the upgrade refusal and /readyz say so without core's address", async () => {
    const stranded = await bridge({}, { coreAddress: "127.0.0.1:1" });
    const refused = await WsTestClient.refusal(base(stranded), "/ws", { token: await mintToken(TEST_JWT_SECRET, "outsider") });
    expect(refused.status).toBe(503);
    expect(refused.body.category).toBe("UNAVAILABLE");
    expect(JSON.stringify(refused.body)).not.toMatch(/127\.0\.0\.1|:1\b/);
    const ready = await fetch(`${base(stranded)}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).not.toMatch(/127\.0\.0\.1/);
    // The operator's log line keeps the address.
    expect(bridgeLogs.lines.some((line) => line.msg !== undefined && /127\.0\.0\.1:1/.test(JSON.stringify(line)))).toBe(true);
    await stopBridge(stranded, 100);
  });
});

describe("token refresh on an open connection", () => {
  it("welcome names the token's expiry; refresh_token moves the 4501 close to the new token's, and the old one no longer carries anything", async () => {
    const user = "refresher";
    const client = await connect("/ws/chat/refreshing", user, { token: await mintToken(TEST_JWT_SECRET, user, { expiresInSeconds: 2 }) });
    const welcome = client.received[0]?.frame.kind;
    expect(welcome?.case === "welcome" ? Number(welcome.value.tokenExpiresAt?.seconds) - Date.now() / 1000 : 0).toBeGreaterThan(0);
    const answer = await client.request({ requestId: "refresh-1", request: { case: "refreshToken", value: { token: await mintToken(TEST_JWT_SECRET, user, { expiresInSeconds: 120 }) } } });
    expect(answer.kind.case === "tokenRefreshed" ? Number(answer.kind.value.expiresAt?.seconds) - Date.now() / 1000 : 0).toBeGreaterThan(100);
    // Past the first token's expiry and core's clock tolerance.
    await new Promise((resolve) => setTimeout(resolve, 7_500));
    expect(client.isOpen).toBe(true);
    client.sendJson({ requestId: "after-refresh", request: { case: "send", value: { seq: 1n, body: "still here", clientMsgId: "after-refresh" } } });
    const ack = await client.waitFor((frame) => frame.requestId === "after-refresh", { what: "the ack" });
    expect(ackOf(ack.frame).message?.sender).toBe(user);
  });

  it("refuses another user's token, a forged one and an empty one, each with its category; the connection and its token stay", async () => {
    const user = "steady-refresher";
    const client = await connect("/ws", user);
    const cases: [string, string, ErrorCategory, RegExp][] = [
      ["other", await mintToken(TEST_JWT_SECRET, "mallory"), ErrorCategory.PERMISSION_DENIED, /the new token is mallory's, this connection is steady-refresher's; reconnect to change user/],
      ["forged", await mintToken("some-other-key-that-is-long-enough-xxxxx", user), ErrorCategory.UNAUTHENTICATED, /signature does not verify/],
      ["empty", "", ErrorCategory.VALIDATION, /refresh_token\.token/],
    ];
    for (const [label, token, category, message] of cases) {
      const refusal = errorOf(await client.request({ requestId: `refresh-${label}`, request: { case: "refreshToken", value: { token } } }));
      expect(refusal.category, label).toBe(category);
      expect(refusal.message, label).toMatch(message);
    }
    expect(client.isOpen).toBe(true);
    const whoami = await client.request({ requestId: "still-me", request: { case: "listMyRooms", value: {} } });
    expect(whoami.kind.case).toBe("listMyRooms");
  });

  it("without a refresh, the connection closes with 4501 at the token's expiry", async () => {
    const client = await connect("/ws", "expiring", { token: await mintToken(TEST_JWT_SECRET, "expiring", { expiresInSeconds: 1 }) });
    const closed = await client.waitClosed(5_000);
    expect(closed.code).toBe(CloseCode.UNAUTHENTICATED);
    expect(closed.reason).toMatch(/token expired; refresh it before it expires/);
  });
});

describe("frame handling: bad input gets an error frame, the socket stays open", () => {
  // [label, raw text, expected request id, expected field]
  const textCases: [string, string, string, string][] = [
    ["malformed JSON", "{not json", "", ""],
    ["a JSON array", "[1,2,3]", "", ""],
    ["an unknown top-level field", `{"requestId":"v-1","ping":{},"sneaky":1}`, "v-1", "sneaky"],
    ["an unknown nested field", `{"requestId":"v-2","history":{"room":"x","colour":"red"}}`, "v-2", "history.colour"],
    ["a wrong type (seq)", `{"requestId":"v-3","send":{"seq":"abc","body":"x","clientMsgId":"c-3"}}`, "v-3", "send.seq"],
    ["a wrong type (page_size)", `{"requestId":"v-4","history":{"pageSize":"many"}}`, "v-4", "history.page_size"],
    ["an unknown enum value", `{"requestId":"v-5","history":{"direction":"SIDEWAYS"}}`, "v-5", "history.direction"],
    ["a missing request id", `{"ping":{}}`, "", "request_id"],
    ["a request id with a space", `{"requestId":"has space","ping":{}}`, "", "request_id"],
    ["a missing request kind", `{"requestId":"v-8"}`, "v-8", "request"],
    ["an invalid room", `{"requestId":"v-9","history":{"room":"bad room"}}`, "v-9", "history.room"],
    ["an invalid subscribe room", `{"requestId":"v-10","subscribe":{"room":""}}`, "v-10", "subscribe.room"],
  ];

  it("answers each malformed text frame with a VALIDATION error naming the field; a ping still gets its pong", async () => {
    const client = await connect("/ws/chat/frames", "framer");
    for (const [label, raw, requestId, field] of textCases) {
      const from = client.received.length;
      client.sendRaw(raw);
      const answer = await client.waitFor((frame) => frame.kind.case === "error", { from, what: `error for ${label}` });
      const error = errorOf(answer.frame);
      expect(answer.frame.requestId, label).toBe(requestId);
      expect(answer.binary, label).toBe(false);
      expect(error.category, label).toBe(ErrorCategory.VALIDATION);
      expect(error.field, label).toBe(field);
      if (field !== "") expect(error.message, label).toContain(field);
      expect(error.retryable, label).toBe(false);
      const pong = await client.request({ requestId: `after-${from}`, request: { case: "ping", value: {} } });
      expect(pong.kind.case, label).toBe("pong");
    }
    expect(client.isOpen).toBe(true);
  });

  it("an invalid value is answered by core's VALIDATION (send.body), and a non-increasing send.seq is refused", async () => {
    const client = await connect("/ws/chat/frames-values", "valuer");
    const empty = errorOf(await client.request({ requestId: "e-1", request: { case: "send", value: { seq: 1n, body: "", clientMsgId: "empty-body" } } }));
    expect(empty).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.body", retryable: false });

    const tooLong = errorOf(await client.request({ requestId: "e-2", request: { case: "send", value: { seq: 2n, body: "x".repeat(4097), clientMsgId: "long-body" } } }));
    expect(tooLong).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.body" });

    const badKey = errorOf(await client.request({ requestId: "e-3", request: { case: "send", value: { seq: 3n, body: "x", clientMsgId: "bad key!" } } }));
    expect(badKey).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.client_msg_id" });

    ackOf(await client.request({ requestId: "e-4", request: { case: "send", value: { seq: 10n, body: "fine", clientMsgId: "seq-10" } } }));
    for (const seq of [10n, 9n]) {
      const error = errorOf(await client.request({ requestId: `e-seq-${seq}`, request: { case: "send", value: { seq, body: "again", clientMsgId: `seq-again-${seq}` } } }));
      expect(error).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.seq" });
      expect(error.message).toContain("send.seq");
    }
    ackOf(await client.request({ requestId: "e-5", request: { case: "send", value: { seq: 11n, body: "fine again", clientMsgId: "seq-11" } } }));
    expect(await storedCount("select count(*) as n from chat_messages where room_id = 'frames-values'", [])).toBe(2);
    expect((await client.request({ requestId: "e-ping", request: { case: "ping", value: {} } })).kind.case).toBe("pong");
  });

  it("answers bad binary frames with binary VALIDATION errors (unknown fields by number)", async () => {
    const client = await connect("/ws/chat/frames-binary", "binary-framer");
    const unknownTop = new BinaryWriter().tag(1, WireType.LengthDelimited).string("b-1").tag(18, WireType.LengthDelimited).bytes(new Uint8Array()).tag(99, WireType.Varint).int32(1).finish();
    const unknownNested = new BinaryWriter()
      .tag(1, WireType.LengthDelimited)
      .string("b-2")
      .tag(10, WireType.LengthDelimited)
      .fork()
      .tag(1, WireType.Varint)
      .int64(1n)
      .tag(3, WireType.LengthDelimited)
      .string("x")
      .tag(4, WireType.LengthDelimited)
      .string("nested-unknown")
      .tag(7, WireType.Varint)
      .int32(5)
      .join()
      .finish();
    const cases: [string, Uint8Array, string, string][] = [
      ["garbage bytes", new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]), "", ""],
      ["a truncated frame", new BinaryWriter().tag(1, WireType.LengthDelimited).string("b-0").finish().slice(0, 4), "", ""],
      ["an unknown top-level field", unknownTop, "b-1", "#99"],
      ["an unknown nested field", unknownNested, "b-2", "send.#7"],
    ];
    for (const [label, bytes, requestId, field] of cases) {
      const from = client.received.length;
      client.sendRaw(bytes);
      const answer = await client.waitFor((frame) => frame.kind.case === "error", { from, what: `error for ${label}` });
      expect(answer.binary, label).toBe(true);
      expect(answer.frame.requestId, label).toBe(requestId);
      const error = errorOf(answer.frame);
      expect(error.category, label).toBe(ErrorCategory.VALIDATION);
      expect(error.field, label).toBe(field);
      const pong = await client.request({ requestId: `bping-${from}`, request: { case: "ping", value: {} } }, { binary: true });
      expect(pong.kind.case, label).toBe("pong");
    }
    expect(await storedCount("select count(*) as n from chat_messages where client_msg_id = 'nested-unknown'", [])).toBe(0);
  });

  it("a frame over max_frame_bytes closes the connection with 1009", async () => {
    const client = await connect("/ws/chat/frames-big", "big-framer");
    client.sendRaw(JSON.stringify({ requestId: "big", send: { seq: "1", body: "x".repeat(70_000), clientMsgId: "big" } }));
    const closed = await client.waitClosed();
    expect(closed.code).toBe(1009);
    expect(await storedCount("select count(*) as n from chat_messages where client_msg_id = 'big'", [])).toBe(0);
    expectClientFaultLogged("big-framer", CloseCode.MESSAGE_TOO_BIG);
  });

  it("a text frame that is not UTF-8 closes with 1007, logged as the client's VALIDATION (warn, not a socket error)", async () => {
    const client = await connect("/ws/chat/frames-utf8", "bad-encoder");
    // Raw bytes as a text frame: ws does not check what it sends.
    client.socket.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    const closed = await client.waitClosed();
    expect(closed.code).toBe(CloseCode.INVALID_PAYLOAD);
    expectClientFaultLogged("bad-encoder", CloseCode.INVALID_PAYLOAD);
  });

  it("only garbage, maxConsecutiveErrors frames in a row → closed with 4508; valid frames reset the run", async () => {
    const limit = MAIN_LIMITS.maxConsecutiveErrors ?? 0;
    const survivor = await connect("/ws/chat/frames-garbage", "almost-broken");
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < limit - 1; i++) survivor.sendRaw(`garbage ${round}.${i}`);
      expect((await survivor.request({ requestId: `reset-${round}`, request: { case: "ping", value: {} } })).kind.case).toBe("pong");
    }
    expect(survivor.isOpen).toBe(true);

    const broken = await connect("/ws/chat/frames-garbage", "broken-client");
    for (let i = 0; i < limit + 3; i++) broken.sendRaw(`garbage ${i}`);
    const closed = await broken.waitClosed();
    expect(closed.code).toBe(CloseCode.TOO_MANY_ERRORS);
    expect(broken.frames.filter((frame) => frame.kind.case === "error")).toHaveLength(limit);
    expect(goAwayOf(broken.received)).toBeUndefined();
  });
});

describe("sends", () => {
  it("200 sends with a window of 8 are acked in the client's seq order with the stored message; a resend after reconnect is a duplicate", async () => {
    const room = "sends-200";
    const client = await joinRoom(room, "sender-200");
    const answers = await sendWindowed(client, specs(200, "w8"), 8);

    const acks = client.received.filter((r) => r.frame.kind.case === "sendAck");
    expect(acks.map((r) => ackOf(r.frame).seq)).toEqual(range(1, 200));
    expect(acks.map((r) => ackedMessage(r.frame).seq)).toEqual(range(1, 200));
    for (const [index, answer] of answers.entries()) {
      const message = ackedMessage(answer);
      expect(message).toMatchObject({ room, sender: "sender-200", body: `w8 message ${index}`, clientMsgId: `w8-${index}` });
      expect(message.id).toMatch(UUID);
      expect(ackOf(answer).duplicate).toBe(false);
    }
    for (const ack of acks) {
      const json = JSON.parse(ack.text ?? "{}") as { sendAck?: { seq?: unknown; message?: { seq?: unknown; createdAt?: unknown } } };
      expect(json.sendAck?.message?.createdAt).toMatch(RFC3339_UTC);
      expect(typeof json.sendAck?.seq).toBe("string");
      expect(typeof json.sendAck?.message?.seq).toBe("string");
    }
    const stored = await db.sql<{ client_msg_id: string }>("select client_msg_id from chat_messages where room_id = $1 order by seq", [room]);
    expect(stored.map((row) => row.client_msg_id)).toEqual(specs(200, "w8").map((spec) => spec.clientMsgId));
    // The sender's own subscription delivered its messages too, in order.
    expect((await messagesUpTo(client, room, 200n)).map((m) => m.seq)).toEqual(range(1, 200));

    const original = ackedMessage(at(answers, 57));
    await client.close();
    const again = await connect(`/ws/chat/${room}`, "sender-200");
    const resent = await again.request({ requestId: "resend", request: { case: "send", value: { seq: 1n, body: "w8 message 57", clientMsgId: "w8-57" } } });
    expect(ackOf(resent).duplicate).toBe(true);
    expect(ackedMessage(resent)).toEqual(original);
    expect(await storedCount("select count(*) as n from chat_messages where client_msg_id = 'w8-57'", [])).toBe(1);
  });

  it("two clients in one room see each other's messages in the same seq order", async () => {
    const room = "sends-two";
    const alice = await joinRoom(room, "two-alice");
    const bob = await joinRoom(room, "two-bob");
    await Promise.all([sendWindowed(alice, specs(30, "two-a"), 4), sendWindowed(bob, specs(30, "two-b"), 4)]);
    const [seenByAlice, seenByBob] = await Promise.all([messagesUpTo(alice, room, 60n), messagesUpTo(bob, room, 60n)]);
    expect(seenByAlice.map((m) => m.seq)).toEqual(range(1, 60));
    expect(seenByBob.map((m) => m.id)).toEqual(seenByAlice.map((m) => m.id));
    expect(seenByAlice.filter((m) => m.sender === "two-bob")).toHaveLength(30);
    expect(seenByBob.filter((m) => m.sender === "two-alice")).toHaveLength(30);
  });

  it("more un-answered sends than max_inflight_sends are refused with RATE_LIMITED, retryable", async () => {
    const tight = await bridge({ maxInflightSends: 2 });
    const client = await connect("/ws/chat/sends-tight", "hasty", { on: tight });
    for (let i = 1; i <= 40; i++) client.sendJson({ requestId: `t-${i}`, request: { case: "send", value: { seq: BigInt(i), body: `b${i}`, clientMsgId: `tight-${i}` } } });
    const answers = await client.until(
      () => {
        const answered = client.frames.filter((f) => f.requestId.startsWith("t-"));
        return answered.length === 40 ? answered : undefined;
      },
      { what: "40 answers" },
    );
    const limited = answers.filter((f) => f.kind.case === "error");
    expect(limited.length).toBeGreaterThan(0);
    for (const frame of limited) expect(errorOf(frame)).toMatchObject({ category: ErrorCategory.RATE_LIMITED, retryable: true });
    const acked = answers.filter((f) => f.kind.case === "sendAck").map((f) => ackedMessage(f).clientMsgId);
    expect(await storedCount("select count(*) as n from chat_messages where room_id = 'sends-tight'", [])).toBe(acked.length);
    await client.close();
    await stopBridge(tight);
  });
});

describe("send order", () => {
  it("every send is answered in the order it arrived, the bridge's own refusals (bad room, past max_inflight_sends) included", async () => {
    const window = 6;
    const tight = await bridge({ maxInflightSends: window });
    const client = await connect("/ws/chat/sends-order", "orderly", { on: tight });
    const send = (requestId: string, seq: number, extra: { room?: string } = {}) => {
      client.sendJson({ requestId, request: { case: "send", value: { seq: BigInt(seq), body: `body ${requestId}`, clientMsgId: requestId, ...extra } } });
    };
    // One TCP write: the bridge reads every frame before core can answer any.
    const raw = (client.socket as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    raw.cork();
    for (let i = 1; i <= window; i++) send(`order-${i}`, i);
    send("order-bad-room", window + 1, { room: "not a room!" });
    send("order-over", window + 2);
    raw.uncork();
    const expected = [...Array.from({ length: window }, (_, i) => `order-${i + 1}`), "order-bad-room", "order-over"];
    const answers = await client.until(
      () => {
        const answered = client.frames.filter((f) => f.requestId.startsWith("order-"));
        return answered.length === expected.length ? answered : undefined;
      },
      { what: `${expected.length} answers` },
    );
    expect(answers.map((f) => f.requestId)).toEqual(expected);
    expect(answers.slice(0, window).map((f) => ackOf(f).seq)).toEqual(range(1, window));
    expect(errorOf(at(answers, window))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.room" });
    expect(errorOf(at(answers, window + 1))).toMatchObject({ category: ErrorCategory.RATE_LIMITED, retryable: true });
    expect(await storedCount("select count(*) as n from chat_messages where room_id = 'sends-order'", [])).toBe(window);
    expect(client.isOpen).toBe(true);
    await client.close();
    await stopBridge(tight);
  });
});

describe("send order with undecodable sends and held sends", () => {
  it("a send frame that does not decode (unknown key, duplicate key, truncated binary) is answered in its place among the sends", async () => {
    const client = await connect("/ws/chat/sends-undecodable", "garbled");
    const raw = (client.socket as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    const valid = (requestId: string, seq: number) => {
      client.sendJson({ requestId, request: { case: "send", value: { seq: BigInt(seq), body: `body ${requestId}`, clientMsgId: requestId } } });
    };
    // ClientFrame{request_id, send = 10 (length-delimited)} whose send claims more bytes than follow.
    const truncated = new BinaryWriter().tag(1, WireType.LengthDelimited).string("u-truncated").tag(10, WireType.LengthDelimited).uint32(40).raw(new Uint8Array([0x08, 0x05])).finish();
    raw.cork();
    valid("u-1", 1);
    valid("u-2", 2);
    client.sendRaw('{"requestId":"u-unknown","send":{"seq":"3","body":"x","clientMsgId":"u-unknown"},"bogus":1}');
    valid("u-3", 4);
    client.sendRaw('{"requestId":"u-dup","send":{"seq":"5","body":"x","body":"y","clientMsgId":"u-dup"}}');
    client.sendRaw(truncated);
    valid("u-4", 6);
    raw.uncork();
    const expected = ["u-1", "u-2", "u-unknown", "u-3", "u-dup", "u-truncated", "u-4"];
    const answers = await client.until(
      () => {
        const answered = client.frames.filter((f) => f.requestId.startsWith("u-"));
        return answered.length === expected.length ? answered : undefined;
      },
      { what: `${expected.length} answers` },
    );
    expect(answers.map((f) => f.requestId)).toEqual(expected);
    expect(errorOf(at(answers, 2))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "bogus" });
    expect(errorOf(at(answers, 4))).toMatchObject({ category: ErrorCategory.VALIDATION, field: "send.body" });
    expect(errorOf(at(answers, 5))).toMatchObject({ category: ErrorCategory.VALIDATION });
    expect(client.isOpen).toBe(true);
  });

  it("with core unreachable, a run of invalid sends behind a held one still closes with 4508 at once", async () => {
    const limit = 4;
    const { stranded, client } = await strandedClient("/ws/chat/held-run", "stranded", { maxConsecutiveErrors: limit });
    client.sendJson({ requestId: "held-1", request: { case: "send", value: { seq: 1n, body: "held", clientMsgId: "held-1" } } });
    for (let i = 0; i < limit; i++) {
      client.sendJson({ requestId: `bad-${i}`, request: { case: "send", value: { seq: BigInt(2 + i), body: "x", clientMsgId: `bad-${i}`, room: "not a room!" } } });
    }
    const closed = await client.waitClosed(5_000);
    expect(closed.code).toBe(CloseCode.TOO_MANY_ERRORS);
    // The refusal that completed the run is answered; the held send and the refusals behind it are not (the client resends them).
    expect(client.frames.filter((f) => f.kind.case === "error").map((f) => f.requestId)).toEqual([`bad-${limit - 1}`]);
    await stopBridge(stranded, 200);
  });

  it("with core unreachable, refusals waiting behind held sends are bounded: one too many closes with 4029", async () => {
    const window = 3;
    const burst = 5;
    const { stranded, client } = await strandedClient("/ws/chat/held-refusals", "impatient", { maxInflightSends: window, frameBurst: burst, framesPerSecond: 1_000 });
    // `window` sends are held, the next `window + burst` are refused RATE_LIMITED and wait in line behind them, one more
    // closes. Paced under the frame rate limit, which would close with 4029 too, for another reason.
    for (let i = 1; i <= 2 * window + burst + 1; i++) {
      client.sendJson({ requestId: `held-${i}`, request: { case: "send", value: { seq: BigInt(i), body: "x", clientMsgId: `held-${i}` } } });
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const closed = await client.waitClosed(5_000);
    expect(closed.code).toBe(CloseCode.RATE_LIMITED);
    expect(closed.reason).toMatch(/refused sends waiting/);
    // Only the refusal one too many is answered (RATE_LIMITED), just before the close.
    const answered = client.frames.filter((f) => f.requestId.startsWith("held-"));
    expect(answered.map((f) => f.requestId)).toEqual([`held-${2 * window + burst + 1}`]);
    expect(errorOf(at(answered, 0))).toMatchObject({ category: ErrorCategory.RATE_LIMITED });
    await stopBridge(stranded, 200);
  });
});

describe("request limits", () => {
  it("more un-answered requests than max_inflight_requests are refused with RATE_LIMITED; the socket stays open", async () => {
    const tight = await bridge({ maxInflightRequests: 2 });
    const client = await connect("/ws/chat/requests-tight", "curious", { on: tight });
    for (let i = 1; i <= 30; i++) client.sendJson({ requestId: `h-${i}`, request: { case: "history", value: { pageSize: 1 } } });
    const answers = await client.until(
      () => {
        const answered = client.frames.filter((f) => f.requestId.startsWith("h-"));
        return answered.length === 30 ? answered : undefined;
      },
      { what: "30 answers" },
    );
    const limited = answers.filter((f) => f.kind.case === "error");
    expect(limited.length).toBeGreaterThan(0);
    for (const frame of limited) expect(errorOf(frame)).toMatchObject({ category: ErrorCategory.RATE_LIMITED, retryable: true });
    expect(answers.some((f) => f.kind.case === "history")).toBe(true);
    expect(client.isOpen).toBe(true);
    await client.close();
    await stopBridge(tight);
  });

  it("refresh_token counts among the un-answered requests: a flood of refreshes cannot queue unbounded WhoAmI calls at core", async () => {
    const tight = await bridge({ maxInflightRequests: 2 });
    const user = "refresh-flooder";
    const client = await connect("/ws", user, { on: tight });
    // Distinct tokens, so that no answer comes from the bridge's memory of one.
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => mintToken(TEST_JWT_SECRET, user, { expiresInSeconds: 600 + i })));
    tokens.forEach((token, i) => {
      client.sendJson({ requestId: `r-${i}`, request: { case: "refreshToken", value: { token } } });
    });
    const answers = await client.until(
      () => {
        const answered = client.frames.filter((f) => f.requestId.startsWith("r-"));
        return answered.length === 30 ? answered : undefined;
      },
      { what: "30 answers" },
    );
    const limited = answers.filter((f) => f.kind.case === "error");
    expect(limited.length).toBeGreaterThan(0);
    for (const frame of limited) expect(errorOf(frame)).toMatchObject({ category: ErrorCategory.RATE_LIMITED, retryable: true });
    expect(answers.some((f) => f.kind.case === "tokenRefreshed")).toBe(true);
    expect(client.isOpen).toBe(true);
    await client.close();
    await stopBridge(tight);
  });

  it("a connection flooding frames past the rate limit is closed with 4029 after a go_away", async () => {
    const tight = await bridge({ framesPerSecond: 20, frameBurst: 40 });
    const client = await connect("/ws/chat/flood", "flooder", { on: tight });
    for (let i = 1; i <= 200; i++) client.sendJson({ requestId: `p-${i}`, request: { case: "ping", value: {} } });
    const closed = await client.waitClosed();
    expect(closed.code).toBe(4029);
    expect(client.frames.some((f) => f.kind.case === "goAway")).toBe(true);
    await stopBridge(tight);
  });
});

describe("subscriptions and resume", () => {
  it("?after_seq=k replays k+1..N, then caught_up, then live, with no gap or duplicate", async () => {
    const room = "resume-room";
    const feeder = await core.chat("feeder");
    for (let i = 1; i <= 30; i++) await feeder.sendMessage({ room, body: `r${i}`, clientMsgId: `resume-${i}` });

    const client = await connect(`/ws/chat/${room}`, "resumer", { query: { after_seq: "10" } });
    const caughtUp = await client.waitFor((f) => f.kind.case === "caughtUp" && f.requestId === "", { what: "caught_up" });
    const caughtUpIndex = client.received.indexOf(caughtUp);
    expect(caughtUp.frame.kind.case === "caughtUp" && caughtUp.frame.kind.value).toMatchObject({ room, headSeq: 30n });
    const beforeSeam = client.received.slice(0, caughtUpIndex).flatMap((r) => (r.frame.kind.case === "message" ? [r.frame.kind.value.seq] : []));
    expect(beforeSeam).toEqual(range(11, 30));

    for (let i = 31; i <= 40; i++) await feeder.sendMessage({ room, body: `r${i}`, clientMsgId: `resume-${i}` });
    const all = await messagesUpTo(client, room, 40n);
    expect(all.map((m) => m.seq)).toEqual(range(11, 40));
    expect(all.map((m) => m.body)).toEqual(range(11, 40).map((seq) => `r${seq}`));

    // after_seq=0 replays from the first message; no after_seq is live only.
    const fromZero = await connect(`/ws/chat/${room}`, "resumer", { query: { after_seq: "0" } });
    expect((await messagesUpTo(fromZero, room, 40n)).map((m) => m.seq)).toEqual(range(1, 40));
    const live = await joinRoom(room, "resumer");
    expect(messagesOf(live, room)).toEqual([]);
    const headFrame = live.frames.find((f) => f.kind.case === "caughtUp");
    expect(headFrame?.kind.case === "caughtUp" && headFrame.kind.value.headSeq).toBe(40n);
  });

  it("subscribe adds a second room on the same connection; unsubscribe stops its events", async () => {
    const home = "sub-home";
    const other = "sub-other";
    const feeder = await core.chat("sub-feeder");
    for (let i = 1; i <= 5; i++) await feeder.sendMessage({ room: other, body: `o${i}`, clientMsgId: `sub-o-${i}` });

    const client = await joinRoom(home, "subscriber");
    const witness = await joinRoom(other, "witness");
    const caughtUp = await client.request({ requestId: "sub-1", request: { case: "subscribe", value: { room: other, afterSeq: 2n } } });
    expect(caughtUp.kind.case === "caughtUp" && caughtUp.kind.value).toMatchObject({ room: other, headSeq: 5n });
    expect(messagesOf(client, other).map((m) => m.seq)).toEqual(range(3, 5));

    await feeder.sendMessage({ room: other, body: "o6", clientMsgId: "sub-o-6" });
    await feeder.sendMessage({ room: home, body: "h1", clientMsgId: "sub-h-1" });
    expect((await messagesUpTo(client, other, 6n)).map((m) => m.seq)).toEqual(range(3, 6));
    expect((await messagesUpTo(client, home, 1n)).map((m) => m.body)).toEqual(["h1"]);

    const unsubscribed = await client.request({ requestId: "unsub-1", request: { case: "unsubscribe", value: { room: other } } });
    expect(unsubscribed.kind.case === "unsubscribed" && unsubscribed.kind.value.room).toBe(other);
    await feeder.sendMessage({ room: other, body: "o7", clientMsgId: "sub-o-7" });
    await feeder.sendMessage({ room: home, body: "h2", clientMsgId: "sub-h-2" });
    // The witness on the same bridge got o7, and the client got its own room's h2 and a pong after it: o7 would have arrived by now.
    await messagesUpTo(witness, other, 7n);
    await messagesUpTo(client, home, 2n);
    expect((await client.request({ requestId: "unsub-ping", request: { case: "ping", value: {} } })).kind.case).toBe("pong");
    expect(messagesOf(client, other).map((m) => m.seq)).toEqual(range(3, 6));

    // A denied or invalid subscription is an error frame; the connection stays open.
    const bad = errorOf(await client.request({ requestId: "sub-bad", request: { case: "subscribe", value: { room: "no spaces allowed" } } }));
    expect(bad).toMatchObject({ category: ErrorCategory.VALIDATION, field: "subscribe.room" });
  });

  it("the bridge holds one core subscription per room however many connections follow it", async () => {
    const own = await bridge({}, { feedLingerMs: 300 });
    const room = "shared-feed";
    const followers = await Promise.all(range(1, 5).map((i) => joinRoom(room, `follower-${i}`, { on: own })));
    expect(own.roomFeeds.roomCount).toBe(1);
    const feeder = await core.chat("feed-feeder");
    for (let i = 1; i <= 10; i++) await feeder.sendMessage({ room, body: `f${i}`, clientMsgId: `feed-${i}` });
    for (const follower of followers) expect((await messagesUpTo(follower, room, 10n)).map((m) => m.seq)).toEqual(range(1, 10));
    expect(own.roomFeeds.roomCount).toBe(1);

    await Promise.all(followers.map((follower) => follower.close()));
    // Kept for the linger time after the last follower left, then released.
    await eventually(() => own.roomFeeds.roomCount === 0, 5_000, "room feed released after the last follower left");
    await eventually(() => own.connections.size === 0, 5_000, "connections gone");
    await stopBridge(own);
  });

  it("subscribe/unsubscribe churn never maps onto core streams: one core subscription for the room, kept while followers come and go", async () => {
    const own = await bridge({ framesPerSecond: 10_000, frameBurst: 10_000 });
    const room = "churned-room";
    const client = await connect("/ws", "churner", { on: own });
    const opened = own.roomFeeds.opened;
    for (let i = 0; i < 100; i++) {
      const subscribed = client.request({ requestId: `c-sub-${i}`, request: { case: "subscribe", value: { room } } });
      await subscribed;
      await client.request({ requestId: `c-unsub-${i}`, request: { case: "unsubscribe", value: { room } } });
    }
    expect(own.roomFeeds.opened - opened).toBe(1);
    expect(own.roomFeeds.roomCount).toBe(1);
    // A follower that comes back still gets everything, live.
    const feeder = await core.chat("churn-feeder");
    await client.request({ requestId: "c-final", request: { case: "subscribe", value: { room } } });
    await feeder.sendMessage({ room, body: "after the churn", clientMsgId: "churn-1" });
    expect((await messagesUpTo(client, room, 1n)).map((m) => m.body)).toEqual(["after the churn"]);
    expect(own.roomFeeds.opened - opened).toBe(1);
    await stopBridge(own);
  });

  it("history and mark_read work through the bridge", async () => {
    const room = "bridge-history";
    const client = await joinRoom(room, "historian");
    await sendWindowed(client, specs(12, "hist"), 4);
    const page = await client.request({ requestId: "h-1", request: { case: "history", value: { pageSize: 5, cursorSeq: 3n } } });
    if (page.kind.case !== "history") throw new Error(`expected history, got ${page.kind.case ?? "none"}`);
    expect(page.kind.value.messages.map((m) => m.seq)).toEqual(range(4, 8));
    expect(page.kind.value).toMatchObject({ hasMore: true, headSeq: 12n });
    const reader = await joinRoom(room, "reader");
    const read = await reader.request({ requestId: "m-1", request: { case: "markRead", value: { seq: 9n } } });
    expect(read.kind.case === "markRead" && read.kind.value).toMatchObject({ readSeq: 9n, unreadCount: 3n, headSeq: 12n });
    const beyond = errorOf(await reader.request({ requestId: "m-2", request: { case: "markRead", value: { seq: 99n } } }));
    expect(beyond.category).toBe(ErrorCategory.VALIDATION);
  });
});

describe("notifications on /ws/notifications", () => {
  it("live notification frames, list and ack with unread counts, resume with ?after_seq=", async () => {
    const user = "nina";
    const service = await core.notifications("billing", { sender: true });
    const inbox = await connect("/ws/notifications", user);
    const welcome = inbox.received[0]?.frame.kind;
    expect(welcome?.case === "welcome" && welcome.value.room).toBe("");
    const caughtUp = await inbox.waitFor((f) => f.kind.case === "caughtUp", { what: "inbox caught_up" });
    expect(caughtUp.frame.kind.case === "caughtUp" && caughtUp.frame.kind.value).toMatchObject({ room: "", headSeq: 0n });

    for (let i = 1; i <= 3; i++) {
      await service.sendNotification({ recipients: [user, "someone-else"], kind: "invoice", title: `invoice ${i}`, body: "due", idempotencyKey: `inv-${i}`, data: { n: i } });
    }
    const live = await inbox.until(() => (notificationsOf(inbox).length >= 3 ? notificationsOf(inbox) : undefined), { what: "3 notifications" });
    expect(live.map((n) => n.seq)).toEqual(range(1, 3));
    expect(live.map((n) => n.title)).toEqual(["invoice 1", "invoice 2", "invoice 3"]);
    expect(live.every((n) => n.recipient === user && n.sender === "billing")).toBe(true);
    const raw = inbox.received.find((r) => r.frame.kind.case === "notification");
    expect(JSON.parse(raw?.text ?? "{}")).toMatchObject({ notification: { seq: "1", data: { n: 1 }, createdAt: expect.stringMatching(RFC3339_UTC) as unknown } });

    const listed = await inbox.request({ requestId: "n-1", request: { case: "listNotifications", value: { unreadOnly: true } } });
    if (listed.kind.case !== "notifications") throw new Error(`expected notifications, got ${listed.kind.case ?? "none"}`);
    expect(listed.kind.value.notifications.map((n) => n.seq)).toEqual(range(1, 3));
    expect(listed.kind.value).toMatchObject({ unreadCount: 3n, headSeq: 3n });

    const acked = await inbox.request({ requestId: "n-2", request: { case: "ackNotifications", value: { upToSeq: 2n } } });
    expect(acked.kind.case === "notificationsAcked" && acked.kind.value).toMatchObject({ ackedCount: 2n, unreadCount: 1n });
    const unread = await inbox.request({ requestId: "n-3", request: { case: "listNotifications", value: { unreadOnly: true } } });
    expect(unread.kind.case === "notifications" && unread.kind.value.notifications.map((n) => n.seq)).toEqual([3n]);

    const denied = errorOf(await inbox.request({ requestId: "n-4", request: { case: "listNotifications", value: { recipient: "someone-else" } } }));
    expect(denied.category).toBe(ErrorCategory.PERMISSION_DENIED);
    const deniedFollow = errorOf(await inbox.request({ requestId: "n-5", request: { case: "subscribeNotifications", value: { recipient: "someone-else" } } }));
    expect(deniedFollow.category).toBe(ErrorCategory.PERMISSION_DENIED);

    // Resume after seq 1: 2, 3 replayed, caught_up at 3, then 4 live.
    const resumed = await connect("/ws/notifications", user, { query: { after_seq: "1" } });
    const seam = await resumed.waitFor((f) => f.kind.case === "caughtUp", { what: "resumed caught_up" });
    expect(seam.frame.kind.case === "caughtUp" && seam.frame.kind.value.headSeq).toBe(3n);
    expect(notificationsOf(resumed).map((n) => n.seq)).toEqual([2n, 3n]);
    await service.sendNotification({ recipients: [user], kind: "invoice", title: "invoice 4", idempotencyKey: "inv-4" });
    const after = await resumed.until(() => (notificationsOf(resumed).length >= 3 ? notificationsOf(resumed) : undefined), { what: "live notification 4" });
    expect(after.map((n) => n.seq)).toEqual([2n, 3n, 4n]);
    expect(after[1]?.readAt).toBeUndefined();

    // A subscribe_notifications frame restarts the follow from its own after_seq.
    const explicit = await connect("/ws/notifications", user);
    const replay = await explicit.request({ requestId: "n-6", request: { case: "subscribeNotifications", value: { afterSeq: 0n } } });
    expect(replay.kind.case === "caughtUp" && replay.kind.value.headSeq).toBe(4n);
    const replayed = notificationsOf(explicit);
    expect(replayed.map((n) => n.seq)).toEqual(range(1, 4));
    expect(replayed[0]?.readAt).toBeDefined();
  });
});

describe("ack_notifications with an id that is not the user's", () => {
  it("answers the same for another user's notification and for an id that does not exist, and marks nothing", async () => {
    const service = await core.notifications("probe-billing", { sender: true });
    const victim = (await service.sendNotification({ recipients: ["ws-probed"], kind: "k", title: "private", idempotencyKey: "ws-probe-1" })).notifications[0]?.id ?? "";
    await service.sendNotification({ recipients: ["ws-prober"], kind: "k", title: "own", idempotencyKey: "ws-probe-2" });
    const inbox = await connect("/ws/notifications", "ws-prober");
    const texts: unknown[] = [];
    for (const [index, id] of [victim, "7d3f0b9e-5c1a-4e2b-9f80-0123456789ab"].entries()) {
      const requestId = `probe-${index}`;
      const error = errorOf(await inbox.request({ requestId, request: { case: "ackNotifications", value: { upToSeq: 10n, ids: [id] } } }));
      expect(error).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED, field: "ack_notifications.ids[0]", message: "ack_notifications.ids[0]: not a notification of your inbox", retryable: false });
      // The whole frame as the browser reads it, but for what differs by nature.
      const text = inbox.received.find((r) => r.frame.requestId === requestId)?.text ?? "{}";
      const frame = JSON.parse(text) as { requestId?: string; error?: { traceId?: string } };
      delete frame.requestId;
      delete frame.error?.traceId;
      texts.push(frame);
    }
    expect(texts[0]).toEqual(texts[1]);
    expect(inbox.isOpen).toBe(true);
    expect(await storedCount("select count(*) as n from notifications where recipient_id in ('ws-probed', 'ws-prober') and read_at is not null", [])).toBe(0);
  });
});

describe("a quiet inbox", () => {
  it("stays one core subscription past the unary call deadline (10 s): no interruption, and a late notification still arrives", { timeout: 30_000 }, async () => {
    const user = "quiet-inbox";
    const service = await core.notifications("quiet-sender", { sender: true });
    const inbox = await connect("/ws/notifications", user);
    await inbox.waitFor((frame) => frame.kind.case === "caughtUp", { what: "caught_up" });
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    await service.sendNotification({ recipients: [user], kind: "ping", title: "late", idempotencyKey: "quiet-1" });
    await inbox.waitFor((frame) => frame.kind.case === "notification", { what: "the late notification" });
    expect(bridgeLogs.lines.filter((line) => line.msg === "inbox follow interrupted; resuming" && line.user === user)).toEqual([]);
  });
});

describe("connection health", () => {
  it("a peer that does not answer pings is closed with 4000 after a go_away; one that answers stays", async () => {
    const fast = await bridge({ heartbeatIntervalMs: 200 });
    const answering = await connect("/ws/chat/heartbeat", "pongs", { on: fast });
    const silent = await connect("/ws/chat/heartbeat", "no-pongs", { on: fast, autoPong: false });
    const welcome = silent.received[0]?.frame.kind;
    expect(welcome?.case === "welcome" && welcome.value.heartbeatInterval?.nanos).toBe(200_000_000);
    const closed = await silent.waitClosed(5_000);
    expect(closed.code).toBe(CloseCode.HEARTBEAT_TIMEOUT);
    expect(goAwayOf(silent.received)?.closeCode).toBe(CloseCode.HEARTBEAT_TIMEOUT);
    // The answering peer saw at least as many pings and is still fine.
    expect(answering.isOpen).toBe(true);
    expect((await answering.request({ requestId: "hb", request: { case: "ping", value: {} } })).kind.case).toBe("pong");
    await answering.close();
    await stopBridge(fast);
  });

  it("a slow consumer is closed with 4001 (after go_away) and loses nothing on resume", { timeout: 90_000 }, async () => {
    const slowBridge = await bridge({ maxBufferedBytes: 16 * 1024 });
    const room = "slow-room";
    const slow = await joinRoom(room, "slowpoke", { on: slowBridge });
    const welcome = slow.received[0]?.frame.kind;
    const connectionId = welcome?.case === "welcome" ? welcome.value.connectionId : "";
    const socket = (slow.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();

    // Another client fills the room with 16 KB messages until the bridge gives up on the slow one.
    const sender = await joinRoom(room, "flooder");
    const big = (i: number) => `${String(i).padStart(6, "0")} ${"😀".repeat(4000)}`;
    let sent = 0;
    const gone = () => ![...slowBridge.connections].some((c) => c.id === connectionId);
    const deadline = Date.now() + 60_000;
    while (!gone()) {
      if (Date.now() > deadline || sent >= 3_000) throw new Error(`the slow consumer was not closed after ${sent} messages`);
      await sendWindowed(sender, specs(25, `flood-${sent}`, (i) => big(sent + i)), 8, sent + 1, `f${sent}`);
      sent += 25;
    }
    socket.resume();
    const closed = await slow.waitClosed(15_000);
    expect(closed.code).toBe(CloseCode.SLOW_CONSUMER);
    expect(goAwayOf(slow.received)?.closeCode).toBe(CloseCode.SLOW_CONSUMER);
    expect(bridgeLogs.find({ msg: "closing connection", connection: connectionId, close_code: CloseCode.SLOW_CONSUMER })).toHaveLength(1);

    const seen = messagesOf(slow, room);
    expect(seen.map((m) => m.seq)).toEqual(range(1, seen.length));
    const last = seen.at(-1)?.seq ?? 0n;
    expect(last).toBeLessThan(BigInt(sent));

    const resumed = await connect(`/ws/chat/${room}`, "slowpoke", { on: slowBridge, query: { after_seq: String(last) } });
    const rest = await messagesUpTo(resumed, room, BigInt(sent), 30_000);
    expect(rest.map((m) => m.seq)).toEqual(range(Number(last) + 1, sent));
    expect(rest.at(-1)?.body).toBe(big(sent - 1));
    await resumed.close();
    await stopBridge(slowBridge);
  });

  it("graceful stop: in-flight sends are answered, then go_away and 1001 for every client", async () => {
    let stopping: Promise<void> | undefined;
    let inFlightAtStop = -1;
    let sendsIn = 0;
    const total = 100;
    const target: { bridge?: RunningBridge } = {};
    const shutdownBridge = await bridge(
      { maxInflightSends: 256 },
      {
        observe: {
          frameIn: (kind) => {
            if (kind !== "send" || ++sendsIn !== total) return;
            // Stop as soon as the last send has been taken in, while core still works on them.
            queueMicrotask(() => {
              const current = target.bridge;
              if (current === undefined) return;
              inFlightAtStop = current.coreSessions.inFlight;
              running.delete(current);
              stopping = current.stop(5_000);
            });
          },
        },
      },
    );
    target.bridge = shutdownBridge;
    const room = "shutdown-room";
    const writer = await joinRoom(room, "last-words", { on: shutdownBridge });
    const bystander = await connect("/ws/notifications", "bystander", { on: shutdownBridge });
    for (let i = 1; i <= total; i++) {
      writer.sendJson({ requestId: `g-${i}`, request: { case: "send", value: { seq: BigInt(i), body: `bye ${i}`, clientMsgId: `bye-${i}` } } });
    }
    const [writerClosed, bystanderClosed] = await Promise.all([writer.waitClosed(15_000), bystander.waitClosed(15_000)]);
    await stopping;
    expect(inFlightAtStop).toBeGreaterThan(0);
    expect(writerClosed.code).toBe(1001);
    expect(bystanderClosed.code).toBe(1001);
    expect(goAwayOf(bystander.received)?.closeCode).toBe(CloseCode.GOING_AWAY);

    const goAwayIndex = writer.received.findIndex((r) => r.frame.kind.case === "goAway");
    expect(goAwayIndex).toBeGreaterThan(0);
    const answers = writer.received.slice(0, goAwayIndex).filter((r) => r.frame.requestId.startsWith("g-"));
    expect(answers.map((r) => ackOf(r.frame).seq)).toEqual(range(1, total));
    expect(await storedCount("select count(*) as n from chat_messages where room_id = $1", [room])).toBe(total);

    const refused = await WsTestClient.connect(base(shutdownBridge), `/ws/chat/${room}`, { token: await mintToken(TEST_JWT_SECRET, "late") }).then(
      () => "opened",
      (error: unknown) => String(error),
    );
    expect(refused).not.toBe("opened");
  });
});

describe("bounded resources", () => {
  // Regression: every call once left an "abort" listener on the connection's
  // signal, so memory grew with the requests of a long-lived connection.
  it("many requests on one connection leave no abort listener behind", async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on("warning", onWarning);
    try {
      const client = await joinRoom("many-requests", "busy-reader");
      for (let i = 0; i < 30; i++) {
        expect((await client.request({ requestId: `many-${i}`, request: { case: "history", value: {} } })).kind.case).toBe("history");
      }
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.filter((message) => message.includes("abort listeners"))).toEqual([]);
  });

  it("50 requests in flight on one connection add no abort listeners to a shared signal (no MaxListenersExceededWarning)", async () => {
    const roomy = await bridge({ maxInflightRequests: 64 });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on("warning", onWarning);
    try {
      const client = await joinRoom("many-in-flight", "parallel-reader", { on: roomy });
      const from = client.received.length;
      for (let i = 0; i < 50; i++) client.sendJson({ requestId: `par-${i}`, request: { case: "history", value: {} } });
      const answers = await client.until(
        () => {
          const answered = client.received.slice(from).filter((r) => r.frame.requestId.startsWith("par-"));
          return answered.length === 50 ? answered : undefined;
        },
        { what: "50 answers" },
      );
      expect(answers.every((r) => r.frame.kind.case === "history")).toBe(true);
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.filter((message) => message.includes("MaxListeners") || message.includes("abort listeners"))).toEqual([]);
    await stopBridge(roomy);
  });
});

describe("error fields name the path in the client frame", () => {
  // [label, route, request, expected category, expected field]
  const cases: [string, string, ClientFrameInit["request"], ErrorCategory, string][] = [
    ["send: an empty body (core's check)", "chat", { case: "send", value: { seq: 1n, body: "", clientMsgId: "f-empty" } }, ErrorCategory.VALIDATION, "send.body"],
    ["send: a bad room (the bridge's check)", "chat", { case: "send", value: { seq: 2n, room: "no room!", body: "x", clientMsgId: "f-room" } }, ErrorCategory.VALIDATION, "send.room"],
    ["send: a bad client_msg_id", "chat", { case: "send", value: { seq: 3n, body: "x", clientMsgId: "has spaces" } }, ErrorCategory.VALIDATION, "send.client_msg_id"],
    ["subscribe: a bad room", "chat", { case: "subscribe", value: { room: "no room!" } }, ErrorCategory.VALIDATION, "subscribe.room"],
    ["subscribe: a negative after_seq", "chat", { case: "subscribe", value: { room: "fields-room", afterSeq: -1n } }, ErrorCategory.VALIDATION, "subscribe.after_seq"],
    ["subscribe: an after_seq beyond the head", "chat", { case: "subscribe", value: { room: "fields-room", afterSeq: 1000n } }, ErrorCategory.VALIDATION, "subscribe.after_seq"],
    ["unsubscribe: a bad room", "chat", { case: "unsubscribe", value: { room: "no room!" } }, ErrorCategory.VALIDATION, "unsubscribe.room"],
    ["history: a bad room", "chat", { case: "history", value: { room: "no room!" } }, ErrorCategory.VALIDATION, "history.room"],
    ["history: a page size over the limit (core's check)", "chat", { case: "history", value: { pageSize: 9_999 } }, ErrorCategory.VALIDATION, "history.page_size"],
    ["history: a negative cursor_seq (core's check)", "chat", { case: "history", value: { cursorSeq: -1n } }, ErrorCategory.VALIDATION, "history.cursor_seq"],
    ["mark_read: a seq beyond the head (core's check)", "chat", { case: "markRead", value: { seq: 1000n } }, ErrorCategory.VALIDATION, "mark_read.seq"],
    ["list_notifications: a page size over the limit", "notifications", { case: "listNotifications", value: { pageSize: 9_999 } }, ErrorCategory.VALIDATION, "list_notifications.page_size"],
    ["ack_notifications: an id that is not a UUID", "notifications", { case: "ackNotifications", value: { ids: ["not-a-uuid"] } }, ErrorCategory.VALIDATION, "ack_notifications.ids[0]"],
    ["subscribe_notifications: a negative after_seq", "notifications", { case: "subscribeNotifications", value: { afterSeq: -1n } }, ErrorCategory.VALIDATION, "subscribe_notifications.after_seq"],
    ["subscribe_notifications: someone else's inbox", "notifications", { case: "subscribeNotifications", value: { recipient: "someone-else" } }, ErrorCategory.PERMISSION_DENIED, "subscribe_notifications.recipient"],
  ];

  it("each request kind, one bad field each: the field and the message name the frame's path; the socket stays open", async () => {
    const feeder = await core.chat("fields-feeder");
    await feeder.sendMessage({ room: "fields-room", body: "one", clientMsgId: "fields-1" });
    const chat = await joinRoom("fields-room", "fields-user");
    const inbox = await connect("/ws/notifications", "fields-user");
    for (const [index, [label, route, request, category, field]] of cases.entries()) {
      const client = route === "chat" ? chat : inbox;
      const error = errorOf(await client.request({ requestId: `field-${index}`, request }));
      expect({ category: error.category, field: error.field }, label).toEqual({ category, field });
      if (category === ErrorCategory.VALIDATION) expect(error.message, label).toMatch(new RegExp(`^${field.replace(/[.[\]]/g, "\\$&")}: `));
    }
    expect(chat.isOpen && inbox.isOpen).toBe(true);
    expect(await storedCount("select count(*) as n from chat_messages where client_msg_id like 'f-%' or client_msg_id = 'has spaces'", [])).toBe(0);
  });
});

describe("serialization safety", () => {
  // A server frame that cannot be encoded (the SERIALIZATION fallback of
  // Connection#push) needs a value the schema cannot represent; everything a
  // client or service can send is normalized by core before it is stored
  // (strings are UTF-8 on the gRPC hop, Struct numbers go through JSON), so it
  // cannot be provoked from outside. What can be checked from outside: odd
  // but valid input round-trips and never breaks the connection.
  it("lone surrogates, NUL-free control characters and astral text round-trip or fail as VALIDATION, never closing the socket", async () => {
    const client = await joinRoom("odd-text", "odd-writer");
    const bodies = ["\ud800 lone high", "lone low \udc00", "tab\tand\u0001control", "😀".repeat(4096), "\u2028\u2029 separators"];
    for (const [index, body] of bodies.entries()) {
      const answer = await client.request({ requestId: `odd-${index}`, request: { case: "send", value: { seq: BigInt(index + 1), body, clientMsgId: `odd-${index}` } } });
      if (answer.kind.case === "error") expect(answer.kind.value.category).toBe(ErrorCategory.VALIDATION);
      else expect(ackOf(answer).message?.body).toBe(body.replace(/[\ud800-\udfff]/g, (c, offset: number, all: string) => (isPaired(all, offset) ? c : "\ufffd")));
    }
    expect((await client.request({ requestId: "odd-ping", request: { case: "ping", value: {} } })).kind.case).toBe("pong");
  });
});

/** The one log line of a protocol violation by `user`'s client: the client's fault (VALIDATION, warn) with its close code, and no socket error. */
function expectClientFaultLogged(user: string, closeCode: CloseCode): void {
  const lines = bridgeLogs.lines.filter((line) => line.user === user);
  expect(lines.filter((line) => line.close_code === closeCode && line.category !== undefined)).toMatchObject([{ category: "VALIDATION", level: "warn" }]);
  expect(lines.filter((line) => line.category === "UNAVAILABLE" || line.level === "error")).toEqual([]);
}

function at<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`no item at ${index}`);
  return item;
}

function isPaired(text: string, offset: number): boolean {
  const code = text.charCodeAt(offset);
  if (code >= 0xd800 && code <= 0xdbff) {
    const next = text.charCodeAt(offset + 1);
    return next >= 0xdc00 && next <= 0xdfff;
  }
  const previous = text.charCodeAt(offset - 1);
  return previous >= 0xd800 && previous <= 0xdbff;
}
