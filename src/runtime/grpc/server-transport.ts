import type { ChannelOptions } from "@grpc/grpc-js";

/** HTTP/2 connection limits of the gRPC server: how many streams one connection carries, and when a connection is ended. */
export interface ServerTransport {
  /**
   * Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
   * A conforming client (grpc-js, any HTTP/2 library) holds calls past it on
   * its side until one of its streams ends; a client that opens more anyway
   * loses the connection (PROTOCOL_ERROR).
   */
  readonly maxConcurrentStreams: number;
  /** The server pings every connection this often (0: never); a peer that does not answer is cut. */
  readonly keepaliveTimeMs: number;
  /** How long the server waits for the answer to its ping before it cuts the connection. */
  readonly keepaliveTimeoutMs: number;
  /** A connection without any call for this long is closed (GOAWAY; clients reconnect on their next call). 0: never. */
  readonly maxConnectionIdleMs: number;
}

/**
 * 16,384 streams: the bridge follows each room its users follow with one
 * Subscribe over a few connections, and a call past the limit waits in the
 * bridge behind them — its users' sends included — so the limit must sit
 * far above what a bridge holds (users get their own caps per identity).
 * Keepalive 30 s + 10 s: a vanished peer's streams (and the per-caller
 * slots they hold) are freed within 40 s. Idle 5 minutes: connections that
 * carry nothing are not kept for ever.
 */
export const DEFAULT_SERVER_TRANSPORT: ServerTransport = {
  maxConcurrentStreams: 16_384,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  maxConnectionIdleMs: 300_000,
};

/**
 * The grpc-js server options for `transport` (each read by grpc-js 1.14's
 * Server). Nothing polices clients' pings there: grpc-js has no
 * `min_ping_interval`/ping-strike setting on the server, so the bridge's
 * keepalive pings (every 30 s, src/runtime/grpc/client.ts) are always
 * answered, never punished with a GOAWAY.
 */
export function serverTransportOptions(transport: ServerTransport): ChannelOptions {
  return {
    "grpc.max_concurrent_streams": transport.maxConcurrentStreams,
    // grpc-js takes 0 as "no pings"; an absent option is the same.
    "grpc.keepalive_time_ms": transport.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": transport.keepaliveTimeoutMs,
    // grpc-js would close every connection as soon as it has no call with 0: left out instead.
    ...(transport.maxConnectionIdleMs > 0 ? { "grpc.max_connection_idle_ms": transport.maxConnectionIdleMs } : {}),
  };
}
