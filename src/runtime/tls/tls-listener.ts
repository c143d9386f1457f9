import { Socket } from "node:net";
import type { Server, TLSSocket } from "node:tls";
import type { Logger } from "../logger.js";
import type { TlsCertificates } from "./certificates.js";
import { describeHandshakeFailure } from "./handshake-failure.js";
import { LogBudget } from "./log-budget.js";

/** Failed handshakes logged as warnings per minute and listener; the rest at debug. */
const WARNINGS_PER_MINUTE = 5;

/** A client that opened a TCP connection but sends no handshake is cut after this long. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Runs a TLS listener (https or core's gRPC) on `certificates`: a reload
 * switches new connections to the new certificates (open connections keep
 * theirs), and every failed handshake gets a log line saying what to check
 * — a plaintext client, a missing or refused client certificate — within a
 * budget, so that a scanner cannot flood the logs. Returns the detach.
 */
export function serveTls(server: Server, certificates: TlsCertificates, logger: Logger): () => void {
  const log = logger.child({ listener: certificates.endpoint });
  const budget = new LogBudget(WARNINGS_PER_MINUTE, 60_000);
  const variables = { cert: certificates.variableOf("cert"), clientCa: certificates.variableOf("ca") };
  // Noted at connection time: a socket that Node cuts after the handshake
  // (a refused client certificate) no longer knows its peer when the
  // failure is reported.
  const peers = new WeakMap<Socket, string>();
  const onConnection = (raw: Socket) => {
    peers.set(raw, `${raw.remoteAddress ?? "unknown"}:${raw.remotePort ?? 0}`);
  };
  const onFailure = (error: Error, socket: TLSSocket) => {
    const failure = describeHandshakeFailure(error, socket, variables);
    const fields = { category: failure.category, code: failure.code, peer: peerOf(socket, peers) };
    // Node reports a handshake timeout here but leaves the connection open
    // (a client that never finishes its handshake would hold its socket for
    // ever); every failed handshake ends its connection.
    socket.destroy();
    switch (budget.take()) {
      case "log":
        log.warn(fields, failure.reason);
        break;
      case "last":
        log.warn({ ...fields, note: `more than ${WARNINGS_PER_MINUTE} failed handshakes this minute: further ones are logged at debug` }, failure.reason);
        break;
      case "demote":
        log.debug(fields, failure.reason);
        break;
    }
  };
  server.on("connection", onConnection);
  server.on("tlsClientError", onFailure);
  const stopReloads = certificates.onChange(() => {
    server.setSecureContext(certificates.secureContextOptions());
  });
  return () => {
    stopReloads();
    server.off("connection", onConnection);
    server.off("tlsClientError", onFailure);
  };
}

function peerOf(socket: TLSSocket, peers: WeakMap<Socket, string>): string {
  if (socket.remoteAddress !== undefined) return `${socket.remoteAddress}:${socket.remotePort ?? 0}`;
  // Node links a server-side TLS socket to its TCP socket only through this
  // undocumented field; without it the peer is simply unknown.
  const parent = (socket as TLSSocket & { _parent?: unknown })._parent;
  return (parent instanceof Socket ? peers.get(parent) : undefined) ?? "unknown";
}
