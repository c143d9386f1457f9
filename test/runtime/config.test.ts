import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { loadConfig, requireTokenRules } from "../../src/runtime/config.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { createLogger, logError } from "../../src/runtime/logger.js";
import { configProblems } from "../support/assertions.js";

describe("config", () => {
  it("has defaults for everything optional", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      databaseUrl: undefined,
      grpcAddress: "127.0.0.1:50051",
      httpAddress: "127.0.0.1:8080",
      coreAddress: "127.0.0.1:50051",
      jwtSecret: undefined,
      webhook: undefined,
      logLevel: "info",
      migrateOnStart: false,
      implicitRooms: false,
    });
  });

  it("reads every variable", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
      PARLEY_GRPC_ADDR: "0.0.0.0:0",
      PARLEY_HTTP_ADDR: "[::1]:9000",
      PARLEY_CORE_ADDR: "core.internal:50051",
      PARLEY_JWT_SECRET: "x".repeat(32),
      PARLEY_WEBHOOK_URL: "https://hooks.example.com/p",
      PARLEY_WEBHOOK_SECRET: "s".repeat(16),
      PARLEY_LOG_LEVEL: "debug",
      PARLEY_MIGRATE: "1",
      PARLEY_IMPLICIT_ROOMS: "1",
    });
    expect(config.coreAddress).toBe("core.internal:50051");
    expect(config.webhook).toEqual({ url: "https://hooks.example.com/p", secret: ["s".repeat(16)], graceMs: 5000, retry: { maxAttempts: 100, horizonMs: 86_400_000, backoffMaxMs: 3_600_000 } });
    expect(config.migrateOnStart).toBe(true);
    expect(config.implicitRooms).toBe(true);
    expect(requireTokenRules(config).hmacKeys).toEqual([{ secret: "x".repeat(32) }]);
  });

  it("names each bad variable and says what is expected", () => {
    const found = configProblems({
      DATABASE_URL: "mysql://nope",
      PARLEY_GRPC_ADDR: "localhost",
      PARLEY_HTTP_ADDR: "127.0.0.1:99999",
      PARLEY_JWT_SECRET: "short",
      PARLEY_LOG_LEVEL: "loud",
      PARLEY_WEBHOOK_URL: "ftp://x",
    });
    const text = found.join("\n");
    for (const name of ["DATABASE_URL", "PARLEY_GRPC_ADDR", "PARLEY_HTTP_ADDR", "PARLEY_JWT_SECRET", "PARLEY_LOG_LEVEL", "PARLEY_WEBHOOK_URL", "PARLEY_WEBHOOK_SECRET"]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/PARLEY_GRPC_ADDR must be host:port/);
    expect(text).toMatch(/PARLEY_WEBHOOK_SECRET is required when PARLEY_WEBHOOK_URL is set/);
  });

  it("reads PARLEY_WEBHOOK_SECRET as a comma-separated list for rotation, each secret at least 16 characters", () => {
    const base = { PARLEY_WEBHOOK_URL: "https://hooks.example.com/p" };
    const rotating = loadConfig({ ...base, PARLEY_WEBHOOK_SECRET: `${"o".repeat(16)}, ${"n".repeat(20)}` });
    expect(rotating.webhook?.secret).toEqual(["o".repeat(16), "n".repeat(20)]);
    for (const bad of [`${"o".repeat(16)},short`, `${"o".repeat(16)},`, `${"o".repeat(16)},${"o".repeat(16)}`]) {
      const found = configProblems({ ...base, PARLEY_WEBHOOK_SECRET: bad }).join("\n");
      expect(found).toMatch(/^PARLEY_WEBHOOK_SECRET (must be at least 16 characters per secret|lists the same secret twice)/m);
      // The refusal never echoes a secret.
      expect(found).not.toContain("o".repeat(16));
    }
  });

  it("reads PARLEY_ALLOWED_ORIGINS as exact origins or `*` alone, naming a bad entry", () => {
    expect(loadConfig({}).allowedOrigins).toBeUndefined();
    expect(loadConfig({ PARLEY_ALLOWED_ORIGINS: "https://App.example.com, http://localhost:3000" }).allowedOrigins).toEqual(["https://app.example.com", "http://localhost:3000"]);
    expect(loadConfig({ PARLEY_ALLOWED_ORIGINS: "*" }).allowedOrigins).toBe("*");
    for (const [bad, expected] of [
      ["https://app.example.com/", /"https:\/\/app\.example\.com\/" is not an origin/],
      ["app.example.com", /"app\.example\.com" is not an origin/],
      ["https://app.example.com:443", /no default port/],
      ["ftp://files.example.com", /is not an origin/],
      ["*,https://app.example.com", /must stand alone/],
      [" , ", /lists no origin/],
    ] as const) {
      expect(configProblems({ PARLEY_ALLOWED_ORIGINS: bad }).join("\n"), bad).toMatch(new RegExp(`^PARLEY_ALLOWED_ORIGINS .*${expected.source}`, "m"));
    }
  });

  it("treats empty variables as unset, but an empty DATABASE_URL is an error, not the development mode", () => {
    expect(loadConfig({ PARLEY_JWT_SECRET: "", PARLEY_CORE_ADDR: "" }).jwtSecret).toBeUndefined();
    expect(() => loadConfig({ DATABASE_URL: "" })).toThrow(/DATABASE_URL is set but empty/);
    expect(() => loadConfig({ DATABASE_URL: "  " })).toThrow(/DATABASE_URL is set but empty/);
  });

  it("marks production from PARLEY_ENV or NODE_ENV", () => {
    expect(loadConfig({}).productionMarked).toBe(false);
    expect(loadConfig({ NODE_ENV: "production" }).productionMarked).toBe(true);
    expect(loadConfig({ PARLEY_ENV: "production" }).productionMarked).toBe(true);
    expect(loadConfig({ NODE_ENV: "development" }).productionMarked).toBe(false);
  });

  it("reads the bridge's limits and trusted proxies; unset limits keep their defaults", () => {
    expect(loadConfig({})).toMatchObject({ limits: { connection: {}, admission: {} }, trustedProxies: [] });
    const config = loadConfig({
      PARLEY_WS_FRAMES_PER_SECOND: "200",
      PARLEY_WS_MAX_CONNECTIONS_PER_USER: "4",
      PARLEY_WS_SENDS_PER_SECOND_PER_USER: "10",
      PARLEY_HTTP_HEADERS_TIMEOUT_MS: "2000",
      PARLEY_TRUSTED_PROXIES: "10.0.0.0/8, loopback",
    });
    expect(config.limits).toEqual({ connection: { framesPerSecond: 200 }, admission: { maxConnectionsPerUser: 4, sendsPerSecondPerUser: 10, headersTimeoutMs: 2000 } });
    expect(config.trustedProxies).toEqual(["10.0.0.0/8", "loopback"]);
  });

  it("reads the bridge's sessions to core (1 to 64; the bridge's default when unset)", () => {
    expect(loadConfig({}).coreSessions).toBeUndefined();
    expect(loadConfig({ PARLEY_CORE_SESSIONS: "8" }).coreSessions).toBe(8);
    for (const bad of ["0", "65", "two"]) expect(configProblems({ PARLEY_CORE_SESSIONS: bad }).join("\n")).toMatch(/^PARLEY_CORE_SESSIONS /m);
  });

  it("reads how long core holds writes for an unreachable database, and how many (30 s and 50,000 by default)", () => {
    expect(loadConfig({}).databaseOutage).toEqual({ horizonMs: 30_000, maxHeld: 50_000 });
    expect(loadConfig({ PARLEY_DB_OUTAGE_HORIZON_MS: "0", PARLEY_DB_MAX_HELD_WRITES: "10" }).databaseOutage).toEqual({ horizonMs: 0, maxHeld: 10 });
    for (const [name, bad] of [["PARLEY_DB_OUTAGE_HORIZON_MS", "600001"], ["PARLEY_DB_OUTAGE_HORIZON_MS", "-1"], ["PARLEY_DB_MAX_HELD_WRITES", "0"], ["PARLEY_DB_MAX_HELD_WRITES", "lots"]] as const) {
      expect(configProblems({ [name]: bad }).join("\n")).toMatch(new RegExp(`^${name} `, "m"));
    }
  });

  it("names a bad limit, a bad proxy and a headers timeout longer than the request's", () => {
    const found = configProblems({ PARLEY_WS_MAX_CONNECTIONS_PER_USER: "0", PARLEY_WS_FRAME_BURST: "many", PARLEY_TRUSTED_PROXIES: "10.0.0.0/99" }).join("\n");
    expect(found).toMatch(/^PARLEY_WS_MAX_CONNECTIONS_PER_USER /m);
    expect(found).toMatch(/^PARLEY_WS_FRAME_BURST /m);
    expect(found).toMatch(/^PARLEY_TRUSTED_PROXIES must be IP addresses or CIDR ranges/m);
    expect(configProblems({ PARLEY_HTTP_HEADERS_TIMEOUT_MS: "20000" }).join("\n")).toContain("must not exceed PARLEY_HTTP_REQUEST_TIMEOUT_MS");
  });

  it("reads core's gRPC limits: per-caller stream caps and the HTTP/2 connection settings, each with a default", () => {
    expect(loadConfig({}).grpcStreamQuota).toEqual({ maxStreamsPerCaller: 128, maxSubscriptionsPerCaller: 64 });
    expect(loadConfig({}).grpcTransport).toEqual({ maxConcurrentStreams: 16_384, keepaliveTimeMs: 30_000, keepaliveTimeoutMs: 10_000, maxConnectionIdleMs: 300_000 });
    const set = loadConfig({
      PARLEY_GRPC_MAX_STREAMS_PER_CALLER: "500",
      PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: "400",
      PARLEY_GRPC_MAX_CONCURRENT_STREAMS: "100000",
      PARLEY_GRPC_KEEPALIVE_TIME_MS: "0",
      PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS: "5000",
      PARLEY_GRPC_MAX_CONNECTION_IDLE_MS: "0",
    });
    expect(set.grpcStreamQuota).toEqual({ maxStreamsPerCaller: 500, maxSubscriptionsPerCaller: 400 });
    expect(set.grpcTransport).toEqual({ maxConcurrentStreams: 100_000, keepaliveTimeMs: 0, keepaliveTimeoutMs: 5_000, maxConnectionIdleMs: 0 });

    const bad = configProblems({
      PARLEY_GRPC_MAX_STREAMS_PER_CALLER: "0",
      PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: "many",
      PARLEY_GRPC_MAX_CONCURRENT_STREAMS: "2147483648",
      PARLEY_GRPC_KEEPALIVE_TIME_MS: "500",
      PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS: "0",
      PARLEY_GRPC_MAX_CONNECTION_IDLE_MS: "-1",
    }).join("\n");
    for (const name of ["PARLEY_GRPC_MAX_STREAMS_PER_CALLER", "PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER", "PARLEY_GRPC_MAX_CONCURRENT_STREAMS", "PARLEY_GRPC_KEEPALIVE_TIME_MS", "PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS", "PARLEY_GRPC_MAX_CONNECTION_IDLE_MS"]) {
      expect(bad).toMatch(new RegExp(`^${name} `, "m"));
    }
    expect(bad).toMatch(/^PARLEY_GRPC_KEEPALIVE_TIME_MS must be 0 \(off\) or at least 1000 ms$/m);

    // Every subscription is a stream: a subscription cap above the stream cap is a mistake.
    expect(configProblems({ PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: "200" })).toEqual([
      "PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER (200) is more than PARLEY_GRPC_MAX_STREAMS_PER_CALLER (128): every subscription is also a stream",
    ]);
    expect(loadConfig({ PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: "128" }).grpcStreamQuota.maxSubscriptionsPerCaller).toBe(128);
  });

  it("asks for a key source by name when core needs one", () => {
    expect(() => requireTokenRules(loadConfig({}))).toThrow(/set PARLEY_JWKS_URL .* PARLEY_JWKS_FILE, PARLEY_JWT_KEYS .* or PARLEY_JWT_SECRET/);
  });
});

describe("logging", () => {
  it("writes one JSON line per error with its category, context and cause", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    });
    const logger = createLogger({ destination: sink }).child({ rpc: "/parley.v1.ChatService/SendMessage" });
    const error = new ParleyError(ErrorCategory.PERSISTENCE, "database: deadlock", {
      cause: new Error("deadlock detected"),
      context: { room: "lobby", seq: 5n },
    });
    logError(logger, error, { user: "alice", attempt: 2 });
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
    expect(line).toMatchObject({
      level: "error",
      category: "PERSISTENCE",
      rpc: "/parley.v1.ChatService/SendMessage",
      room: "lobby",
      seq: "5",
      user: "alice",
      attempt: 2,
      msg: "database: deadlock",
    });
    expect((line.err as { message: string }).message).toBe("deadlock detected");
  });
});
