import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { loadConfig } from "../../src/runtime/config.js";
import type { PeerCertificate, ServerInterceptor } from "../../src/runtime/grpc/call-context.js";
import { tlsTransport } from "../../src/runtime/grpc/channel-credentials.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { bindService, type RunningGrpcServer, startGrpcServer } from "../../src/runtime/grpc/grpc-server.js";
import type { TlsCertificates } from "../../src/runtime/tls/certificates.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { configProblems, rejection } from "../support/assertions.js";
import { certificatesOf, createTestPki, OPENSSL, type TestPki } from "../support/certificates.js";
import { LogCapture } from "../support/logs.js";
import { eventually } from "../support/ws-client.js";

const run = promisify(execFile);

let pki: TestPki;

beforeAll(() => {
  pki = createTestPki();
});

afterAll(() => {
  pki.remove();
});

describe("TLS configuration", () => {
  it("reads every TLS variable, the files at start, and never prints a key", () => {
    const config = loadConfig({
      PARLEY_HTTP_TLS_CERT: pki.server.cert,
      PARLEY_HTTP_TLS_KEY: pki.server.key,
      PARLEY_GRPC_TLS_CERT: pki.server.cert,
      PARLEY_GRPC_TLS_KEY: pki.server.key,
      PARLEY_GRPC_TLS_CLIENT_CA: pki.ca,
      PARLEY_CORE_TLS_CA: pki.ca,
      PARLEY_CORE_TLS_CERT: pki.client.cert,
      PARLEY_CORE_TLS_KEY: pki.client.key,
      PARLEY_CORE_TLS_SERVER_NAME: "localhost",
      PARLEY_TLS_WATCH_MS: "5000",
    });
    expect(config.tls.http?.cert.path).toBe(pki.server.cert);
    expect(config.tls.grpc?.clientCa?.variable).toBe("PARLEY_GRPC_TLS_CLIENT_CA");
    expect(config.tls.core).toMatchObject({ serverName: "localhost" });
    expect(config.tls.core?.key?.pem.equals(readFileSync(pki.client.key))).toBe(true);
    expect(config.tls.watchIntervalMs).toBe(5000);
    expect(JSON.stringify(config)).not.toMatch(/PRIVATE KEY|BEGIN/);
  });

  it("is plaintext everywhere by default, watching files every 30 s once TLS is on", () => {
    expect(loadConfig({}).tls).toEqual({ http: undefined, grpc: undefined, core: undefined, watchIntervalMs: 30_000 });
  });

  it("refuses half-configured pairs, naming the variable that is missing", () => {
    expect(configProblems({ PARLEY_HTTP_TLS_CERT: pki.server.cert })).toEqual([
      "PARLEY_HTTP_TLS_KEY is required when PARLEY_HTTP_TLS_CERT is set (a certificate and its key: both or neither)",
    ]);
    expect(configProblems({ PARLEY_GRPC_TLS_KEY: pki.server.key })).toEqual([
      "PARLEY_GRPC_TLS_CERT is required when PARLEY_GRPC_TLS_KEY is set (a certificate and its key: both or neither)",
    ]);
    expect(configProblems({ PARLEY_GRPC_TLS_CLIENT_CA: pki.ca })).toEqual([
      "PARLEY_GRPC_TLS_CLIENT_CA needs PARLEY_GRPC_TLS_CERT and PARLEY_GRPC_TLS_KEY: client certificates are checked during a TLS handshake",
    ]);
    expect(configProblems({ PARLEY_CORE_TLS_CA: pki.ca, PARLEY_CORE_TLS_CERT: pki.client.cert })).toEqual([
      "PARLEY_CORE_TLS_KEY is required when PARLEY_CORE_TLS_CERT is set (a certificate and its key: both or neither)",
    ]);
    expect(configProblems({ PARLEY_CORE_TLS_CERT: pki.client.cert, PARLEY_CORE_TLS_KEY: pki.client.key, PARLEY_CORE_TLS_SERVER_NAME: "core.internal" })).toEqual([
      "PARLEY_CORE_TLS_CERT needs PARLEY_CORE_TLS_CA: without it the link to core is plaintext",
      "PARLEY_CORE_TLS_KEY needs PARLEY_CORE_TLS_CA: without it the link to core is plaintext",
      "PARLEY_CORE_TLS_SERVER_NAME needs PARLEY_CORE_TLS_CA: without it the link to core is plaintext",
    ]);
  });

  it("refuses unreadable and non-PEM files at start, naming the variable and the path", () => {
    const missing = `${pki.dir}/does-not-exist.pem`;
    const text = pki.file("notes.txt", "not a certificate\n");
    const [unreadable] = configProblems({ PARLEY_CORE_TLS_CA: missing });
    expect(unreadable).toMatch(new RegExp(`^PARLEY_CORE_TLS_CA: cannot read ${missing} \\(ENOENT`));
    expect(configProblems({ PARLEY_CORE_TLS_CA: text })).toEqual([`PARLEY_CORE_TLS_CA: ${text} is not a PEM file (no "-----BEGIN ...-----" block); expected a PEM certificate`]);
    expect(configProblems({ PARLEY_CORE_TLS_CA: pki.dir })[0]).toMatch(/^PARLEY_CORE_TLS_CA: cannot read .*EISDIR/);
  });

  it("refuses a key where a certificate belongs, and the reverse", () => {
    expect(configProblems({ PARLEY_GRPC_TLS_CERT: pki.server.key, PARLEY_GRPC_TLS_KEY: pki.server.cert })).toEqual([
      `PARLEY_GRPC_TLS_CERT: ${pki.server.key} holds a PEM "PRIVATE KEY" where certificates were expected`,
      `PARLEY_GRPC_TLS_KEY: ${pki.server.cert} holds no private key; expected one PEM private key`,
    ]);
  });

  it("refuses a key that is not the certificate's", () => {
    expect(configProblems({ PARLEY_HTTP_TLS_CERT: pki.server.cert, PARLEY_HTTP_TLS_KEY: pki.client.key })).toEqual([
      `PARLEY_HTTP_TLS_KEY: ${pki.client.key} is not the private key of the certificate in PARLEY_HTTP_TLS_CERT (${pki.server.cert})`,
    ]);
  });

  it("refuses an encrypted key (parley has no passphrase to open it)", async () => {
    const encrypted = `${pki.dir}/encrypted.key`;
    await run(OPENSSL, ["pkcs8", "-topk8", "-in", pki.server.key, "-out", encrypted, "-v2", "aes-256-cbc", "-passout", "pass:secret"]);
    expect(configProblems({ PARLEY_HTTP_TLS_CERT: pki.server.cert, PARLEY_HTTP_TLS_KEY: encrypted })).toEqual([
      `PARLEY_HTTP_TLS_KEY: ${encrypted} holds an encrypted private key (not supported: store it unencrypted, readable by parley only); expected one PEM private key`,
    ]);
  });

  it("refuses a server name no certificate could carry, and a negative watch interval", () => {
    expect(configProblems({ PARLEY_CORE_TLS_CA: pki.ca, PARLEY_CORE_TLS_SERVER_NAME: "not a name" })).toEqual([
      "PARLEY_CORE_TLS_SERVER_NAME must be a DNS name or an IP address that core's certificate carries, e.g. core.internal",
    ]);
    expect(configProblems({ PARLEY_TLS_WATCH_MS: "-1" })[0]).toMatch(/^PARLEY_TLS_WATCH_MS /);
  });
});

/** ChatService whose sendMessage answers with the client certificate the handler sees; counts the calls it served. */
function certificateEcho(served: { calls: number }) {
  const refuse = () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by this test"));
  return bindService(ChatService, {
    sendMessage: (_request, context) => {
      served.calls += 1;
      return Promise.resolve({ message: { body: JSON.stringify(context.peerCertificate ?? null) } });
    },
    sendStream: refuse,
    sendBatches: refuse,
    listMessages: refuse,
    listRoomEvents: refuse,
    subscribe: refuse,
    markRead: refuse,
  });
}

interface TlsServer {
  readonly server: RunningGrpcServer;
  readonly logs: LogCapture;
  readonly served: { calls: number };
  /** What the interceptor saw, call by call. */
  readonly seen: (PeerCertificate | undefined)[];
  readonly certificates: TlsCertificates | undefined;
}

async function startServer(tls: { cert: string; key: string; ca?: string } | undefined): Promise<TlsServer> {
  const logs = new LogCapture("debug");
  const served = { calls: 0 };
  const seen: (PeerCertificate | undefined)[] = [];
  const watch: ServerInterceptor = (next) => (context) => {
    seen.push(context.peerCertificate);
    return next(context);
  };
  const certificates = tls === undefined ? undefined : certificatesOf(tls, "grpc listener", logs.logger);
  const server = await startGrpcServer({
    address: "127.0.0.1:0",
    services: [certificateEcho(served)],
    interceptors: [watch],
    tls: certificates === undefined ? undefined : { certificates, logger: logs.logger },
  });
  return { server, logs, served, seen, certificates };
}

/** A client of `server` trusting `ca`, with the client certificate given (if any); `serverName` false checks the address's host. */
function clientOf(server: TlsServer, tls: { ca: string; cert?: string; key?: string } | undefined, serverName: string | false = "localhost") {
  const transport = tls === undefined ? {} : tlsTransport(certificatesOf(tls, "core link", server.logs.logger), serverName === false ? undefined : serverName);
  return createClient(ChatService, server.server.address, transport);
}

async function echoOf(server: TlsServer, tls: { ca: string; cert?: string; key?: string } | undefined, serverName?: string | false): Promise<unknown> {
  const client = clientOf(server, tls, serverName);
  try {
    const answer = await client.sendMessage({ room: "r", body: "hi", clientMsgId: "m" }, { timeoutMs: 5_000 });
    return JSON.parse(answer.message?.body ?? "null");
  } finally {
    client.close();
  }
}

async function refusalOf(server: TlsServer, tls: { ca: string; cert?: string; key?: string } | undefined, serverName?: string | false): Promise<ParleyError> {
  const client = clientOf(server, tls, serverName);
  try {
    return await rejection(client.sendMessage({ room: "r", body: "hi", clientMsgId: "m" }, { timeoutMs: 5_000 }));
  } finally {
    client.close();
  }
}

function warnings(logs: LogCapture): string[] {
  return logs.lines.filter((line) => line.level === "warn").map((line) => String(line.msg));
}

describe("core's gRPC listener with mTLS", () => {
  let mutual: TlsServer;

  beforeAll(async () => {
    mutual = await startServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca });
  });

  afterAll(async () => {
    await mutual.server.shutdown(500);
  });

  it("serves a client whose certificate the client CA signed; handler and interceptor see its CN and DNS names", async () => {
    const expected = { commonName: "parley-bridge", dnsNames: ["bridge.parley.test"] };
    const before = mutual.seen.length;
    expect(await echoOf(mutual, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).toEqual(expected);
    expect(mutual.seen.slice(before)).toEqual([expected]);
  });

  it("checks core's certificate against the address's host when no server name is given", async () => {
    // 127.0.0.1, which the server certificate carries as an IP address.
    expect(await echoOf(mutual, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, false)).toMatchObject({ commonName: "parley-bridge" });
  });

  it("refuses a client without a certificate in the handshake: UNAVAILABLE saying what to set, a log line saying why, no handler ran", async () => {
    const calls = mutual.served.calls;
    const lines = mutual.logs.lines.length;
    const error = await refusalOf(mutual, { ca: pki.ca });
    expect(error.category).toBe(ErrorCategory.UNAVAILABLE);
    expect(error.message).toMatch(/certificate required.*set PARLEY_CORE_TLS_CERT and PARLEY_CORE_TLS_KEY/s);
    await eventually(() => mutual.logs.lines.slice(lines).some((line) => line.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"), 5_000, "the refusal is logged");
    expect(mutual.logs.lines.slice(lines).find((line) => line.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE")).toMatchObject({
      level: "warn",
      category: "UNAUTHENTICATED",
      listener: "grpc listener",
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown,
      msg: "the client sent no certificate; this listener requires one signed by the CA in TEST_CA",
    });
    expect(mutual.served.calls).toBe(calls);
  });

  it("refuses a client certificate from another CA (same CN): UNAVAILABLE, the refusal logged with the peer, no handler ran", async () => {
    const calls = mutual.served.calls;
    const lines = mutual.logs.lines.length;
    const error = await refusalOf(mutual, { ca: pki.ca, cert: pki.foreignClient.cert, key: pki.foreignClient.key });
    expect(error.category).toBe(ErrorCategory.UNAVAILABLE);
    expect(error.message).toMatch(/does it accept this client certificate \(PARLEY_CORE_TLS_CERT/);
    await eventually(() => mutual.logs.lines.slice(lines).some((line) => String(line.msg).startsWith("client certificate refused")), 5_000, "the refusal is logged");
    expect(mutual.logs.lines.slice(lines).find((line) => String(line.msg).startsWith("client certificate refused"))).toMatchObject({
      level: "warn",
      category: "UNAUTHENTICATED",
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown,
      msg: expect.stringMatching(/^client certificate refused \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): it must be signed by the CA in TEST_CA$/) as unknown,
    });
    expect(mutual.served.calls).toBe(calls);
  });

  it("a plaintext client: UNAVAILABLE asking whether the server serves TLS; the listener logs a plaintext client on its TLS port", async () => {
    const calls = mutual.served.calls;
    const lines = mutual.logs.lines.length;
    const error = await refusalOf(mutual, undefined);
    expect(error.category).toBe(ErrorCategory.UNAVAILABLE);
    expect(error.message).toMatch(/is the server serving TLS\? The bridge connects to core with TLS when PARLEY_CORE_TLS_CA is set/);
    await eventually(() => mutual.logs.lines.slice(lines).some((line) => line.code === "ERR_SSL_WRONG_VERSION_NUMBER"), 5_000, "the plaintext client is logged");
    expect(mutual.logs.lines.slice(lines).find((line) => line.code === "ERR_SSL_WRONG_VERSION_NUMBER")).toMatchObject({
      level: "warn",
      category: "VALIDATION",
      msg: expect.stringContaining("plaintext client on a TLS port?") as unknown,
    });
    expect(mutual.served.calls).toBe(calls);
  });

  it("refuses core's certificate when the client trusts another CA, or checks a name it does not carry", async () => {
    const untrusted = await refusalOf(mutual, { ca: pki.otherCa, cert: pki.client.cert, key: pki.client.key });
    expect(untrusted.category).toBe(ErrorCategory.UNAVAILABLE);
    expect(untrusted.message).toMatch(/does not verify against PARLEY_CORE_TLS_CA/);
    const misnamed = await refusalOf(mutual, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, "core.internal");
    expect(misnamed.message).toMatch(/does not carry the host of the address.*PARLEY_CORE_TLS_SERVER_NAME/);
  });

  it("openssl s_client: the handshake with the client certificate shows core's certificate; without one, core refuses", async () => {
    const args = ["s_client", "-connect", mutual.server.address, "-CAfile", pki.ca, "-servername", "localhost", "-alpn", "h2", "-verify_return_error", "-brief"];
    const accepted = await openssl([...args, "-cert", pki.client.cert, "-key", pki.client.key]);
    expect(accepted.code).toBe(0);
    expect(accepted.output).toMatch(/CONNECTION ESTABLISHED/);
    expect(accepted.output).toMatch(/Peer certificate: CN = localhost/);
    expect(accepted.output).toMatch(/Verification: OK/);
    // -ign_eof: wait for what core says after the handshake (TLS 1.3 sends the refusal then).
    const refused = await openssl([...args, "-ign_eof"]);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/alert certificate required/);
  });

  it("buf curl (a foreign gRPC client) lists the services over mTLS", async () => {
    await mutual.server.reflectionReady;
    const { stdout } = await run("npx", [
      "buf", "curl", "--protocol", "grpc", "--cacert", pki.ca, "--cert", pki.client.cert, "--key", pki.client.key,
      "--servername", "localhost", "--list-services", `https://${mutual.server.address}`,
    ]);
    expect(stdout.trim().split("\n")).toContain("parley.v1.ChatService");
  });
});

/** Runs openssl with stdin closed; resolves with its exit code and everything it printed. */
function openssl(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(OPENSSL, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, output: `${stdout}${stderr}` });
    });
    child.stdin?.end();
  });
}

describe("TLS without a client CA, and plaintext", () => {
  it("serves any TLS client, with no peer certificate in the call context", async () => {
    const tlsOnly = await startServer({ cert: pki.server.cert, key: pki.server.key });
    try {
      expect(await echoOf(tlsOnly, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).toBeNull();
      expect(await echoOf(tlsOnly, { ca: pki.ca })).toBeNull();
      expect(tlsOnly.seen).toEqual([undefined, undefined]);
    } finally {
      await tlsOnly.server.shutdown(500);
    }
  });

  it("a TLS client at a plaintext port says the server does not speak TLS", async () => {
    const plain = await startServer(undefined);
    try {
      const error = await refusalOf(plain, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key });
      expect(error.category).toBe(ErrorCategory.UNAVAILABLE);
      expect(error.message).toMatch(/wrong version number.*the server does not speak TLS.*PARLEY_GRPC_TLS_CERT/s);
      expect(plain.served.calls).toBe(0);
      // And plaintext to plaintext, as before, with no peer certificate.
      expect(await echoOf(plain, undefined)).toBeNull();
      expect(plain.seen).toEqual([undefined]);
    } finally {
      await plain.server.shutdown(500);
    }
  });
});

describe("failed handshakes in the log", () => {
  it("logs the first few at warn, says when it demotes, and the rest go to debug", async () => {
    const target = await startServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca });
    try {
      const port = target.server.port;
      for (let i = 0; i < 8; i++) {
        await new Promise<void>((resolve) => {
          const socket = connectTcp(port, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
          socket.on("error", () => undefined);
          socket.on("close", () => {
            resolve();
          });
        });
      }
      await eventually(() => target.logs.lines.filter((line) => line.code === "ERR_SSL_HTTP_REQUEST").length === 8, 5_000, "every handshake failure is logged");
      const failures = target.logs.lines.filter((line) => line.code === "ERR_SSL_HTTP_REQUEST");
      expect(failures.map((line) => line.level)).toEqual(["warn", "warn", "warn", "warn", "warn", "debug", "debug", "debug"]);
      expect(failures[4]?.note).toMatch(/further ones are logged at debug/);
      expect(failures[0]?.msg).toMatch(/plaintext client on a TLS port\?/);
    } finally {
      await target.server.shutdown(500);
    }
  });
});

/** The fingerprint of the certificate the listener at `port` presents now. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ port, host: "127.0.0.1", servername: "localhost", ca: readFileSync(pki.ca), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key), ALPNProtocols: ["h2"] }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once("error", reject);
  });
}

describe("certificate reload", () => {
  it("new connections get the rotated certificate; a broken set is refused and the current one stays", async () => {
    const rotated = pki.issue({ name: "rotating", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
    const target = await startServer({ ...rotated, ca: pki.ca });
    try {
      const first = await servedFingerprint(target.server.port);
      pki.issue({ name: "rotating", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
      expect(target.certificates?.reload()).toBe(true);
      const second = await servedFingerprint(target.server.port);
      expect(second).not.toBe(first);
      expect(target.logs.find({ msg: "certificates reloaded", fingerprint256: second })).toHaveLength(1);
      // A half-done rotation (the key of another certificate) changes nothing.
      pki.file("rotating.key", readFileSync(pki.client.key));
      expect(target.certificates?.reload()).toBe(false);
      expect(warnings(target.logs)).toContain("certificate reload refused: the files do not form a valid set; the current certificates stay in use");
      expect(await servedFingerprint(target.server.port)).toBe(second);
      expect(await echoOf(target, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).toMatchObject({ commonName: "parley-bridge" });
    } finally {
      await target.server.shutdown(500);
    }
  });

  it("a file change is picked up by the watch", async () => {
    const rotated = pki.issue({ name: "watched", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
    const target = await startServer({ ...rotated, ca: pki.ca });
    target.certificates?.watch(50);
    try {
      const first = await servedFingerprint(target.server.port);
      pki.issue({ name: "watched", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" });
      await eventually(async () => (await servedFingerprint(target.server.port)) !== first, 10_000, "the new certificate is served");
    } finally {
      target.certificates?.close();
      await target.server.shutdown(500);
    }
  });
});
