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
};
