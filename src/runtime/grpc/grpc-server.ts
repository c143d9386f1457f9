import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { TlsCertificates } from "../tls/certificates.js";
import { Health, HealthRegistry, ServingStatus } from "./health.js";
import { oversizeAsValidation } from "./message-size.js";
import { implement, type ImplementOptions, type ServiceHandlers } from "./server.js";
import { DEFAULT_SERVER_TRANSPORT, type ServerTransport, serverTransportOptions } from "./server-transport.js";
import { bindTls, type TlsBinding } from "./tls-binding.js";
import type { AnyService } from "./types.js";
import { type Logger, logError } from "../logger.js";
import { parleyMetrics } from "../telemetry/metrics.js";
import { ParleyError } from "../../wire/index.js";

/** A service and its handlers, ready to be served. */
export interface ServiceBinding {
  readonly service: AnyService;
  readonly handlers: ServiceHandlers<AnyService>;
}

/** Pairs a service with handlers typed for exactly that service. */
export function bindService<S extends AnyService>(service: S, handlers: ServiceHandlers<S>): ServiceBinding {
  return { service, handlers: handlers };
}

export interface GrpcServerOptions extends ImplementOptions {
  /** `host:port`; port 0 picks a free port. */
  readonly address: string;
  readonly services: readonly ServiceBinding[];
  /** Serve TLS with these certificates (mTLS when they have a CA); plaintext when unset. */
  readonly tls?: { readonly certificates: TlsCertificates; readonly logger: Logger };
  /** Largest request message accepted, in bytes (default 4 MiB); a larger one is VALIDATION. */
  readonly maxReceiveMessageBytes?: number;
  /** Where refusals made before any handler runs (an over-limit message) are logged. */
  readonly logger?: Logger;
  /** Serve gRPC server reflection (default true); health is served either way. */
  readonly reflection?: boolean;
  /** Streams per HTTP/2 connection, keepalive and idle limits (defaults in DEFAULT_SERVER_TRANSPORT). */
  readonly transport?: Partial<ServerTransport>;
}

export interface RunningGrpcServer {
  readonly server: Server;
  /** The bound `host:port`, with the real port when 0 was asked for. */
  readonly address: string;
  readonly port: number;
  readonly health: HealthRegistry;
  /** Settles once reflection is served (at once when it is off). */
  readonly reflectionReady: Promise<void>;
  /** Stops accepting calls, waits up to `graceMs` for running ones, then cuts the rest. */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * Starts a grpc-js server with the given services plus the standard health
 * service (every service SERVING once bound) and server reflection.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new Server({
    "grpc.max_receive_message_length": options.maxReceiveMessageBytes ?? 4 * 1024 * 1024,
    ...serverTransportOptions({ ...DEFAULT_SERVER_TRANSPORT, ...options.transport }),
    interceptors: [
      oversizeAsValidation((error, path) => {
        if (options.logger !== undefined) logError(options.logger, error, { rpc: path });
        parleyMetrics().errors.add(1, { category: error.categoryName, component: "core" });
      }),
    ],
  });
  const health = new HealthRegistry();
  for (const { service, handlers } of options.services) {
    const { definition, implementation } = implement(service, handlers, options);
    server.addService(definition, implementation);
  }
  const healthService = implement(Health, health.handlers());
  server.addService(healthService.definition, healthService.implementation);

  const host = options.address.slice(0, options.address.lastIndexOf(":"));
  let tls: TlsBinding | undefined;
  let port: number;
  if (options.tls === undefined) {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.address, ServerCredentials.createInsecure(), (error, bound) => {
        if (error) reject(error);
        else resolve(bound);
      });
    });
  } else {
    tls = await bindTls(server, host.replace(/^\[|\]$/g, ""), Number(options.address.slice(host.length + 1)), options.tls.certificates, options.tls.logger);
    port = tls.port;
  }
  health.setStatus("", ServingStatus.SERVING);
  for (const { service } of options.services) health.setStatus(service.typeName, ServingStatus.SERVING);
  // Reflection serves tools (buf curl, grpcurl), not clients: its library,
  // and protobufjs under it, load once the server listens — a tenth of a
  // start. A tool asking in that moment is told UNIMPLEMENTED.
  const reflectionReady =
    options.reflection === false
      ? Promise.resolve()
      : import("./reflection.js").then(
          ({ addReflection }) => {
            addReflection(server, [...options.services.map((binding) => binding.service), Health]);
          },
          (error: unknown) => {
            if (options.logger !== undefined) logError(options.logger, ParleyError.from(error), {}, "gRPC reflection could not be loaded; the services are served without it");
          },
        );

  return {
    server,
    address: `${host}:${port}`,
    port,
    health,
    reflectionReady,
    shutdown: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        health.shutdown();
        tls?.stopAccepting();
        const done = () => {
          tls?.destroy();
          resolve();
        };
        const timer = setTimeout(() => {
          server.forceShutdown();
          done();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          done();
        });
      }),
  };
}
