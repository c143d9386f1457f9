import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type BridgeOptions, type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { mintToken, ROOMS_RELAY_SCOPE } from "../../src/runtime/auth/tokens.js";
import { IdentityService } from "../../gen/parley/v1/identity_pb.js";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { type ClientTransport, tlsTransport } from "../../src/runtime/grpc/channel-credentials.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import type { TlsCertificates } from "../../src/runtime/tls/certificates.js";
import { HANDSHAKE_TIMEOUT_MS } from "../../src/runtime/tls/tls-listener.js";
import { rejection } from "../support/assertions.js";
import { certificatesOf, createTestPki, OPENSSL, type TestPki } from "../support/certificates.js";
import { startTestCore, TEST_JWT_SECRET, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";
import { type ParleyProcess, spawnParley } from "../support/processes.js";
import { eventually, messagesUpTo, WsTestClient } from "../support/ws-client.js";

let db: TestDatabase;
let pki: TestPki;
let core: TestCore;
let ca: Buffer;
const bridgeLogs = new LogCapture("debug");
const running = new Set<RunningBridge>();
const clients: WsTestClient[] = [];

/** The bridge's mTLS link to core: trusts the test CA, presents the parley-bridge client certificate. */
function bridgeLink(files: { cert?: string; key?: string } = { cert: pki.client.cert, key: pki.client.key }): ClientTransport {
  return tlsTransport(certificatesOf({ ca: pki.ca, ...files }, "core link", bridgeLogs.logger), "localhost");
}

function listenerCertificates(files = pki.server): TlsCertificates {
  return certificatesOf({ cert: files.cert, key: files.key }, "http listener", bridgeLogs.logger);
}

beforeAll(async () => {
  pki = createTestPki();
  ca = readFileSync(pki.ca);
  db = await createTestDatabase();
  // Core with mTLS: only clients with a certificate from the test CA get past the handshake.
  const serverCertificates = certificatesOf({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca }, "grpc listener", new LogCapture().logger);
  // A client certificate named parley-bridge, calling without a token, is a relay (a bridge known by its certificate).
  core = await startTestCore(db, { tls: serverCertificates, clientTransport: bridgeLink(), relayCertificateNames: ["parley-bridge"] });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
});

afterAll(async () => {
  for (const bridge of running) await bridge.stop(500);
  await core.stop();
  await db.drop();
  pki.remove();
});

async function bridge(extra: Partial<BridgeOptions> = {}): Promise<RunningBridge> {
  const started = await startBridge({
    httpAddress: "127.0.0.1:0",
    coreAddress: core.core.address,
    // Known to core by its client certificate: no token of its own.
    relayToken: undefined,
    logger: bridgeLogs.logger,
    tls: listenerCertificates(),
    coreTransport: bridgeLink(),
    sendAnswerTimeoutMs: 2_000,
    ...extra,
  });
  running.add(started);
  return started;
}

async function join(on: RunningBridge, room: string, user: string): Promise<WsTestClient> {
  const client = await WsTestClient.connect(`https://localhost:${on.port}`, `/ws/chat/${room}`, { token: await mintToken(TEST_JWT_SECRET, user), ca });
  clients.push(client);
  await client.waitFor((frame) => frame.requestId === "" && frame.kind.case === "caughtUp", { what: "caught_up" });
  return client;
}

async function stored(clientMsgId: string): Promise<{ sender: string; body: string }[]> {
  return db.sql<{ sender: string; body: string }>("select sender, body from chat_messages where client_msg_id = $1", [clientMsgId]);
}

/** GET over https trusting the test CA; resolves with the status and the JSON body. */
function getJson(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest({ host: "127.0.0.1", servername: "localhost", port, path, ca }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> });
      });
    });
    request.on("error", reject);
    request.end();
  });
}

describe("browser → wss:// bridge → mTLS → core → PostgreSQL", () => {
  it("a send is acknowledged, stored, and reaches a subscriber, with TLS on every hop", async () => {
    const on = await bridge();
    const alice = await join(on, "tls-room", "alice");
    const bob = await join(on, "tls-room", "bob");
    const answer = await alice.request({ requestId: "s-1", request: { case: "send", value: { seq: 1n, body: "over TLS", clientMsgId: "tls-1" } } });
    expect(answer.kind.case).toBe("sendAck");
    const seq = answer.kind.case === "sendAck" ? (answer.kind.value.message?.seq ?? 0n) : 0n;
    expect((await messagesUpTo(bob, "tls-room", seq)).map((message) => message.body)).toContain("over TLS");
    expect(await stored("tls-1")).toEqual([{ sender: "alice", body: "over TLS" }]);
    expect(alice.socket.url).toMatch(/^wss:\/\//);
  });

  it("/readyz over https is ready: its health check reaches core with the same credentials", async () => {
    const on = await bridge();
    expect(await getJson(on.port, "/readyz")).toMatchObject({ status: 200, body: { status: "ready" } });
    expect(await getJson(on.port, "/healthz")).toMatchObject({ status: 200 });
  });

  it("openssl s_client completes a handshake with the bridge and shows its certificate", async () => {
    const on = await bridge();
    const { code, output } = await openssl(["s_client", "-connect", `127.0.0.1:${on.port}`, "-CAfile", pki.ca, "-servername", "localhost", "-verify_return_error", "-brief"]);
    expect(code).toBe(0);
    expect(output).toMatch(/CONNECTION ESTABLISHED/);
    expect(output).toMatch(/Peer certificate: CN = localhost/);
    expect(output).toMatch(/Verification: OK/);
  });
});

describe("core's mTLS against gRPC clients", () => {
  it("serves a client certificate from the CA; refuses none, another CA's and plaintext with UNAVAILABLE, storing nothing", async () => {
    const token = await mintToken(TEST_JWT_SECRET, "erin");
    const send = async (transport: Partial<ClientTransport>, clientMsgId: string) => {
      const chat = createClient(ChatService, core.core.address, { ...transport, headers: () => ({ authorization: `Bearer ${token}` }) });
      try {
        return await chat.sendMessage({ room: "tls-grpc", body: "hello", clientMsgId }, { timeoutMs: 5_000 });
      } finally {
        chat.close();
      }
    };
    expect((await send(bridgeLink(), "tls-grpc-ok")).message?.sender).toBe("erin");
    expect(await stored("tls-grpc-ok")).toHaveLength(1);
    const refusals = [
      ["tls-grpc-none", bridgeLink({})],
      ["tls-grpc-foreign", bridgeLink({ cert: pki.foreignClient.cert, key: pki.foreignClient.key })],
      ["tls-grpc-plain", {}],
    ] as const;
    for (const [clientMsgId, transport] of refusals) {
      const error = await rejection(send(transport, clientMsgId));
      expect(error.category, clientMsgId).toBe(ErrorCategory.UNAVAILABLE);
      expect(await stored(clientMsgId), clientMsgId).toEqual([]);
    }
  });
});

describe("a relay known by its client certificate", () => {
  it("without a token, the parley-bridge certificate is the relay: it may follow rooms, and acts as nobody; nothing is written", async () => {
    const identity = createClient(IdentityService, core.core.address, { ...bridgeLink() });
    const chat = createClient(ChatService, core.core.address, { ...bridgeLink() });
    try {
      expect(await identity.whoAmI({}, { timeoutMs: 5_000 })).toMatchObject({ user: "relay:parley-bridge", scopes: [ROOMS_RELAY_SCOPE] });
      const refused = await rejection(chat.sendMessage({ room: "tls-relay", body: "as the certificate", clientMsgId: "tls-relay-1" }, { timeoutMs: 5_000 }));
      expect(refused).toMatchObject({ category: ErrorCategory.PERMISSION_DENIED });
      expect(refused.message).toMatch(/a relay identity \(rooms:relay\) does not act by itself/);
      expect(await stored("tls-relay-1")).toEqual([]);
    } finally {
      identity.close();
      chat.close();
    }
  });

  it("a certificate from the CA whose name is not a relay name is no identity: UNAUTHENTICATED without a token", async () => {
    const serverCertificates = certificatesOf({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca }, "grpc listener", new LogCapture().logger);
    const other = await startTestCore(db, { tls: serverCertificates, clientTransport: bridgeLink(), relayCertificateNames: ["another-bridge"] });
    const identity = createClient(IdentityService, other.core.address, { ...bridgeLink() });
    try {
      expect(await rejection(identity.whoAmI({}, { timeoutMs: 5_000 }))).toMatchObject({ category: ErrorCategory.UNAUTHENTICATED });
    } finally {
      identity.close();
      await other.stop();
    }
  });
});

/** Opens a TCP connection to `port` that never finishes a handshake (`partial`: the first bytes of one); resolves with how long until the server closed it. */
function stalledHandshake(port: number, partial: boolean): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connectTcp(port, "127.0.0.1", () => {
      // A TLS record header announcing a ClientHello that never comes.
      if (partial) socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    });
    // Bounded: a socket still open well past the timeout is the failure.
    const giveUp = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS + 5_000);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(giveUp);
      resolve(Date.now() - started);
    });
  });
}

describe("handshakes that never finish", () => {
  it("a TCP connection that does not complete its handshake is cut after the handshake timeout, on core's port and on the bridge's", async () => {
    const on = await bridge();
    const from = bridgeLogs.lines.length;
    const corePort = Number(core.core.address.split(":").pop());
    const closedAfter = await Promise.all([stalledHandshake(corePort, false), stalledHandshake(corePort, true), stalledHandshake(on.port, false), stalledHandshake(on.port, true)]);
    for (const ms of closedAfter) {
      expect(ms).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 500);
      expect(ms).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 3_000);
    }
    expect(bridgeLogs.lines.slice(from).filter((line) => line.listener === "http listener" && line.code === "ERR_TLS_HANDSHAKE_TIMEOUT")).toHaveLength(2);
  });
});

describe("plaintext where TLS is expected", () => {
  it("a plaintext ws:// client at the wss:// bridge fails, and the bridge logs a plaintext client on its TLS port", async () => {
    const on = await bridge();
    const from = bridgeLogs.lines.length;
    const token = await mintToken(TEST_JWT_SECRET, "mallory");
    await expect(WsTestClient.connect(`http://127.0.0.1:${on.port}`, "/ws/chat/tls-room", { token, timeoutMs: 3_000 })).rejects.toThrow();
    await eventually(() => bridgeLogs.lines.slice(from).some((line) => line.listener === "http listener" && line.level === "warn"), 5_000, "the failed handshake is logged");
    expect(bridgeLogs.lines.slice(from).find((line) => line.listener === "http listener")).toMatchObject({
      level: "warn",
      category: "VALIDATION",
      code: "ERR_SSL_HTTP_REQUEST",
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown,
      msg: "not a TLS handshake: plaintext client on a TLS port? Connect with TLS (https://, wss://, gRPC TLS credentials)",
    });
  });

  it("a plaintext bridge in front of the TLS core is not ready, says to set PARLEY_CORE_TLS_CA, and stores nothing", async () => {
    const from = bridgeLogs.lines.length;
    const on = await bridge({ coreTransport: undefined });
    await eventually(() => bridgeLogs.lines.slice(from).some((line) => String(line.msg).startsWith("core not ready")), 10_000, "the failed probe is logged");
    expect(bridgeLogs.lines.slice(from).find((line) => String(line.msg).startsWith("core not ready"))).toMatchObject({
      level: "warn",
      category: "UNAVAILABLE",
      msg: expect.stringContaining("is the server serving TLS? The bridge connects to core with TLS when PARLEY_CORE_TLS_CA is set") as unknown,
    });
    expect(await getJson(on.port, "/readyz")).toMatchObject({ status: 503, body: { status: "not ready" } });
    // Core verifies each browser's token: no link, no new connection (503; the hint is the log line's).
    const refused = await WsTestClient.refusal(`https://localhost:${on.port}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, "alice"), ca });
    expect(refused).toMatchObject({ status: 503, body: { category: "UNAVAILABLE" } });
  });

  it("a bridge without a client certificate is refused by the mTLS core: it says to set PARLEY_CORE_TLS_CERT/KEY, and stores nothing", async () => {
    const from = bridgeLogs.lines.length;
    const on = await bridge({ coreTransport: bridgeLink({}) });
    await eventually(() => bridgeLogs.lines.slice(from).some((line) => String(line.msg).startsWith("core not ready")), 10_000, "the failed probe is logged");
    expect(bridgeLogs.lines.slice(from).find((line) => String(line.msg).startsWith("core not ready"))?.msg).toMatch(
      /certificate required.*set PARLEY_CORE_TLS_CERT and PARLEY_CORE_TLS_KEY/s,
    );
    const refused = await WsTestClient.refusal(`https://localhost:${on.port}`, "/ws", { token: await mintToken(TEST_JWT_SECRET, "alice"), ca });
    expect(refused).toMatchObject({ status: 503, body: { category: "UNAVAILABLE" } });
  });
});

describe("the bridge's certificate reload", () => {
  it("new connections get the new certificate; open WebSockets stay", async () => {
    const files = pki.issue({ name: "bridge-rotating", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
    const certificates = listenerCertificates(files);
    const on = await bridge({ tls: certificates });
    const open = await join(on, "tls-reload", "carol");
    const before = await servedFingerprint(on.port);
    pki.issue({ name: "bridge-rotating", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
    expect(certificates.reload()).toBe(true);
    expect(await servedFingerprint(on.port)).not.toBe(before);
    expect(open.isOpen).toBe(true);
    const answer = await open.request({ requestId: "r-1", request: { case: "send", value: { seq: 1n, body: "still here", clientMsgId: "tls-reload-1" } } });
    expect(answer.kind.case).toBe("sendAck");
  });
});

function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ port, host: "127.0.0.1", servername: "localhost", ca }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once("error", reject);
  });
}

function openssl(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(OPENSSL, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, output: `${stdout}${stderr}` });
    });
    child.stdin?.end();
  });
}

describe("parley core and parley bridge configured from the environment", () => {
  const processes: ParleyProcess[] = [];

  afterAll(async () => {
    for (const child of processes) await child.stop();
  });

  it("serve TLS and mTLS end to end, and reload their certificates on SIGHUP", { timeout: 60_000 }, async () => {
    const coreProcess = spawnParley("core", {
      DATABASE_URL: db.url,
      PARLEY_JWT_SECRET: TEST_JWT_SECRET,
      PARLEY_GRPC_ADDR: "127.0.0.1:0",
      PARLEY_GRPC_TLS_CERT: pki.server.cert,
      PARLEY_GRPC_TLS_KEY: pki.server.key,
      PARLEY_GRPC_TLS_CLIENT_CA: pki.ca,
      PARLEY_GRPC_TLS_RELAY_NAMES: "parley-bridge",
    });
    processes.push(coreProcess);
    const serving = await coreProcess.waitFor((line) => line.msg === "core serving");
    expect(serving.tls).toBe("mutual");
    // No key and no token: the bridge is known to core by its client certificate.
    const bridgeProcess = spawnParley("bridge", {
      PARLEY_JWT_SECRET: undefined,
      PARLEY_BRIDGE_TOKEN: undefined,
      PARLEY_BRIDGE_TOKEN_FILE: undefined,
      PARLEY_HTTP_ADDR: "127.0.0.1:0",
      PARLEY_CORE_ADDR: String(serving.grpc),
      PARLEY_HTTP_TLS_CERT: pki.server.cert,
      PARLEY_HTTP_TLS_KEY: pki.server.key,
      PARLEY_CORE_TLS_CA: pki.ca,
      PARLEY_CORE_TLS_CERT: pki.client.cert,
      PARLEY_CORE_TLS_KEY: pki.client.key,
      PARLEY_CORE_TLS_SERVER_NAME: "localhost",
    });
    processes.push(bridgeProcess);
    const bridgeServing = await bridgeProcess.waitFor((line) => line.msg === "bridge serving");
    expect(bridgeServing.tls).toBe(true);
    await bridgeProcess.waitFor((line) => line.msg === "core is serving");
    const port = Number(String(bridgeServing.http).split(":").pop());
    const client = await WsTestClient.connect(`https://localhost:${port}`, "/ws/chat/tls-env", { token: await mintToken(TEST_JWT_SECRET, "dave"), ca });
    clients.push(client);
    await client.waitFor((frame) => frame.requestId === "" && frame.kind.case === "caughtUp", { what: "caught_up" });
    const answer = await client.request({ requestId: "e-1", request: { case: "send", value: { seq: 1n, body: "from the environment", clientMsgId: "tls-env-1" } } });
    expect(answer.kind.case).toBe("sendAck");
    expect(await stored("tls-env-1")).toEqual([{ sender: "dave", body: "from the environment" }]);

    coreProcess.child.kill("SIGHUP");
    bridgeProcess.child.kill("SIGHUP");
    await coreProcess.waitFor((line) => line.msg === "SIGHUP: reloading certificates");
    await bridgeProcess.waitFor((line) => line.msg === "SIGHUP: reloading certificates");
    // Still running (SIGHUP did not end them), and still serving.
    expect(coreProcess.child.exitCode).toBeNull();
    expect(await getJson(port, "/readyz")).toMatchObject({ status: 200 });
  });

  it("parley serve refuses a TLS core without PARLEY_CORE_TLS_CA for its own bridge", async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ["bin/parley.js", "serve"],
        { env: { ...process.env, DATABASE_URL: db.url, PARLEY_JWT_SECRET: TEST_JWT_SECRET, PARLEY_GRPC_TLS_CERT: pki.server.cert, PARLEY_GRPC_TLS_KEY: pki.server.key } },
        (error, _stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stderr });
        },
      );
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/PARLEY_CORE_TLS_CA is required by parley serve when PARLEY_GRPC_TLS_CERT is set/);
  });
});
