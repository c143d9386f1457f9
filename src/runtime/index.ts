/**
 * Node infrastructure with no chat knowledge: gRPC plumbing, interceptors,
 * token verification, telemetry, logging, configuration, and the stream
 * primitives core and bridge build their fan-out on. May import src/wire/
 * and gen/, never core/, bridge/, client/ or dev/ (the boundary lint
 * enforces it).
 */

// gRPC: typed servers and clients over protobuf-es descriptors.
export { bindService, startGrpcServer } from "./grpc/grpc-server.js";
export { ServingStatus } from "./grpc/health.js";
export type { ServiceBinding } from "./grpc/grpc-server.js";
export type { ServerTransport } from "./grpc/server-transport.js";
export type { ResponseSink, ServiceHandlers } from "./grpc/server.js";
export type { CallContext, ServerInterceptor } from "./grpc/call-context.js";
export { createClient, openChannel } from "./grpc/client.js";
export type { CallOptions, ClientOptions, ServiceClient } from "./grpc/client.js";
export { ResetPacer } from "./grpc/reset-pacer.js";
export { RefusalLogSampler } from "./refusal-log-sampler.js";
export { fromGrpcError } from "./grpc/status.js";

// Interceptors of the shape (next) => (context) => ...: tracing, failure logging, authentication, stream quotas.
export { tracingInterceptor } from "./interceptors/tracing.js";
export { loggingInterceptor } from "./interceptors/logging.js";
export { CALLER, authInterceptor } from "./interceptors/auth.js";
export { DEFAULT_STREAM_QUOTA, streamQuotaInterceptor } from "./interceptors/stream-quota.js";
export type { StreamQuotaLimits } from "./interceptors/stream-quota.js";

// Identity.
export { NOTIFICATIONS_SEND_SCOPE, ROOMS_ADMIN_SCOPE, ROOMS_RELAY_SCOPE, TokenVerifier, USER_ID, mintToken } from "./auth/tokens.js";
export type { Identity } from "./auth/tokens.js";

// Streams: the hub, replay-then-live, resuming, answers in order, end of turn.
export { FanoutHub } from "./streams/hub.js";
export type { Sequenced } from "./streams/hub.js";
export { follow } from "./streams/follow.js";
export { followResumably } from "./streams/resumable-follow.js";
export type { FollowPosition } from "./streams/resumable-follow.js";
export { OrderedQueue } from "./streams/ordered-queue.js";
export { OrderedRelease } from "./streams/ordered-release.js";
export type { ReleaseSlot } from "./streams/ordered-release.js";
export { atEndOfTurn } from "./streams/end-of-turn.js";

// Rate limits.
export { TokenBucket } from "./limits/token-bucket.js";
export { Semaphore } from "./limits/semaphore.js";

// Telemetry, logs, configuration, the browser-facing checks of HTTP requests.
export { telemetry } from "./telemetry/setup.js";
export { serveMetrics } from "./telemetry/metrics-server.js";
export { parleyMetrics } from "./telemetry/metrics.js";
export { originOf, rememberOrigin } from "./telemetry/origins.js";
export { contextFromTraceparent, currentTraceId, failSpan, inSpan, linkTo, recordRetry, setAttributesIfRecording, traceDelivery, traceparentOfSpan, tracer } from "./telemetry/tracing.js";
export { createLogger, logError } from "./logger.js";
export { hasLoopbackHost, isLoopbackHost, originAllowed } from "./http/request-origin.js";
export type { OriginPolicy } from "./http/request-origin.js";
export type { LogContext, Logger } from "./logger.js";
export { ConfigError, loadConfig, requireTokenRules } from "./config.js";
export { hmacRules, type TokenRules } from "./auth/key-sources.js";
export { fixedToken, renewedToken, tokenFromFile, type TokenSource } from "./auth/token-source.js";
export { ExpiringCache } from "./auth/expiring-cache.js";
export type { Config } from "./config.js";

// Transport security: certificates (reloadable), TLS listeners, TLS to core.
export type { TlsCertificates } from "./tls/certificates.js";
export { HANDSHAKE_TIMEOUT_MS, serveTls } from "./tls/tls-listener.js";
export { transportSecurity } from "./tls/transport-security.js";
export type { ClientTransport } from "./grpc/channel-credentials.js";
