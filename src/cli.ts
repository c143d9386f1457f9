import { parseArgs } from "node:util";
import { type Config, ConfigError, createLogger, fixedToken, hmacRules, loadConfig, type Logger, renewedToken, requireTokenRules, serveMetrics, telemetry, tokenFromFile, type TokenSource, transportSecurity } from "./runtime/index.js";
import { startBridge } from "./bridge/index.js";
import { migrate, openOrm, redriveWebhooks, startCore, UnitOfWork } from "./core/index.js";
import { assertDevelopmentModeAllowed, developmentHttp, developmentSecret, startEmbeddedDatabase } from "./dev/index.js";

const HELP = `parley — durable, ordered chat and notifications over gRPC and WebSocket

Usage: parley <command> [--help]

Commands:
  migrate   apply pending database migrations to DATABASE_URL and exit
  webhooks redrive [--all]
            give failed webhook deliveries a new retry window (--all: also
            those the receiver refused with a 4xx) and exit
  core      run the core gRPC service (the only component that touches the database)
  bridge    run the WebSocket bridge (browsers) in front of core at PARLEY_CORE_ADDR
  serve     run core and bridge in one process; without DATABASE_URL, on an
            embedded PostgreSQL with a demo page (development)

Environment:
  DATABASE_URL           PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/parley
  PARLEY_DATA_DIR        embedded database directory (default .parley-data)
  PARLEY_GRPC_ADDR       core gRPC address (default 127.0.0.1:50051; port 0 picks one)
  PARLEY_HTTP_ADDR       bridge HTTP/WebSocket address (default 127.0.0.1:8080)
  PARLEY_CORE_ADDR       where the bridge finds core (default PARLEY_GRPC_ADDR)
  PARLEY_METRICS_ADDR    where "parley core" serves /metrics (the bridge serves it itself)

Identity (core verifies every token; the bridge holds no key):
  PARLEY_JWKS_URL        core: the identity provider's key set (https), e.g. an OIDC jwks_uri
  PARLEY_JWKS_FILE       core: a JWKS file of public keys
  PARLEY_JWKS_CACHE_SECONDS, PARLEY_JWKS_COOLDOWN_SECONDS, PARLEY_JWKS_TIMEOUT_MS
                         key-set cache, refetch cooldown, fetch timeout (600 s, 30 s, 5000 ms)
  PARLEY_JWT_KEYS        core: HS256 keys by id, kid:secret,kid:secret (rotation)
  PARLEY_JWT_SECRET      core: one HS256 key without kid, at least 32 characters
  PARLEY_JWT_ISSUER      core: required iss
  PARLEY_JWT_AUDIENCE    core: accepted aud values, comma-separated
  PARLEY_JWT_MAX_LIFETIME_SECONDS  core: longest token lifetime (default 86400)
  PARLEY_RELAY_SUBJECTS  core: token subjects that may carry the rooms:relay scope (bridges)
  PARLEY_BRIDGE_TOKEN_FILE  bridge: file with its rooms:relay token (re-read on change)
  PARLEY_BRIDGE_TOKEN    bridge: its rooms:relay token
  PARLEY_GRPC_TLS_RELAY_NAMES  core: client-certificate names that are bridges (mTLS)

  PARLEY_WEBHOOK_URL     notification fallback endpoint (optional)
  PARLEY_WEBHOOK_SECRET  HMAC key for webhook signatures (required with the URL);
                         several, comma-separated, sign with each while rotating
  PARLEY_MIGRATE=1       apply migrations when core starts
  PARLEY_GRPC_REFLECTION=0  core serves no gRPC server reflection (health stays)
  PARLEY_ALLOWED_ORIGINS browser origins that may open WebSockets, comma-separated
                         (https://app.example.com), or *; default: the bridge's own
  PARLEY_IMPLICIT_ROOMS=1  development: sends and read positions create missing
                         rooms (public) and join public rooms; never in production
  PARLEY_LOG_LEVEL       fatal|error|warn|info|debug|trace|silent (default info)

Core's gRPC limits (docs/security.md#grpc-limits):
  PARLEY_GRPC_MAX_SUBSCRIPTIONS_PER_CALLER  open subscriptions per user (default 64; relays exempt)
  PARLEY_GRPC_MAX_STREAMS_PER_CALLER        open streaming calls per user (default 128; relays exempt)
  PARLEY_GRPC_MAX_CONCURRENT_STREAMS        streams per HTTP/2 connection (default 16384)
  PARLEY_GRPC_KEEPALIVE_TIME_MS, PARLEY_GRPC_KEEPALIVE_TIMEOUT_MS
                         ping every connection, cut one that does not answer (30000, 10000; 0: no pings)
  PARLEY_GRPC_MAX_CONNECTION_IDLE_MS  close a connection without calls (default 300000; 0: never)

Transport security (PEM file paths; unset: plaintext; SIGHUP reloads them):
  PARLEY_HTTP_TLS_CERT, PARLEY_HTTP_TLS_KEY    the bridge serves https:// and wss://
  PARLEY_GRPC_TLS_CERT, PARLEY_GRPC_TLS_KEY    core serves gRPC over TLS
  PARLEY_GRPC_TLS_CLIENT_CA  core requires client certificates signed by this CA (mTLS)
  PARLEY_CORE_TLS_CA         the bridge connects to core over TLS, verifying it against this CA
  PARLEY_CORE_TLS_CERT, PARLEY_CORE_TLS_KEY    the bridge's client certificate (mTLS)
  PARLEY_CORE_TLS_SERVER_NAME  name checked on core's certificate (default: the host of PARLEY_CORE_ADDR)
  PARLEY_TLS_WATCH_MS        check certificate files for changes this often (default 30000; 0: SIGHUP only)
`;

/** A command's own words after its name (`parley webhooks redrive --all`). */
interface Invocation {
  readonly args: readonly string[];
  readonly all: boolean;
}

type Command = (config: Config, logger: Logger, invocation: Invocation) => Promise<void>;

/** The in-process bridge's relay token lives an hour (renewed at half of it). */
const IN_PROCESS_RELAY_LIFETIME_S = 3600;

/**
 * `parley bridge`'s own credential at core: PARLEY_BRIDGE_TOKEN_FILE or
 * PARLEY_BRIDGE_TOKEN; undefined when it has only its client certificate
 * (core names it in PARLEY_GRPC_TLS_RELAY_NAMES).
 */
async function bridgeToken(config: Config, logger: Logger): Promise<TokenSource | undefined> {
  const source = config.bridgeToken;
  if (source === undefined) {
    if (config.tls.core?.cert !== undefined) {
      logger.info("the bridge authenticates to core by its client certificate (core must list its name in PARLEY_GRPC_TLS_RELAY_NAMES)");
      return undefined;
    }
    throw new ConfigError([
      "the bridge needs its own credential at core: a client certificate (PARLEY_CORE_TLS_CERT and PARLEY_CORE_TLS_KEY, named in core's PARLEY_GRPC_TLS_RELAY_NAMES), PARLEY_BRIDGE_TOKEN_FILE (a file holding a token with the `rooms:relay` scope, re-read when it changes) or PARLEY_BRIDGE_TOKEN; it never needs a signing key",
    ]);
  }
  if ("token" in source) return fixedToken(source.token);
  try {
    return await tokenFromFile(source.file, logger);
  } catch (error) {
    throw new ConfigError([`PARLEY_BRIDGE_TOKEN_FILE ${source.file} cannot be read: ${error instanceof Error ? error.message : String(error)}`]);
  }
}

const COMMANDS: Record<string, Command> = {
  async migrate(config, logger) {
    const orm = await openOrm({ databaseUrl: requireDatabaseUrl(config) });
    try {
      const applied = await migrate(orm);
      logger.info({ applied }, applied.length === 0 ? "database is up to date" : "migrations applied");
    } finally {
      await orm.close();
    }
  },
  async webhooks(config, logger, { args, all }) {
    if (args[0] !== "redrive" || args.length !== 1) throw new ConfigError(['usage: parley webhooks redrive [--all] (re-drive failed webhook deliveries; --all includes those the receiver refused with a 4xx)']);
    const orm = await openOrm({ databaseUrl: requireDatabaseUrl(config), logger });
    try {
      const redriven = await redriveWebhooks(new UnitOfWork(orm, logger), { all });
      logger.info({ redriven, all }, `${redriven} failed webhook deliveries re-driven; a running core delivers them now`);
    } finally {
      await orm.close();
    }
  },
  async core(config, logger) {
    warnIfImplicitRooms(config.implicitRooms, logger);
    const transport = transportSecurity(config.tls, ["grpc"], logger);
    const core = await startCore({
      databaseUrl: requireDatabaseUrl(config),
      grpcAddress: config.grpcAddress,
      tls: transport.grpc,
      relayCertificateNames: config.relayCertificateNames,
      tokens: requireTokenRules(config),
      migrate: config.migrateOnStart,
      reflection: config.grpcReflection,
      streamQuota: config.grpcStreamQuota,
      grpcTransport: config.grpcTransport,
      databaseOutage: config.databaseOutage,
      implicitRooms: config.implicitRooms,
      webhook: config.webhook,
      logger,
    });
    const metrics = config.metricsAddress === undefined ? undefined : await serveMetrics(config.metricsAddress, logger);
    await untilSignal(logger);
    await metrics?.stop();
    await core.stop();
    transport.close();
  },
  async bridge(config, logger) {
    const transport = transportSecurity(config.tls, ["http", "core"], logger);
    const relayToken = await bridgeToken(config, logger);
    const bridge = await startBridge({
      httpAddress: config.httpAddress,
      coreAddress: config.coreAddress,
      tls: transport.http,
      coreTransport: transport.core,
      relayToken,
      origins: { allowed: config.allowedOrigins },
      limits: config.limits.connection,
      admission: config.limits.admission,
      trustedProxies: config.trustedProxies,
      coreSessions: config.coreSessions,
      logger,
    });
    await untilSignal(logger);
    await bridge.stop();
    relayToken?.close();
    transport.close();
  },
  async serve(config, logger) {
    // The in-process bridge reaches core like any other bridge: over TLS when core serves it.
    if (config.tls.grpc !== undefined && config.tls.core === undefined) {
      throw new ConfigError(["PARLEY_CORE_TLS_CA is required by parley serve when PARLEY_GRPC_TLS_CERT is set: the bridge inside connects to core over TLS"]);
    }
    // Without DATABASE_URL: PostgreSQL embedded in the process (development),
    // only where that cannot be production.
    if (config.databaseUrl === undefined) assertDevelopmentModeAllowed(config);
    const embedded = config.databaseUrl === undefined ? await startEmbeddedDatabase(config.dataDir, logger) : undefined;
    const databaseUrl = embedded?.url ?? requireDatabaseUrl(config);
    // The development mode signs with its own key, never PARLEY_JWT_SECRET:
    // its /dev/token must not mint tokens a production core would accept.
    if (embedded !== undefined && config.jwtSecret !== undefined) logger.warn("PARLEY_JWT_SECRET is ignored by the development mode, which keeps its own key in its data directory");
    const secret = embedded ? developmentSecret(embedded.dataDir) : undefined;
    // The development mode keeps rooms on first use, as the demo page expects.
    const implicitRooms = embedded !== undefined || config.implicitRooms;
    warnIfImplicitRooms(implicitRooms, logger);
    const transport = transportSecurity(config.tls, ["http", "grpc", "core"], logger);
    const core = await startCore({
      databaseUrl,
      grpcAddress: config.grpcAddress,
      tls: transport.grpc,
      tokens: secret === undefined ? requireTokenRules(config) : hmacRules(secret),
      migrate: embedded !== undefined || config.migrateOnStart,
      reflection: config.grpcReflection,
      streamQuota: config.grpcStreamQuota,
      grpcTransport: config.grpcTransport,
      databaseOutage: config.databaseOutage,
      crossInstanceFanout: embedded === undefined,
      poolSize: embedded?.poolSize,
      implicitRooms,
      webhook: config.webhook,
      logger,
    });
    const dev = secret !== undefined ? await developmentHttp({ secret, coreAddress: core.address, coreTransport: transport.core, logger }) : undefined;
    // One process, one code path: the bridge still reaches core over gRPC,
    // as a relay whose tokens core mints with a key of this process only.
    const relayToken = await renewedToken(() => core.mintRelayToken(IN_PROCESS_RELAY_LIFETIME_S), IN_PROCESS_RELAY_LIFETIME_S, logger);
    const bridge = await startBridge({
      httpAddress: config.httpAddress,
      coreAddress: core.address,
      tls: transport.http,
      coreTransport: transport.core,
      relayToken,
      // The development mode's own page is always allowed, when its Host is loopback.
      origins: { allowed: config.allowedOrigins, sameOrigin: embedded === undefined ? undefined : "loopback" },
      limits: config.limits.connection,
      admission: config.limits.admission,
      trustedProxies: config.trustedProxies,
      coreSessions: config.coreSessions,
      logger,
      httpHandler: dev?.handler,
    });
    process.stderr.write(banner(bridge.address, core.address, embedded?.dataDir, { http: transport.http !== undefined, grpc: transport.grpc !== undefined }));
    await untilSignal(logger);
    await bridge.stop();
    relayToken.close();
    dev?.close();
    await core.stop();
    await embedded?.stop();
    transport.close();
  },
};

function banner(http: string, grpc: string, dataDir: string | undefined, tls: { http: boolean; grpc: boolean }): string {
  const s = tls.http ? "s" : "";
  const lines = [
    "",
    "  parley is running",
    "",
    dataDir === undefined ? `  WebSocket bridge  ws${s}://${http}/ws` : `  demo page         http${s}://${http}/`,
    tls.grpc
      ? `  gRPC (core)       ${grpc}   (TLS: npx buf curl --protocol grpc --cacert <CA> --cert <client cert> --key <client key> --list-services https://${grpc})`
      : `  gRPC (core)       ${grpc}   (reflection on: npx buf curl --protocol grpc --http2-prior-knowledge --list-services http://${grpc})`,
  ];
  if (dataDir !== undefined) {
    lines.push(
      `  data              ${dataDir}  (embedded PostgreSQL; delete it to start over)`,
      "",
      "  Development mode: /dev/token hands out tokens to anyone.",
      "  For a real PostgreSQL: DATABASE_URL=postgres://user@host:5432/db PARLEY_JWT_SECRET=<32+ chars> PARLEY_MIGRATE=1 npm start",
    );
  }
  return `${lines.join("\n")}\n\n`;
}

function warnIfImplicitRooms(on: boolean, logger: Logger): void {
  if (!on) return;
  logger.warn(
    "rooms on first use are on (PARLEY_IMPLICIT_ROOMS, or the development mode): a send or mark_read creates a missing room as a public room and joins any user who is not banned from a public room, without room events; a development policy, never for production",
  );
}

function requireDatabaseUrl(config: Config): string {
  if (config.databaseUrl === undefined) throw new ConfigError(["DATABASE_URL is required, e.g. postgres://postgres@127.0.0.1:5432/parley"]);
  return config.databaseUrl;
}

/** Resolves on SIGINT/SIGTERM, for a graceful stop. */
function untilSignal(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: [...argv], allowPositionals: true, options: { help: { type: "boolean", short: "h" }, all: { type: "boolean" } } });
  const name = positionals[0];
  if (values.help === true || name === undefined || name === "help") {
    process.stdout.write(HELP);
    return name === undefined && values.help !== true ? 1 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`parley: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`parley: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  try {
    await command(config, logger, { args: positionals.slice(1), all: values.all === true });
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`parley: ${error.message}\n`);
      return 2;
    }
    logger.fatal({ category: "INTERNAL", err: error }, `parley ${name} failed`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Flush spans and metrics before the process exits.
await telemetry()?.shutdown();
// Everything has been stopped; a forgotten handle must not keep the process alive.
setTimeout(() => {
  process.exit();
}, 2_000).unref();
