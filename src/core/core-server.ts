import { randomUUID } from "node:crypto";
import { type ChatMessage, ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../errors/parley-error.js";
import { authInterceptor } from "../auth/interceptor.js";
import { TokenVerifier } from "../auth/tokens.js";
import { bindService, startGrpcServer } from "../grpc/grpc-server.js";
import { loggingInterceptor } from "../grpc/logging-interceptor.js";
import type { Logger } from "../logging/logger.js";
import { chatServiceHandlers } from "./chat/chat-service.js";
import { CHAT_CHANNEL, MessageStore } from "./chat/message-store.js";
import { createSendCommitter } from "./chat/send-committer.js";
import { migrate, openOrm, type Orm } from "./db/orm.js";
import { UnitOfWork } from "./db/unit-of-work.js";
import { PgListener } from "./fanout/pg-listener.js";
import { TopicFanout } from "./fanout/topic-fanout.js";

export interface CoreOptions {
  readonly databaseUrl: string;
  /** `host:port` for gRPC; port 0 picks a free one. */
  readonly grpcAddress: string;
  readonly jwtSecret: string;
  readonly logger: Logger;
  /** Apply pending migrations before serving. */
  readonly migrate?: boolean;
  /** Most sends per group commit (default 512). */
  readonly maxBatch?: number;
  /** Database connections (default 10). */
  readonly poolSize?: number;
}

export interface RunningCore {
  /** The bound gRPC address (real port when 0 was asked for). */
  readonly address: string;
  /** Identifies this instance in fan-out notifications. */
  readonly instanceId: string;
  readonly orm: Orm;
  readonly listener: PgListener;
  /** Stops serving: refuses new calls, answers in-flight sends, closes the database. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * The core process: the only component that touches the database. Serves
 * ChatService over gRPC (with health and reflection), commits sends in
 * groups and fans committed messages out, across instances via LISTEN/NOTIFY.
 */
export async function startCore(options: CoreOptions): Promise<RunningCore> {
  const instanceId = randomUUID();
  const logger = options.logger.child({ component: "core", instance: instanceId.slice(0, 8) });
  const orm = await openOrm({ databaseUrl: options.databaseUrl, poolSize: options.poolSize });
  try {
    if (options.migrate === true) {
      const applied = await migrate(orm);
      if (applied.length > 0) logger.info({ applied }, "migrations applied");
    }
    const unitOfWork = new UnitOfWork(orm, logger);
    const store = new MessageStore(instanceId);
    const fanout = new TopicFanout<ChatMessage>({
      origin: instanceId,
      topicOf: (message) => message.room,
      readRange: (room, from, to) =>
        unitOfWork.read({ label: "chat.fanout-read", context: { room } }, (em) => store.readRange(em, room, from, to)),
      logger,
    });
    const committer = createSendCommitter(unitOfWork, store, {
      maxBatch: options.maxBatch,
      onCommitted: (messages) => {
        fanout.committed(messages);
      },
    });
    const listener = new PgListener({
      databaseUrl: options.databaseUrl,
      channels: [CHAT_CHANNEL],
      logger,
      onNotification: (_channel, payload) => {
        fanout.notified(payload);
      },
      onReconnected: () => {
        fanout.resyncAll();
      },
    });
    await listener.start();

    const verifier = new TokenVerifier(options.jwtSecret);
    const grpc = await startGrpcServer({
      address: options.grpcAddress,
      services: [bindService(ChatService, chatServiceHandlers({ unitOfWork, store, committer, fanout, verifier, logger }))],
      interceptors: [loggingInterceptor(logger), authInterceptor(verifier)],
    });
    logger.info({ grpc: grpc.address }, "core serving");

    return {
      address: grpc.address,
      instanceId,
      orm,
      listener,
      async stop(graceMs = 5_000) {
        // Subscriptions never end by themselves: end them with UNAVAILABLE so
        // their callers resubscribe (with their last seq) elsewhere.
        fanout.hub.closeAll(
          new ParleyError(ErrorCategory.UNAVAILABLE, "server shutting down; resubscribe with the last seq seen", {
            context: { expected: true },
          }),
        );
        await grpc.shutdown(graceMs);
        await committer.idle();
        await listener.stop();
        await orm.close();
        logger.info("core stopped");
      },
    };
  } catch (error) {
    await orm.close();
    throw error;
  }
}
