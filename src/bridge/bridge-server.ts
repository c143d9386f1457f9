import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { CloseCode } from "../../gen/parley/v1/frames_pb.js";
import { IdentityService } from "../../gen/parley/v1/identity_pb.js";
import {
  type ClientTransport,
  createClient,
  failSpan,
  HANDSHAKE_TIMEOUT_MS,
  type Identity,
  logError,
  type Logger,
  originAllowed,
  type OriginPolicy,
  parleyMetrics,
  RefusalLogSampler,
  serveTls,
  telemetry,
  type TlsCertificates,
  type TokenSource,
  tracer,
} from "../runtime/index.js";
import { type FrameFormat, httpStatusForCategory, ParleyError, ROOM_ID, validationError } from "../wire/index.js";
import { context, type Span, SpanKind, trace } from "@opentelemetry/api";
import type { ConnectionObserver } from "./connection/deps.js";
import { Connection } from "./connection/session.js";
import { clientFacing } from "./client-facing.js";
import { RemoteIdentities } from "./core-link/remote-identities.js";
import { RoomFeeds } from "./core-link/room-feeds.js";
import { CoreSessions } from "./core-link/core-sessions.js";
import { type AdmissionLimits, type ConnectionLimits, DEFAULT_ADMISSION_LIMITS, DEFAULT_LIMITS } from "./limits.js";
import { Admission, type Seat } from "./admission/admission.js";
import { TurnScheduler } from "./connection/turn-scheduler.js";
import { type RouteDefinition, type RouteMatch, RouteTable } from "./routes.js";

/** parley's WebSocket routes. Checked when the bridge starts. */
export const ROUTES: readonly RouteDefinition[] = [
  { pattern: "/ws/chat/{room}", kind: "chat", params: { room: ROOM_ID } },
  { pattern: "/ws/notifications", kind: "notifications" },
  { pattern: "/ws", kind: "session" },
];

/** The subprotocol a client may offer (with `bearer.<jwt>`) to be selected. */
const SUBPROTOCOL = "parley.v1";
const BEARER_PREFIX = "bearer.";
const INT64_MAX = 2n ** 63n - 1n;

export interface BridgeOptions {
  /** `host:port` for HTTP and WebSocket; port 0 picks a free one. */
  readonly httpAddress: string;
  /** Where core's gRPC server is. */
  readonly coreAddress: string;
  /**
   * The bridge's own credential at core: a token with the `rooms:relay`
   * scope, which follows rooms' logs and carries users' sends, each with
   * the user's own token, and acts as nobody by itself. Undefined when core
   * knows the bridge by its client certificate (mTLS, `coreTransport`). The
   * bridge holds no key; users' tokens are verified by core.
   */
  readonly relayToken: TokenSource | undefined;
  /** Serve HTTPS and wss:// with these certificates; plaintext HTTP when unset. */
  readonly tls?: TlsCertificates;
  /** How the bridge's clients reach core (TLS, mTLS); plaintext when unset. */
  readonly coreTransport?: ClientTransport;
  readonly logger: Logger;
  readonly limits?: Partial<ConnectionLimits>;
  /** Caps across connections: per user, per address, pending TCP connections, request timeouts. */
  readonly admission?: Partial<AdmissionLimits>;
  /**
   * Load balancers whose `X-Forwarded-For` names the client (addresses, CIDR
   * ranges, `loopback`, `uniquelocal`); none by default: the TCP peer is the
   * client and the header is ignored.
   */
  readonly trustedProxies?: readonly string[];
  readonly routes?: readonly RouteDefinition[];
  /** How long a room's core subscription stays open after its last follower left (default 10 s; 0 closes at once). */
  readonly feedLingerMs?: number;
  /** HTTP/2 sessions to core (default 4): losing one is losing a share of the feeds and sends, each retried. */
  readonly coreSessions?: number;
  /** Answer deadline of one send at core before the stream is re-opened. */
  readonly sendAnswerTimeoutMs?: number;
  readonly observe?: ConnectionObserver;
  /**
   * Browser pages that may open a WebSocket (checked on `Origin`, before the
   * token). Default: only pages from the bridge's own host and port.
   */
  readonly origins?: OriginPolicy;
  /** Extra HTTP routes (e.g. `/metrics`, the demo page), tried before 404. */
  readonly httpHandler?: (request: IncomingMessage, response: ServerResponse) => boolean;
}

export interface RunningBridge {
  /** The bound `host:port`. */
  readonly address: string;
  readonly port: number;
  readonly connections: ReadonlySet<Connection>;
  readonly roomFeeds: RoomFeeds;
  readonly coreSessions: CoreSessions;
  /**
   * Graceful stop: refuse new connections, tell every client to reconnect
   * (go_away + 1001), let in-flight sends be answered (up to `graceMs`), exit.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * The bridge: browsers' WebSocket connections in front of core's gRPC
 * services. It never touches the database; every request becomes a typed
 * gRPC call made with the browser user's own token.
 */
export async function startBridge(options: BridgeOptions): Promise<RunningBridge> {
  const routes = new RouteTable(options.routes ?? ROUTES);
  const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const admission = new Admission({ ...DEFAULT_ADMISSION_LIMITS, ...options.admission }, options.trustedProxies ?? []);
  const turns = new TurnScheduler();
  const logger = options.logger.child({ component: "bridge" });

  // The bridge's own identity, for what it does for all connections at once
  // (the shared room feeds, the send stream that carries users' tokens).
  // Who may receive a room's log is checked per connection, with that
  // connection's own token.
  const relayToken = options.relayToken;
  const clientOptions = { ...options.coreTransport, headers: (): Record<string, string> => (relayToken === undefined ? {} : { authorization: `Bearer ${relayToken.current()}` }) };
  const coreSessions = new CoreSessions({
    coreAddress: options.coreAddress,
    client: clientOptions,
    count: options.coreSessions,
    sendAnswerTimeoutMs: options.sendAnswerTimeoutMs,
    logger,
  });
  // Health and token checks on a session of their own: they say whether core
  // answers, whatever the data sessions are going through.
  const health = createClient(Health, options.coreAddress, { ...options.coreTransport });
  // Users' tokens are verified by core; each call carries the token itself.
  const identityClient = createClient(IdentityService, options.coreAddress, { ...options.coreTransport });
  const identities = new RemoteIdentities(identityClient);
  const roomFeeds = new RoomFeeds((room) => coreSessions.forRoom(room).chat, logger, { lingerMs: options.feedLingerMs });
  const connections = new Set<Connection>();
  // A client refused for its rate at the upgrade may come back many times a second: one line a second per address.
  const upgradeRefusals = new RefusalLogSampler();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxFrameBytes,
    perMessageDeflate: false,
    // Only parley.v1 is ever selected: the answer is logged and cached by
    // proxies, and a selected `bearer.` entry would echo the token in it
    // (tokenOf refuses a bearer entry offered without parley.v1).
    handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  let accepting = true;

  const onRequest = (request: IncomingMessage, response: ServerResponse) => {
    void handleHttp(request, response);
  };
  // A request (an upgrade's included) must arrive in seconds, not in Node's
  // minutes: a slowloris client holds a socket only that long. Node checks
  // the deadlines every connectionsCheckingInterval.
  const timeouts = {
    headersTimeout: admission.limits.headersTimeoutMs,
    requestTimeout: admission.limits.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1_000, admission.limits.headersTimeoutMs),
  };
  const https = options.tls === undefined ? undefined : createHttpsServer({ ...options.tls.secureContextOptions(), handshakeTimeout: HANDSHAKE_TIMEOUT_MS, ...timeouts }, onRequest);
  const server: Server = https ?? createServer(timeouts, onRequest);
  server.on("connection", (socket: Socket) => {
    admission.accepted(socket);
  });
  const detachTls = https === undefined || options.tls === undefined ? undefined : serveTls(https, options.tls, logger);

  async function handleHttp(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? "/", "http://bridge").pathname;
    const metrics = telemetry();
    if (path === "/metrics" && metrics) {
      metrics.metricsHandler(request, response);
    } else if (path === "/healthz") {
      respond(response, 200, { status: "ok" });
    } else if (path === "/readyz") {
      const ready = accepting && (await coreServing());
      // Not where core is: this listener faces the internet (the log has it).
      respond(response, ready ? 200 : 503, { status: ready ? "ready" : "not ready" });
    } else if (!(options.httpHandler?.(request, response) ?? false)) {
      respond(response, 404, { category: "ROUTING", message: `no route for ${path}` });
    }
  }

  // What the last health check of core found; a change is logged, a
  // failure with what to check (a TLS mismatch says which setting).
  let coreReady: boolean | undefined;
  async function coreServing(): Promise<boolean> {
    let failure: ParleyError | undefined;
    try {
      const answer = await health.check({ service: "" }, { timeoutMs: 1_000 });
      if (answer.status !== ServingStatus.SERVING) failure = new ParleyError(ErrorCategory.UNAVAILABLE, `core's health is ${ServingStatus[answer.status]}`);
    } catch (error) {
      failure = ParleyError.from(error, ErrorCategory.UNAVAILABLE);
    }
    if ((failure === undefined) !== coreReady) {
      coreReady = failure === undefined;
      if (failure === undefined) logger.info({ core: options.coreAddress }, "core is serving");
      else logger.warn({ category: failure.categoryName, core: options.coreAddress }, `core not ready: ${failure.message}`);
    }
    return failure === undefined;
  }

  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(request, socket, head);
  });

  /** A span per upgrade: refusals are failures with a category, like any other. */
  function upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const span = tracer().startSpan("ws.upgrade", {
      kind: SpanKind.SERVER,
      attributes: { "url.path": (request.url ?? "").split("?")[0] ?? "", "client.address": request.socket.remoteAddress ?? "" },
    });
    return context.with(trace.setSpan(context.active(), span), () => acceptOrRefuse(request, socket, head, span)).finally(() => {
      span.end();
    });
  }

  async function acceptOrRefuse(request: IncomingMessage, socket: Duplex, head: Buffer, span: Span): Promise<void> {
    let accepted: { match: RouteMatch; identity: Identity; token: string; afterSeq: bigint | undefined; format: FrameFormat; seat: Seat };
    let address: string | undefined;
    let addressRelease: (() => void) | undefined;
    try {
      if (!accepting) throw new ParleyError(ErrorCategory.UNAVAILABLE, "the bridge is shutting down");
      if (!originAllowed(request.headers, options.origins ?? {})) throw foreignOrigin(request.headers.origin ?? "");
      const url = new URL(request.url ?? "/", "http://bridge");
      const match = routes.match(url.pathname);
      const token = tokenOf(request, url);
      address = admission.addressOf(request);
      // The address's cap before the token: a refusal costs no call to core.
      addressRelease = admission.admitAddress(address);
      const identity = await identities.verify(token);
      const seat = admission.admitUser(identity.user, addressRelease);
      accepted = { match, identity, token, afterSeq: afterSeqOf(url), format: url.searchParams.get("format") === "binary" ? "binary" : "json", seat };
    } catch (error) {
      addressRelease?.();
      const failure = ParleyError.from(error);
      failSpan(span, failure);
      const unlogged = failure.category === ErrorCategory.RATE_LIMITED ? upgradeRefusals.take(address ?? request.socket.remoteAddress) : 0;
      if (unlogged !== undefined) {
        const fields = { path: (request.url ?? "").split("?")[0], peer: request.socket.remoteAddress, client_address: address };
        logError(logger, failure, unlogged === 0 ? fields : { ...fields, unlogged }, `upgrade refused: ${failure.message}`);
      }
      refuseUpgrade(socket, clientFacing(failure));
      return;
    }
    // Held as long as the TCP connection is, whether or not the upgrade completes.
    socket.once("close", accepted.seat.release);
    if (socket.destroyed) {
      accepted.seat.release();
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      admission.upgraded(request.socket);
      const session = coreSessions.forUser(accepted.identity.user);
      const connection = new Connection({
        id: randomUUID(),
        socket: ws,
        identity: accepted.identity,
        token: accepted.token,
        route: accepted.match,
        afterSeq: accepted.afterSeq,
        initialFormat: accepted.format,
        chat: session.chat,
        notifications: session.notifications,
        rooms: session.rooms,
        sendLink: session.sendLink,
        roomFeeds,
        identities,
        limits,
        budget: accepted.seat.budget,
        turns,
        logger,
        observe: options.observe ?? metricsObserver,
        onClosed: () => {
          connections.delete(connection);
          parleyMetrics().connectionsOpen.add(-1);
        },
      });
      connections.add(connection);
      parleyMetrics().connectionsOpen.add(1);
      connection.start();
    });
  }

  const [host, port] = splitAddress(options.httpAddress);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  const boundPort = typeof bound === "object" && bound !== null ? bound.port : port;
  const address = `${host}:${boundPort}`;
  logger.info({ http: address, tls: https !== undefined, core: options.coreAddress }, "bridge serving");
  // Says at once whether core can be reached (and if not, why), not at the first /readyz.
  void coreServing();

  return {
    address,
    port: boundPort,
    connections,
    roomFeeds,
    coreSessions,
    async stop(graceMs = 5_000) {
      accepting = false;
      const closed = new Promise<void>((resolve) => server.close(() => { resolve(); }));
      await coreSessions.drain(graceMs);
      for (const connection of [...connections]) connection.close(CloseCode.GOING_AWAY, "the server is restarting; reconnect and resume");
      roomFeeds.close();
      coreSessions.close();
      admission.close();
      server.closeAllConnections();
      await closed;
      wss.close();
      health.close();
      identityClient.close();
      detachTls?.();
      logger.info("bridge stopped");
    },
  };
}

/** Connection events as OpenTelemetry metrics. */
const metricsObserver: ConnectionObserver = {
  frameIn: (kind) => { parleyMetrics().framesIn.add(kind); },
  frameOut: (kind) => { parleyMetrics().framesOut.add(kind); },
  error: (category) => { parleyMetrics().errors.add(1, { category, component: "bridge" }); },
  sendAnswered: (latencyMs, ok) => {
    parleyMetrics().sendLatency.record(latencyMs / 1000, { outcome: ok ? "stored" : "error" });
  },
};

/** The token from `?token=` or a `bearer.<jwt>` entry of Sec-WebSocket-Protocol. */
function tokenOf(request: IncomingMessage, url: URL): string {
  const fromQuery = url.searchParams.get("token");
  if (fromQuery !== null && fromQuery !== "") return fromQuery;
  const header = request.headers["sec-websocket-protocol"];
  const offered = (typeof header === "string" ? header : "").split(",").map((p) => p.trim());
  const bearer = offered.find((p) => p.startsWith(BEARER_PREFIX));
  if (bearer !== undefined) {
    // A browser fails a handshake whose answer selects none of its entries,
    // and the bridge never selects the token itself: say so at once.
    if (!offered.includes(SUBPROTOCOL)) throw validationError("Sec-WebSocket-Protocol", `offer "${SUBPROTOCOL}" beside the bearer.<jwt> entry: ["${SUBPROTOCOL}", "bearer." + jwt]`);
    return bearer.slice(BEARER_PREFIX.length);
  }
  throw new ParleyError(ErrorCategory.UNAUTHENTICATED, "unauthenticated: no token (use ?token= or the bearer.<jwt> subprotocol)");
}

/** A browser page the origin policy does not allow: cross-site WebSocket hijacking stops here. */
function foreignOrigin(origin: string): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, `pages from origin ${JSON.stringify(origin.slice(0, 200))} may not open a WebSocket here (PARLEY_ALLOWED_ORIGINS)`);
}

function afterSeqOf(url: URL): bigint | undefined {
  const value = url.searchParams.get("after_seq");
  if (value === null || value === "") return undefined;
  if (!/^\d{1,19}$/.test(value) || BigInt(value) > INT64_MAX) throw validationError("after_seq", "must be an integer from 0 to 2^63-1");
  return BigInt(value);
}

/** Refuses an upgrade with an HTTP status and a JSON reason, before any WebSocket exists. */
function refuseUpgrade(socket: Duplex, error: ParleyError): void {
  const status = httpStatusForCategory(error.category);
  const retryAfterMs = error.retryAfterMs;
  const body = JSON.stringify({ category: error.categoryName, message: error.message, field: error.field, retryAfterMs });
  // Retry-After is whole seconds (RFC 9110), rounded up.
  const retryAfter = retryAfterMs === undefined ? "" : `Retry-After: ${Math.max(1, Math.ceil(retryAfterMs / 1000))}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retryAfter}Connection: close\r\n\r\n${body}`,
  );
}

function statusText(status: number): string {
  return (
    { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout" }[
      status
    ] ?? "Error"
  );
}

function respond(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  response.end(text);
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon).replace(/^\[|\]$/g, ""), Number(address.slice(colon + 1))];
}
