import { type Server, ServerCredentials } from "@grpc/grpc-js";
import type { Socket } from "node:net";
import { createServer } from "node:tls";
import type { Logger } from "../logger.js";
import type { TlsCertificates } from "../tls/certificates.js";
import { HANDSHAKE_TIMEOUT_MS, serveTls } from "../tls/tls-listener.js";

/** A TLS port in front of a grpc-js server. */
export interface TlsBinding {
  readonly port: number;
  /** Accepts no new connections; open ones go on. */
  stopAccepting(): void;
  /** Cuts whatever is left (handshakes in progress), once grpc-js has closed its sessions. */
  destroy(): void;
}

/**
 * Serves `server` over TLS on `host:port`. parley terminates TLS itself with
 * Node's tls.Server and hands each connection, once its handshake (and its
 * client certificate, when `certificates` has a CA) verified, to grpc-js
 * through its connection injector. grpc-js still sees a TLS socket (the
 * call's auth context carries the peer certificate), and parley gets what
 * grpc-js keeps to itself: a log line for every failed handshake — a
 * plaintext client, a refused client certificate — and the same certificate
 * reload as the HTTPS listener.
 */
export async function bindTls(server: Server, host: string, port: number, certificates: TlsCertificates, logger: Logger): Promise<TlsBinding> {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const mutual = certificates.material.ca !== undefined;
  const listener = createServer(
    {
      ...certificates.secureContextOptions(),
      // With a client CA, a client without a certificate that chains to it
      // never gets past the handshake.
      requestCert: mutual,
      rejectUnauthorized: mutual,
      ALPNProtocols: ["h2"],
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    },
    (socket) => {
      injector.injectConnection(socket);
    },
  );
  const detach = serveTls(listener, certificates, logger);
  const sockets = new Set<Socket>();
  listener.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(port, host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const bound = listener.address();
  return {
    port: typeof bound === "object" && bound !== null ? bound.port : port,
    stopAccepting() {
      detach();
      listener.close();
    },
    destroy() {
      for (const socket of sockets) socket.destroy();
      injector.destroy();
    },
  };
}
