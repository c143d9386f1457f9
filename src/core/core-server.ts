import { randomBytes, randomUUID } from "node:crypto";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import {
  authInterceptor,
  DEFAULT_STREAM_QUOTA,
  type Logger,
  loggingInterceptor,
  mintToken,
  ROOMS_RELAY_SCOPE,
  type ServerTransport,
  ServingStatus,
  startGrpcServer,
  streamQuotaInterceptor,
  type StreamQuotaLimits,
  type TlsCertificates,
  type TokenRules,
  TokenVerifier,
  tracingInterceptor,
} from "../runtime/index.js";
import { ParleyError } from "../wire/index.js";
import { createChatModule } from "./chat/chat-module.js";
import { createRoomModule } from "./rooms/room-module.js";
import { actAsGuard } from "./access/act-as-guard.js";
import { relayGuard } from "./access/relay-guard.js";
import { createIdentityModule } from "./identity/identity-module.js";
import type { RoomLimits } from "./rooms/room-service.js";
import { migrate, openOrm, type Orm } from "./store/orm.js";
import { UnitOfWork } from "./store/unit-of-work.js";
import { DatabaseAvailability, type OutagePolicy } from "./store/database-availability.js";
import { PgListener } from "./store/pg-listener.js";
import { createNotificationModule } from "./notifications/notification-module.js";
import { DEFAULT_WEBHOOK_BACKOFF, WebhookDispatcher, type WebhookDispatcherOptions } from "./notifications/webhook-dispatcher.js";

export interface CoreOptions {
  readonly databaseUrl: string;
  /** `host:port` for gRPC; port 0 picks a free one. */
  readonly grpcAddress: string;
  /** How bearer tokens are verified: key sources, issuer, audience, lifetime. */
  readonly tokens: TokenRules;
  /**
   * Client-certificate names (CN or DNS name) of relays: over mTLS, a call
   * without a token from such a certificate is a relay (a bridge), which
   * acts as nobody by itself (see relay-guard.ts).
   */
  readonly relayCertificateNames?: readonly string[];
  readonly logger: Logger;
  /** Apply pending migrations before serving. */
  readonly migrate?: boolean;
  /** Serve gRPC over TLS with these certificates; with a CA in them, clients must present a certificate it signed (mTLS). Plaintext when unset. */
  readonly tls?: TlsCertificates;
  /** Serve gRPC server reflection (default true): it describes the contract, never data; off where even that is not wanted. */
  readonly reflection?: boolean;
  /** Streaming calls and subscriptions one caller (not a relay) may hold open at once (defaults in DEFAULT_STREAM_QUOTA). */
  readonly streamQuota?: Partial<StreamQuotaLimits>;
  /** How long writes are held for an unreachable database, and how many (defaults in database-availability.ts). */
  readonly databaseOutage?: Partial<OutagePolicy>;
  /** Streams per HTTP/2 connection, keepalive and idle limits of the gRPC server (defaults in DEFAULT_SERVER_TRANSPORT). */
  readonly grpcTransport?: Partial<ServerTransport>;
  /** Quotas on rooms (defaults in DEFAULT_ROOM_LIMITS). */
  readonly roomLimits?: Partial<RoomLimits>;
  /** Most sends per group commit (default 512). */
  readonly maxBatch?: number;
  /**
   * Rooms on first use, a development policy (default false): a send or a
   * read position in a room that does not exist creates it as a public room
   * owned by the writer, and a writer who is not a member of a public room
   * (and not banned from it) is joined to it, without room events. Off,
   * writes to missing rooms and by non-members are refused. Reads of a
   * missing room see an empty public room.
   */
  readonly implicitRooms?: boolean;
  /** Database connections (default 10). */
  readonly poolSize?: number;
  /**
   * LISTEN for other instances' commits (default true). A single-process
   * deployment (the embedded mode) needs only its in-process hub.
   */
  readonly crossInstanceFanout?: boolean;
  /** Notification fallback delivery; off when unset. */
  readonly webhook?: {
    readonly url: string;
    /** Several while rotating: each delivery carries one signature per secret. */
    readonly secret: WebhookDispatcherOptions["secret"];
    readonly graceMs: number;
    /** The retry schedule (PARLEY_WEBHOOK_*); the dispatcher's defaults where unset. */
    readonly retry?: { readonly maxAttempts: number; readonly horizonMs: number; readonly backoffMaxMs: number };
    /** Dispatcher tuning (tests shorten the waits). */
    readonly tuning?: Partial<Omit<WebhookDispatcherOptions, "unitOfWork" | "logger" | "url" | "secret">>;
  };
}

export interface RunningCore {
  /** The bound gRPC address (real port when 0 was asked for). */
  readonly address: string;
  /** Identifies this instance in fan-out notifications. */
  readonly instanceId: string;
  readonly orm: Orm;
  readonly listener: PgListener | undefined;
  /**
   * A relay token for a bridge in this same process (`parley serve`),
   * signed with a key that never leaves the process; `lifetimeSeconds`
   * bounded by the configured maximum.
   */
  mintRelayToken(lifetimeSeconds: number): Promise<string>;
  /** Stops serving: refuses new calls, answers in-flight sends, closes the database. */
  stop(graceMs?: number): Promise<void>;
}

/** The calls that follow a log for as long as the caller stays: counted as subscriptions as well as streams. */
const SUBSCRIPTIONS = new Set([ChatService.method.subscribe, NotificationService.method.subscribe]);

/**
 * The core process: the only component that touches the database. Serves
 * ChatService, RoomService and NotificationService over gRPC (with health and
 * reflection), commits writes in groups, and fans committed items out —
 * across instances through LISTEN/NOTIFY.
 */
export async function startCore(options: CoreOptions): Promise<RunningCore> {
  const instanceId = randomUUID();
  const logger = options.logger.child({ component: "core", instance: instanceId.slice(0, 8) });
  const orm = await openOrm({ databaseUrl: options.databaseUrl, poolSize: options.poolSize, logger });
  try {
    if (options.migrate === true) {
      const applied = await migrate(orm);
      if (applied.length > 0) logger.info({ applied }, "migrations applied");
    }
    const availability = new DatabaseAvailability(options.databaseOutage);
    const unitOfWork = new UnitOfWork(orm, logger, availability);
    // A bridge in this process authenticates with tokens of a key made here:
    // the deployment needs no signing key for it, and none leaks.
    const inProcessKey = { kid: `parley-in-process-${instanceId.slice(0, 8)}`, secret: randomBytes(32).toString("base64url") };
    const inProcessRelay = `parley-bridge-${instanceId.slice(0, 8)}`;
    const verifier = new TokenVerifier({
      ...options.tokens,
      hmacKeys: [...options.tokens.hmacKeys, inProcessKey],
      relaySubjects: [...(options.tokens.relaySubjects ?? []), inProcessRelay],
    });
    const chat = createChatModule({ instanceId, unitOfWork, verifier, logger, maxBatch: options.maxBatch, implicitRooms: options.implicitRooms === true });
    const rooms = createRoomModule({ instanceId, unitOfWork, limits: options.roomLimits, implicitRooms: options.implicitRooms === true, published: (events) => {
        chat.fanout.committed(events);
      },
    });
    const notifications = createNotificationModule({ instanceId, unitOfWork, logger, webhookGraceMs: options.webhook?.graceMs });
    const modules = [chat, notifications];

    const listener =
      options.crossInstanceFanout === false
        ? undefined
        : new PgListener({
      databaseUrl: options.databaseUrl,
      channels: modules.map((module) => module.channel),
      logger,
      onNotification: (channel, payload) => {
        modules.find((module) => module.channel === channel)?.fanout.notified(payload);
      },
      onReconnected: () => {
        for (const module of modules) module.fanout.resyncAll();
      },
    });
    await listener?.start();

    // Pending deliveries live in the database: whatever a previous run left
    // behind is picked up here, after its lease runs out.
    const webhooks =
      options.webhook === undefined
        ? undefined
        : new WebhookDispatcher({
            unitOfWork,
            logger,
            url: options.webhook.url,
            secret: options.webhook.secret,
            ...(options.webhook.retry === undefined
              ? {}
              : {
                  maxAttempts: options.webhook.retry.maxAttempts,
                  retryHorizonMs: options.webhook.retry.horizonMs,
                  backoff: { ...DEFAULT_WEBHOOK_BACKOFF, maxMs: options.webhook.retry.backoffMaxMs },
                }),
            ...options.webhook.tuning,
          });
    webhooks?.start();

    const grpc = await startGrpcServer({
      address: options.grpcAddress,
      services: [...modules.map((module) => module.binding), rooms.binding, createIdentityModule().binding],
      reflection: options.reflection,
      logger,
      tls: options.tls === undefined ? undefined : { certificates: options.tls, logger },
      transport: options.grpcTransport,
      interceptors: [
        tracingInterceptor(),
        loggingInterceptor(logger),
        authInterceptor(verifier, new Set(options.tls === undefined ? [] : (options.relayCertificateNames ?? []))),
        relayGuard(),
        actAsGuard(),
        streamQuotaInterceptor({ ...DEFAULT_STREAM_QUOTA, ...options.streamQuota }, SUBSCRIPTIONS),
      ],
    });
    // While the database is away, core is not ready for more: the writes it
    // holds wait for it, and new clients are better served elsewhere.
    const unwatchAvailability = availability.onChange((available) => {
      grpc.health.setStatus("", available ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
      if (available) logger.info("database reachable again; held writes committing");
      else logger.warn({ horizon_ms: availability.policy.horizonMs }, "database unreachable; holding writes, in order, up to the horizon");
    });
    logger.info({ grpc: grpc.address, tls: options.tls === undefined ? "off" : options.tls.material.ca === undefined ? "on" : "mutual" }, "core serving");

    return {
      address: grpc.address,
      instanceId,
      orm,
      listener,
      mintRelayToken: (lifetimeSeconds) =>
        mintToken(inProcessKey.secret, inProcessRelay, {
          kid: inProcessKey.kid,
          scopes: [ROOMS_RELAY_SCOPE],
          expiresInSeconds: Math.min(lifetimeSeconds, options.tokens.maxLifetimeSeconds),
        }),
      async stop(graceMs = 5_000) {
        // Subscriptions never end by themselves: end them with UNAVAILABLE so
        // their callers resubscribe (with their last seq) elsewhere.
        const shutdown = new ParleyError(ErrorCategory.UNAVAILABLE, "server shutting down; resubscribe with the last seq seen", {
          context: { expected: true },
        });
        for (const module of modules) module.fanout.hub.closeAll(shutdown);
        unwatchAvailability();
        availability.close();
        await grpc.shutdown(graceMs);
        for (const module of modules) await module.drain();
        await webhooks?.stop();
        await listener?.stop();
        await orm.close();
        logger.info("core stopped");
      },
    };
  } catch (error) {
    await orm.close();
    throw error;
  }
}
