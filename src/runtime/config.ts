import { readFileSync } from "node:fs";
import type { JSONWebKeySet } from "jose";
import { z } from "zod";
import { DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, type HmacKey, type TokenRules } from "./auth/key-sources.js";
import { DEFAULT_SERVER_TRANSPORT, type ServerTransport } from "./grpc/server-transport.js";
import { type AllowedOrigins, isLoopbackHost, parseAllowedOrigins } from "./http/request-origin.js";
import { DEFAULT_STREAM_QUOTA, type StreamQuotaLimits } from "./interceptors/stream-quota.js";
import { readTlsSettings, type TlsSettings } from "./tls/tls-settings.js";
import { LIMIT_ENV_SHAPE, limitSettings, type LimitSettings, trustedProxies } from "./limits/limit-env.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port, e.g. 127.0.0.1:50051 (port 0 picks a free port)")
  .refine((value) => Number(value.slice(value.lastIndexOf(":") + 1)) <= 65535, "port must be 0-65535");

const url = (protocols: readonly string[], example: string) =>
  z.string().refine((value) => {
    try {
      return protocols.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}, e.g. ${example}`);

const HMAC_MIN = 32;

/** `kid:secret,kid:secret` — HS256 keys by id, for a rotation with two keys at once. */
const hmacKeyList = z
  .string()
  .transform((value, context): HmacKey[] => {
    const keys: HmacKey[] = [];
    for (const entry of value.split(",").map((part) => part.trim()).filter((part) => part !== "")) {
      const colon = entry.indexOf(":");
      const kid = entry.slice(0, colon);
      const secret = entry.slice(colon + 1);
      if (colon < 1 || !/^[A-Za-z0-9._-]{1,64}$/.test(kid)) context.addIssue({ code: "custom", message: "must be kid:secret pairs separated by commas, kid of letters, digits, . _ -" });
      else if (secret.length < HMAC_MIN) context.addIssue({ code: "custom", message: `the secret of kid \`${kid}\` must be at least ${HMAC_MIN} characters` });
      else if (keys.some((key) => key.kid === kid)) context.addIssue({ code: "custom", message: `kid \`${kid}\` is given twice` });
      else keys.push({ kid, secret });
    }
    return keys;
  });

/** A key set fetched over the network must come over HTTPS; plain HTTP only from this machine. */
const jwksUrl = z.string().refine((value) => {
  try {
    const parsed = new URL(value);
    return parsed.protocol === "https:" || (parsed.protocol === "http:" && isLoopbackHost(parsed.hostname));
  } catch {
    return false;
  }
}, "must be an https:// URL (http:// only for a loopback host), e.g. https://id.example.com/realms/main/protocol/openid-connect/certs");

const commaList = z.string().transform((value) => value.split(",").map((part) => part.trim()).filter((part) => part !== ""));
// One secret, or several separated by commas while rotating: the sender
// signs with each, so receivers holding either verify.
const webhookSecrets = z
  .string()
  .transform((value) => value.split(",").map((secret) => secret.trim()))
  .refine((secrets) => secrets.every((secret) => secret.length >= 16), "must be at least 16 characters per secret (several are separated by commas)")
  .refine((secrets) => new Set(secrets).size === secrets.length, "lists the same secret twice");

const allowedOrigins = z.string().transform((value, context): AllowedOrigins => {
  try {
    return parseAllowedOrigins(value);
  } catch (error) {
    context.addIssue({ code: "custom", message: error instanceof Error ? error.message : String(error) });
    return z.NEVER;
  }
});

const count = (max: number) => z.coerce.number().int().min(1).max(max);
// 0 turns the timer off; anything else is at least a second: a setting in
// milliseconds that small is a unit mistake, not a wish.
const timerMs = z.coerce
  .number()
  .int()
  .min(0)
  .max(86_400_000)
  .refine((value) => value === 0 || value >= 1_000, "must be 0 (off) or at least 1000 ms");

const flag = z
  .enum(["1", "0", "true", "false", "yes", "no", ""])
  .transform((value) => value === "1" || value === "true" || value === "yes");

/** Every environment variable parley reads, with its default. */
const EnvSchema = z
  .object({
    DATABASE_URL: url(["postgres:", "postgresql:"], "postgres://user@127.0.0.1:5432/parley").optional(),
    PARLEY_GRPC_ADDR: hostPort.default("127.0.0.1:50051"),
    PARLEY_HTTP_ADDR: hostPort.default("127.0.0.1:8080"),
    PARLEY_CORE_ADDR: hostPort.optional(),
    PARLEY_METRICS_ADDR: hostPort.optional(),
    PARLEY_JWT_SECRET: z.string().min(HMAC_MIN, `must be at least ${HMAC_MIN} characters (HS256 key)`).optional(),
    PARLEY_JWT_KEYS: hmacKeyList.optional(),
    PARLEY_JWKS_URL: jwksUrl.optional(),
    PARLEY_JWKS_FILE: z.string().optional(),
    PARLEY_JWKS_CACHE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(600),
    PARLEY_JWKS_COOLDOWN_SECONDS: z.coerce.number().int().min(0).max(3_600).default(30),
    PARLEY_JWKS_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
    PARLEY_JWT_ISSUER: z.string().optional(),
    PARLEY_JWT_AUDIENCE: commaList.optional(),
    PARLEY_RELAY_SUBJECTS: commaList.optional(),
    PARLEY_BRIDGE_TOKEN: z.string().optional(),
    PARLEY_BRIDGE_TOKEN_FILE: z.string().optional(),
    PARLEY_JWT_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(60).max(31 * 86_400).default(DEFAULT_MAX_TOKEN_LIFETIME_SECONDS),
    PARLEY_WEBHOOK_URL: url(["http:", "https:"], "https://hooks.example.com/parley").optional(),
    PARLEY_WEBHOOK_SECRET: webhookSecrets.optional(),
    PARLEY_WEBHOOK_GRACE_MS: z.coerce.number().int().min(0).max(86_400_000).default(5_000),
    PARLEY_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10_000).default(100),
    PARLEY_WEBHOOK_RETRY_HORIZON_SECONDS: z.coerce.number().int().min(1).max(30 * 86_400).default(86_400),
    PARLEY_WEBHOOK_BACKOFF_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).default(3_600),
    PARLEY_DB_OUTAGE_HORIZON_MS: z.coerce.number().int().min(0).max(600_000).default(30_000),
    PARLEY_DB_MAX_HELD_WRITES: z.coerce.number().int().min(1).max(10_000_000).default(50_000),
    PARLEY_LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
    PARLEY_DATA_DIR: z.string().min(1).default(".parley-data"),
    PARLEY_MIGRATE: flag.default(false),
    PARLEY_GRPC_REFLECTION: flag.default(true),
    PARLEY_ALLOWED_ORIGINS: allowedOrigins.optional(),
    PARLEY_ENV: z.string().optional(),
    NODE_ENV: z.string().optional(),
    PARLEY_IMPLICIT_ROOMS: flag.default(false),
    // Transport security: PEM file paths, read and checked by readTlsSettings.
    PARLEY_HTTP_TLS_CERT: z.string().optional(),
    PARLEY_HTTP_TLS_KEY: z.string().optional(),
    PARLEY_GRPC_TLS_CERT: z.string().optional(),
    PARLEY_GRPC_TLS_KEY: z.string().optional(),
    PARLEY_GRPC_TLS_CLIENT_CA: z.string().optional(),
    PARLEY_GRPC_TLS_RELAY_NAMES: commaList.optional(),
    PARLEY_CORE_TLS_CA: z.string().optional(),
    PARLEY_CORE_TLS_CERT: z.string().optional(),
    PARLEY_CORE_TLS_KEY: z.string().optional(),
    PARLEY_CORE_TLS_SERVER_NAME: z.string().optional(),
    // The bridge's HTTP/2 sessions to core (its default when unset).
    PARLEY_CORE_SESSIONS: count(64).optional(),
    PARLEY_TLS_WATCH_MS: z.coerce.number().int().min(0).max(86_400_000).default(30_000),
    PARLEY_TRUSTED_PROXIES: trustedProxies.optional(),
    ...LIMIT_ENV_SHAPE,
    // Core's gRPC server: per-caller stream caps and HTTP/2 connection limits.
    PARLEY_GRPC_MAX_STREAMS_PER_CALLER: count(1_000_000).default(DEFAULT_STREAM_QUOTA.maxStreamsPerCaller),
    PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER: count(1_000_000).default(DEFAULT_STREAM_QUOTA.maxSubscriptionsPerCaller),
    // 2^31 - 1: the largest value of an HTTP/2 setting.
    PARLEY_GRPC_MAX_CONCURRENT_STREAMS: count(2_147_483_647).default(DEFAULT_SERVER_TRANSPORT.maxConcurrentStreams),
    PARLEY_GRPC_KEEPALIVE_TIME_MS: timerMs.default(DEFAULT_SERVER_TRANSPORT.keepaliveTimeMs),
    PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(600_000).default(DEFAULT_SERVER_TRANSPORT.keepaliveTimeoutMs),
    PARLEY_GRPC_MAX_CONNECTION_IDLE_MS: timerMs.default(DEFAULT_SERVER_TRANSPORT.maxConnectionIdleMs),
  });

/** Rules across variables, checked even when single variables are bad too. */
function crossVariableProblems(env: Readonly<Record<string, string>>, raw: Readonly<Record<string, string | undefined>>): string[] {
  const problems: string[] = [];
  // Not "unset": an empty DATABASE_URL (a template left unfilled) must never
  // start the development mode in front of production users.
  if (raw.DATABASE_URL !== undefined && raw.DATABASE_URL.trim() === "") {
    problems.push("DATABASE_URL is set but empty: give a PostgreSQL URL, or unset it for the development mode");
  }
  if ("PARLEY_GRPC_TLS_RELAY_NAMES" in env && !("PARLEY_GRPC_TLS_CLIENT_CA" in env)) {
    problems.push("PARLEY_GRPC_TLS_RELAY_NAMES needs PARLEY_GRPC_TLS_CLIENT_CA: relays are known by client certificates that core verifies");
  }
  const headersTimeout = Number(env.PARLEY_HTTP_HEADERS_TIMEOUT_MS ?? 5_000);
  const requestTimeout = Number(env.PARLEY_HTTP_REQUEST_TIMEOUT_MS ?? 10_000);
  if (headersTimeout > requestTimeout) {
    problems.push(`PARLEY_HTTP_HEADERS_TIMEOUT_MS (${headersTimeout}) must not exceed PARLEY_HTTP_REQUEST_TIMEOUT_MS (${requestTimeout}): the headers are part of the request`);
  }
  if ("PARLEY_BRIDGE_TOKEN" in env && "PARLEY_BRIDGE_TOKEN_FILE" in env) {
    problems.push("set one of PARLEY_BRIDGE_TOKEN and PARLEY_BRIDGE_TOKEN_FILE, not both");
  }
  // Every subscription is a stream: a larger subscription cap could never be reached.
  const streams = Number(env.PARLEY_GRPC_MAX_STREAMS_PER_CALLER ?? DEFAULT_STREAM_QUOTA.maxStreamsPerCaller);
  const subscriptions = Number(env.PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER ?? DEFAULT_STREAM_QUOTA.maxSubscriptionsPerCaller);
  if (subscriptions > streams) {
    problems.push(`PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER (${subscriptions}) is more than PARLEY_GRPC_MAX_STREAMS_PER_CALLER (${streams}): every subscription is also a stream`);
  }
  if ("PARLEY_WEBHOOK_URL" in env && !("PARLEY_WEBHOOK_SECRET" in env)) {
    problems.push("PARLEY_WEBHOOK_SECRET is required when PARLEY_WEBHOOK_URL is set");
  }
  return problems;
}

type LogLevel = (typeof LOG_LEVELS)[number];

/** parley's configuration, read once at start from the environment. */
export interface Config {
  /** PostgreSQL connection URL; undefined means the embedded database. */
  readonly databaseUrl: string | undefined;
  /** Where core's gRPC server listens. */
  readonly grpcAddress: string;
  /** Where the bridge's HTTP + WebSocket server listens. */
  readonly httpAddress: string;
  /** Where the bridge finds core. */
  readonly coreAddress: string;
  /** Where `parley core` serves /metrics (the bridge serves it on its own address). */
  readonly metricsAddress: string | undefined;
  /** How bearer tokens are verified (core); undefined when no key source is configured. */
  readonly tokens: TokenRules | undefined;
  /** The bridge's own credential at core: a `rooms:relay` token, given or in a file re-read when it changes. */
  readonly bridgeToken: { readonly token: string } | { readonly file: string } | undefined;
  /** PARLEY_JWT_SECRET: one kid-less HS256 key, also part of `tokens`. */
  readonly jwtSecret: string | undefined;
  /** Fallback delivery of notifications nobody received live; one signature per secret. */
  readonly webhook:
    | {
        readonly url: string;
        readonly secret: readonly string[];
        readonly graceMs: number;
        /** PARLEY_WEBHOOK_MAX_ATTEMPTS, PARLEY_WEBHOOK_RETRY_HORIZON_SECONDS, PARLEY_WEBHOOK_BACKOFF_MAX_SECONDS. */
        readonly retry: { readonly maxAttempts: number; readonly horizonMs: number; readonly backoffMaxMs: number };
      }
    | undefined;
  readonly logLevel: LogLevel;
  /** Directory of the embedded database. */
  readonly dataDir: string;
  /** Apply pending migrations at start. */
  readonly migrateOnStart: boolean;
  /** Rooms on first use, a development policy (CoreOptions.implicitRooms). */
  readonly implicitRooms: boolean;
  /** Core serves gRPC server reflection (PARLEY_GRPC_REFLECTION, default on). */
  readonly grpcReflection: boolean;
  /** Browser origins that may open WebSockets (PARLEY_ALLOWED_ORIGINS); undefined: the bridge's own origin only. */
  readonly allowedOrigins: AllowedOrigins | undefined;
  /** `PARLEY_ENV` or `NODE_ENV` is `production`: the development mode refuses to start. */
  readonly productionMarked: boolean;
  /** Client-certificate names core takes for relays (bridges) over mTLS (PARLEY_GRPC_TLS_RELAY_NAMES). */
  readonly relayCertificateNames: readonly string[];
  /** The bridge's limits set in the environment (PARLEY_WS_*, PARLEY_HTTP_*); the rest keep their defaults. */
  readonly limits: LimitSettings;
  /** The bridge's HTTP/2 sessions to core (PARLEY_CORE_SESSIONS); undefined: the bridge's default, 4. */
  readonly coreSessions: number | undefined;
  /** Proxies whose X-Forwarded-For names the client (PARLEY_TRUSTED_PROXIES); none by default. */
  readonly trustedProxies: readonly string[];
  /** Streaming calls and subscriptions one caller (not a relay) may hold open at once on core. */
  readonly grpcStreamQuota: StreamQuotaLimits;
  /** Core's gRPC server: streams per HTTP/2 connection, keepalive, idle connections. */
  readonly grpcTransport: ServerTransport;
  /** How long core holds writes for an unreachable database, and how many (PARLEY_DB_OUTAGE_HORIZON_MS, PARLEY_DB_MAX_HELD_WRITES). */
  readonly databaseOutage: { readonly horizonMs: number; readonly maxHeld: number };
  /** TLS for the listeners and the link to core, files read at start; plaintext where unset. */
  readonly tls: TlsSettings & {
    /** How often certificate files are checked for a change, in ms; 0: only on SIGHUP. */
    readonly watchIntervalMs: number;
  };
}

/** Thrown at start when the environment is not valid; names every bad variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
  }
}

/** Reads and validates the environment. Empty strings count as unset, but for DATABASE_URL, which is refused. */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ""),
  );
  const parsed = EnvSchema.safeParse(present);
  const tls = readTlsSettings(present);
  const problems = [
    ...(parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join(".")} ${issue.message}`)),
    ...crossVariableProblems(present, env),
    ...tls.problems,
  ];
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    grpcAddress: e.PARLEY_GRPC_ADDR,
    httpAddress: e.PARLEY_HTTP_ADDR,
    coreAddress: e.PARLEY_CORE_ADDR ?? e.PARLEY_GRPC_ADDR,
    metricsAddress: e.PARLEY_METRICS_ADDR,
    tokens: tokenRules(e),
    bridgeToken:
      e.PARLEY_BRIDGE_TOKEN_FILE !== undefined ? { file: e.PARLEY_BRIDGE_TOKEN_FILE } : e.PARLEY_BRIDGE_TOKEN !== undefined ? { token: e.PARLEY_BRIDGE_TOKEN } : undefined,
    jwtSecret: e.PARLEY_JWT_SECRET,
    webhook:
      e.PARLEY_WEBHOOK_URL !== undefined && e.PARLEY_WEBHOOK_SECRET !== undefined
        ? {
            url: e.PARLEY_WEBHOOK_URL,
            secret: e.PARLEY_WEBHOOK_SECRET,
            graceMs: e.PARLEY_WEBHOOK_GRACE_MS,
            retry: {
              maxAttempts: e.PARLEY_WEBHOOK_MAX_ATTEMPTS,
              horizonMs: e.PARLEY_WEBHOOK_RETRY_HORIZON_SECONDS * 1000,
              backoffMaxMs: e.PARLEY_WEBHOOK_BACKOFF_MAX_SECONDS * 1000,
            },
          }
        : undefined,
    logLevel: e.PARLEY_LOG_LEVEL,
    dataDir: e.PARLEY_DATA_DIR,
    migrateOnStart: e.PARLEY_MIGRATE,
    implicitRooms: e.PARLEY_IMPLICIT_ROOMS,
    grpcReflection: e.PARLEY_GRPC_REFLECTION,
    allowedOrigins: e.PARLEY_ALLOWED_ORIGINS,
    productionMarked: e.PARLEY_ENV === "production" || e.NODE_ENV === "production",
    tls: { ...tls.settings, watchIntervalMs: e.PARLEY_TLS_WATCH_MS },
    relayCertificateNames: e.PARLEY_GRPC_TLS_RELAY_NAMES ?? [],
    limits: limitSettings(e),
    trustedProxies: e.PARLEY_TRUSTED_PROXIES ?? [],
    coreSessions: e.PARLEY_CORE_SESSIONS,
    grpcStreamQuota: { maxStreamsPerCaller: e.PARLEY_GRPC_MAX_STREAMS_PER_CALLER, maxSubscriptionsPerCaller: e.PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER },
    databaseOutage: { horizonMs: e.PARLEY_DB_OUTAGE_HORIZON_MS, maxHeld: e.PARLEY_DB_MAX_HELD_WRITES },
    grpcTransport: {
      maxConcurrentStreams: e.PARLEY_GRPC_MAX_CONCURRENT_STREAMS,
      keepaliveTimeMs: e.PARLEY_GRPC_KEEPALIVE_TIME_MS,
      keepaliveTimeoutMs: e.PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS,
      maxConnectionIdleMs: e.PARLEY_GRPC_MAX_CONNECTION_IDLE_MS,
    },
  };
}

type Env = z.infer<typeof EnvSchema>;

function tokenRules(e: Env): TokenRules | undefined {
  const hmacKeys = [...(e.PARLEY_JWT_SECRET === undefined ? [] : [{ secret: e.PARLEY_JWT_SECRET }]), ...(e.PARLEY_JWT_KEYS ?? [])];
  const localKeySet = e.PARLEY_JWKS_FILE === undefined ? undefined : readKeySetFile(e.PARLEY_JWKS_FILE);
  if (hmacKeys.length === 0 && e.PARLEY_JWKS_URL === undefined && localKeySet === undefined) return undefined;
  return {
    hmacKeys,
    localKeySet,
    remoteKeySet:
      e.PARLEY_JWKS_URL === undefined
        ? undefined
        : { url: e.PARLEY_JWKS_URL, cacheMaxAgeMs: e.PARLEY_JWKS_CACHE_SECONDS * 1000, cooldownMs: e.PARLEY_JWKS_COOLDOWN_SECONDS * 1000, timeoutMs: e.PARLEY_JWKS_TIMEOUT_MS },
    issuer: e.PARLEY_JWT_ISSUER,
    audience: e.PARLEY_JWT_AUDIENCE !== undefined && e.PARLEY_JWT_AUDIENCE.length > 0 ? e.PARLEY_JWT_AUDIENCE : undefined,
    maxLifetimeSeconds: e.PARLEY_JWT_MAX_LIFETIME_SECONDS,
    relaySubjects: e.PARLEY_RELAY_SUBJECTS ?? [],
  };
}

/** Read once at start: a file that cannot be read or is not a key set stops start-up naming it. */
function readKeySetFile(path: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigError([`PARLEY_JWKS_FILE ${path} cannot be read as JSON: ${error instanceof Error ? error.message : String(error)}`]);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new ConfigError([`PARLEY_JWKS_FILE ${path} is not a JSON Web Key Set (no "keys" array)`]);
  return parsed as JSONWebKeySet;
}

/** How core verifies tokens, or a ConfigError naming the variables that configure it. */
export function requireTokenRules(config: Config): TokenRules {
  if (config.tokens === undefined) {
    throw new ConfigError(["core needs a key to verify tokens: set PARLEY_JWKS_URL (an identity provider's key set), PARLEY_JWKS_FILE, PARLEY_JWT_KEYS (kid:secret,...) or PARLEY_JWT_SECRET (at least 32 characters)"]);
  }
  return config.tokens;
}
