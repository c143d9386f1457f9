import { z } from "zod";
import { readTlsSettings, type TlsSettings } from "./tls/tls-settings.js";

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
    PARLEY_JWT_SECRET: z.string().min(32, "must be at least 32 characters (HS256 key)").optional(),
    PARLEY_WEBHOOK_URL: url(["http:", "https:"], "https://hooks.example.com/parley").optional(),
    PARLEY_WEBHOOK_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
    PARLEY_WEBHOOK_GRACE_MS: z.coerce.number().int().min(0).max(86_400_000).default(5_000),
    PARLEY_LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
    PARLEY_DATA_DIR: z.string().min(1).default(".parley-data"),
    PARLEY_MIGRATE: flag.default(false),
    PARLEY_GRPC_REFLECTION: flag.default(true),
    PARLEY_ENV: z.string().optional(),
    NODE_ENV: z.string().optional(),
    PARLEY_IMPLICIT_ROOMS: flag.default(false),
    // Transport security: PEM file paths, read and checked by readTlsSettings.
    PARLEY_HTTP_TLS_CERT: z.string().optional(),
    PARLEY_HTTP_TLS_KEY: z.string().optional(),
    PARLEY_GRPC_TLS_CERT: z.string().optional(),
    PARLEY_GRPC_TLS_KEY: z.string().optional(),
    PARLEY_GRPC_TLS_CLIENT_CA: z.string().optional(),
    PARLEY_CORE_TLS_CA: z.string().optional(),
    PARLEY_CORE_TLS_CERT: z.string().optional(),
    PARLEY_CORE_TLS_KEY: z.string().optional(),
    PARLEY_CORE_TLS_SERVER_NAME: z.string().optional(),
    PARLEY_TLS_WATCH_MS: z.coerce.number().int().min(0).max(86_400_000).default(30_000),
  });

/** Rules across variables, checked even when single variables are bad too. */
function crossVariableProblems(env: Readonly<Record<string, string>>, raw: Readonly<Record<string, string | undefined>>): string[] {
  const problems: string[] = [];
  // Not "unset": an empty DATABASE_URL (a template left unfilled) must never
  // start the development mode in front of production users.
  if (raw.DATABASE_URL !== undefined && raw.DATABASE_URL.trim() === "") {
    problems.push("DATABASE_URL is set but empty: give a PostgreSQL URL, or unset it for the development mode");
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
  /** HS256 key for bearer tokens; required by core and bridge. */
  readonly jwtSecret: string | undefined;
  /** Fallback delivery of notifications nobody received live. */
  readonly webhook: { readonly url: string; readonly secret: string; readonly graceMs: number } | undefined;
  readonly logLevel: LogLevel;
  /** Directory of the embedded database. */
  readonly dataDir: string;
  /** Apply pending migrations at start. */
  readonly migrateOnStart: boolean;
  /** Rooms on first use, a development policy (CoreOptions.implicitRooms). */
  readonly implicitRooms: boolean;
  /** Core serves gRPC server reflection (PARLEY_GRPC_REFLECTION, default on). */
  readonly grpcReflection: boolean;
  /** `PARLEY_ENV` or `NODE_ENV` is `production`: the development mode refuses to start. */
  readonly productionMarked: boolean;
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
    jwtSecret: e.PARLEY_JWT_SECRET,
    webhook:
      e.PARLEY_WEBHOOK_URL !== undefined && e.PARLEY_WEBHOOK_SECRET !== undefined
        ? { url: e.PARLEY_WEBHOOK_URL, secret: e.PARLEY_WEBHOOK_SECRET, graceMs: e.PARLEY_WEBHOOK_GRACE_MS }
        : undefined,
    logLevel: e.PARLEY_LOG_LEVEL,
    dataDir: e.PARLEY_DATA_DIR,
    migrateOnStart: e.PARLEY_MIGRATE,
    implicitRooms: e.PARLEY_IMPLICIT_ROOMS,
    grpcReflection: e.PARLEY_GRPC_REFLECTION,
    productionMarked: e.PARLEY_ENV === "production" || e.NODE_ENV === "production",
    tls: { ...tls.settings, watchIntervalMs: e.PARLEY_TLS_WATCH_MS },
  };
}

/** The JWT secret, or a ConfigError naming the variable to set. */
export function requireJwtSecret(config: Config): string {
  if (config.jwtSecret === undefined) throw new ConfigError(["PARLEY_JWT_SECRET is required (at least 32 characters)"]);
  return config.jwtSecret;
}
