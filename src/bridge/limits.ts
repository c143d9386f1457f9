/** The limits of one bridge connection; sent to clients in `welcome`. */
export interface ConnectionLimits {
  /** Frames larger than this close the connection with 1009 (enforced by ws). */
  readonly maxFrameBytes: number;
  /** Un-answered sends per connection; more are refused with RATE_LIMITED. */
  readonly maxInflightSends: number;
  /** Frames in a row the bridge itself refuses before the connection is closed with 4508 (core's refusals do not count). */
  readonly maxConsecutiveErrors: number;
  /** Bytes queued for a client before it counts as a slow consumer (4001). */
  readonly maxBufferedBytes: number;
  /** How often the server pings; a peer that missed the last pong is closed (4000). */
  readonly heartbeatIntervalMs: number;
  /** Rooms one connection may follow at once. */
  readonly maxSubscriptions: number;
  /** Un-answered requests other than sends (history, mark_read, ...); more get RATE_LIMITED. */
  readonly maxInflightRequests: number;
  /** Sustained frames per second a connection may send; past the burst it is closed with 4029. */
  readonly framesPerSecond: number;
  /** Frames a connection may send at once above the sustained rate. */
  readonly frameBurst: number;
  /** RATE_LIMITED answers a connection may earn per second: one that keeps ignoring `retry_after` is closed 4029... */
  readonly refusalsPerSecond: number;
  /** ...past this many at once. */
  readonly refusalBurst: number;
  /**
   * Frames of one connection handled in one turn of the event loop (a
   * request that calls core, a subscribe among them, counts as 8); the rest
   * wait for the next turn, behind other connections' frames.
   */
  readonly framesPerTurn: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxFrameBytes: 64 * 1024,
  maxInflightSends: 256,
  maxConsecutiveErrors: 32,
  maxBufferedBytes: 4 * 1024 * 1024,
  heartbeatIntervalMs: 15_000,
  maxSubscriptions: 64,
  maxInflightRequests: 32,
  framesPerSecond: 1_000,
  frameBurst: 2_000,
  refusalsPerSecond: 10,
  refusalBurst: 100,
  framesPerTurn: 32,
};

/**
 * The limits one bridge process keeps across all its connections: what one
 * user or one address may hold at once, how fast one user may send and
 * subscribe whatever number of connections it spreads that over, and how
 * long and how many TCP connections may stay without a WebSocket. Each
 * bridge enforces its own: they protect the process's users from each other
 * (see docs/security.md, "Limits").
 */
export interface AdmissionLimits {
  /** WebSocket connections one user may hold at once; the next upgrade gets 429. */
  readonly maxConnectionsPerUser: number;
  /** WebSocket connections one client address may hold at once (behind a trusted proxy: the forwarded address). */
  readonly maxConnectionsPerAddress: number;
  /** TCP connections without a WebSocket yet (partial requests, pending upgrades, plain HTTP), all addresses together; more are dropped at accept. */
  readonly maxPendingConnections: number;
  /** Of those, from one peer address (trusted proxies excepted: every client comes through them). */
  readonly maxPendingConnectionsPerAddress: number;
  /** A request's headers must be complete this soon after its connection opened (slowloris). */
  readonly headersTimeoutMs: number;
  /** A whole HTTP request (an upgrade included) must have arrived this soon. */
  readonly requestTimeoutMs: number;
  /** Sends one user may make per second over all their connections (token bucket)... */
  readonly sendsPerSecondPerUser: number;
  /** ...and at once above that rate. */
  readonly sendBurstPerUser: number;
  /** Rooms one user may follow at once over all their connections (each connection's route room aside). */
  readonly maxSubscriptionsPerUser: number;
  /** `subscribe` frames one user may send per second (each starts an authorization and a replay at core)... */
  readonly subscribesPerSecondPerUser: number;
  /** ...and at once above that rate: a client following all its rooms when it connects. */
  readonly subscribeBurstPerUser: number;
  /**
   * Requests of one user being worked on at core at once — subscriptions
   * being authorized and replayed, history pages, room operations — over
   * all their connections; more wait their turn (sends have their own path
   * and rate). Bounds the share of core one user can take from the others.
   */
  readonly maxCoreCallsPerUser: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  maxConnectionsPerUser: 32,
  maxConnectionsPerAddress: 256,
  maxPendingConnections: 1_024,
  maxPendingConnectionsPerAddress: 32,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  sendsPerSecondPerUser: 50,
  sendBurstPerUser: 500,
  maxSubscriptionsPerUser: 256,
  subscribesPerSecondPerUser: 20,
  subscribeBurstPerUser: 128,
  maxCoreCallsPerUser: 2,
};
