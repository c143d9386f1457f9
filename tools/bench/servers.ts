/**
 * The server side of `npm run bench:core`, run in its own process so that the
 * load generator does not share an event loop with the server it measures.
 *
 *   servers.ts noop   a ChatService that answers at once (no database, no auth)
 *   servers.ts core   the real core (env BENCH_DATABASE_URL, BENCH_JWT_SECRET;
 *                     BENCH_CORE_TELEMETRY=1 starts OpenTelemetry first, as `parley core` does)
 *
 * Both listen on 127.0.0.1 port 0 and report over IPC (see ipc.ts). The
 * process stops on a "stop" message, and also when its parent goes away.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ChatMessageSchema, ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { createLogger } from "../../src/runtime/logger.js";
import { hmacRules } from "../../src/runtime/auth/key-sources.js";
import { type ChildMessage, isParentMessage } from "./ipc.js";

interface Running {
  readonly address: string;
  stop(): Promise<void>;
}

/**
 * The baseline: the same gRPC plumbing as core (startGrpcServer, the typed
 * handler binding, protobuf-es codecs) answering with a fixed message shaped
 * like a stored one, so responses cost the same to encode and decode.
 */
async function startNoop(): Promise<Running> {
  const message = create(ChatMessageSchema, {
    id: "0b4a3c2e-7d1f-4e55-9a41-3f0c2d9e8b71",
    room: "bench-room-0",
    seq: 1n,
    sender: "bench-user",
    body: "x".repeat(64),
    clientMsgId: "bench-00000000-unary-0",
    createdAt: timestampFromDate(new Date()),
  });
  const notServed = () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by the no-op benchmark server"));
  const { bindService, startGrpcServer } = await import("../../src/runtime/grpc/grpc-server.js");
  const server = await startGrpcServer({
    address: "127.0.0.1:0",
    services: [
      bindService(ChatService, {
        sendMessage: () => Promise.resolve({ message, duplicate: false }),
        sendStream: async (requests, responses) => {
          for await (const item of requests) {
            await responses.send({ streamSeq: item.streamSeq, result: { case: "message", value: message } });
          }
        },
        sendBatches: async (requests, responses) => {
          for await (const { items } of requests) {
            await responses.send({ answers: items.map((item) => ({ streamSeq: item.streamSeq, result: { case: "message" as const, value: message } })) });
          }
        },
        listMessages: notServed,
        listRoomEvents: notServed,
        subscribe: notServed,
        markRead: notServed,
      }),
    ],
  });
  return { address: server.address, stop: () => server.shutdown(1_000) };
}

async function startCoreServer(): Promise<Running> {
  const databaseUrl = process.env.BENCH_DATABASE_URL;
  const jwtSecret = process.env.BENCH_JWT_SECRET;
  if (databaseUrl === undefined || jwtSecret === undefined) throw new Error("BENCH_DATABASE_URL and BENCH_JWT_SECRET must be set");
  if (process.env.BENCH_CORE_TELEMETRY === "1") {
    // Before @grpc/grpc-js and pg load (hence the dynamic imports), so that the pg instrumentation applies.
    const { startTelemetry } = await import("../../src/runtime/telemetry/setup.js");
    startTelemetry({ serviceName: "parley-bench-core" });
  }
  const { startCore } = await import("../../src/core/core-server.js");
  const core = await startCore({
    databaseUrl,
    grpcAddress: "127.0.0.1:0",
    tokens: hmacRules(jwtSecret),
    logger: createLogger({ level: "warn", name: "parley-bench-core" }),
    migrate: true,
    // The load sends to rooms nobody created: rooms on first use.
    implicitRooms: true,
  });
  return { address: core.address, stop: () => core.stop(2_000) };
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("tools/bench/servers.ts is started by tools/bench/core.ts (it needs an IPC channel)");
  const kind = process.argv[2];
  const server = kind === "noop" ? await startNoop() : kind === "core" ? await startCoreServer() : undefined;
  if (server === undefined) throw new Error(`unknown server kind ${String(kind)} (noop | core)`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.stop();
    // A normal exit (not a signal) so that --cpu-prof writes its profile.
    process.exit(0);
  };
  process.on("message", (message: unknown) => {
    if (!isParentMessage(message)) return;
    switch (message.type) {
      case "cpu":
        send({ type: "cpu", id: message.id, usage: process.cpuUsage() });
        break;
      case "stop":
        void stop();
        break;
    }
  });
  // The parent died or closed the channel: never outlive it.
  process.on("disconnect", () => void stop());
  send({ type: "ready", address: server.address });
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  send({ type: "failed", message });
  process.stderr.write(`bench server failed: ${message}\n`);
  process.exit(1);
});
