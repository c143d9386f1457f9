import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { RoomService } from "../../gen/parley/v1/room_service_pb.js";
import { mintToken, NOTIFICATIONS_SEND_SCOPE, ROOMS_RELAY_SCOPE } from "../../src/runtime/auth/tokens.js";
import { hmacRules } from "../../src/runtime/auth/key-sources.js";
import { fixedToken } from "../../src/runtime/auth/token-source.js";
import { type CoreOptions, type RunningCore, startCore } from "../../src/core/core-server.js";
import type { ClientTransport } from "../../src/runtime/grpc/channel-credentials.js";
import { createClient, type ServiceClient } from "../../src/runtime/grpc/client.js";
import type { TestDatabase } from "./database.js";
import { LogCapture } from "./logs.js";

export const TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256";

/** The one subject test cores take relay tokens from (PARLEY_RELAY_SUBJECTS). */
export const TEST_RELAY_SUBJECT = "parley-bridge-test";

/**
 * How test cores verify tokens: HS256 over TEST_JWT_SECRET, up to a month
 * long (the bridge's expiry timer is tested with month-long tokens; the
 * default maximum has its own tests).
 */
export const TEST_TOKEN_RULES = hmacRules(TEST_JWT_SECRET, { maxLifetimeSeconds: 31 * 24 * 3600, relaySubjects: [TEST_RELAY_SUBJECT] });

/** A test bridge's own credential at core: a relay token, never a key. */
export const TEST_RELAY_TOKEN = fixedToken(await mintToken(TEST_JWT_SECRET, TEST_RELAY_SUBJECT, { scopes: [ROOMS_RELAY_SCOPE], expiresInSeconds: 6 * 3600 }));

export interface TestCore {
  readonly core: RunningCore;
  readonly logs: LogCapture;
  /** A ChatService client acting as `user` (a fresh token per client). */
  chat(user: string): Promise<ServiceClient<typeof ChatService>>;
  /** A RoomService client acting as `user`, with the token scopes given. */
  rooms(user: string, options?: { scopes?: readonly string[] }): Promise<ServiceClient<typeof RoomService>>;
  /** A NotificationService client acting as `user`; `sender` adds the send scope. */
  notifications(user: string, options?: { sender?: boolean }): Promise<ServiceClient<typeof NotificationService>>;
  /** Stops core; `graceMs` 0 cuts in-flight calls (default 1 s). */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A real core on port 0 against the test database (migrated on first start),
 * with rooms on first use unless `implicitRooms: false` is passed: most tests
 * are about messages, not about who may send them. With `tls`, pass the
 * helper clients' `clientTransport` too.
 */
export async function startTestCore(db: TestDatabase, options: Partial<CoreOptions> & { clientTransport?: ClientTransport } = {}): Promise<TestCore> {
  const { clientTransport, ...coreOptions } = options;
  const logs = new LogCapture("debug");
  const core = await startCore({
    databaseUrl: db.url,
    grpcAddress: "127.0.0.1:0",
    tokens: TEST_TOKEN_RULES,
    logger: logs.logger,
    migrate: true,
    implicitRooms: true,
    ...coreOptions,
  });
  const clients: { close(): void }[] = [];
  return {
    core,
    logs,
    async chat(user) {
      const token = await mintToken(TEST_JWT_SECRET, user);
      const client = createClient(ChatService, core.address, { ...clientTransport, headers: () => ({ authorization: `Bearer ${token}` }) });
      clients.push(client);
      return client;
    },
    async rooms(user, options = {}) {
      const token = await mintToken(TEST_JWT_SECRET, user, { scopes: options.scopes ?? [] });
      const client = createClient(RoomService, core.address, { ...clientTransport, headers: () => ({ authorization: `Bearer ${token}` }) });
      clients.push(client);
      return client;
    },
    async notifications(user, options = {}) {
      const token = await mintToken(TEST_JWT_SECRET, user, { scopes: options.sender === true ? [NOTIFICATIONS_SEND_SCOPE] : [] });
      const client = createClient(NotificationService, core.address, { ...clientTransport, headers: () => ({ authorization: `Bearer ${token}` }) });
      clients.push(client);
      return client;
    },
    async stop(graceMs = 1_000) {
      for (const client of clients) client.close();
      await core.stop(graceMs);
    },
  };
}

/** Collects a subscription's messages until `count` arrived (or the stream ends). */
export async function collect(
  events: AsyncIterable<{ event: { case: string | undefined; value?: unknown } }>,
  count: number,
): Promise<{ seqs: bigint[]; bodies: string[]; caughtUp: bigint | undefined }> {
  const seqs: bigint[] = [];
  const bodies: string[] = [];
  let caughtUp: bigint | undefined;
  for await (const { event } of events) {
    if (event.case === "message") {
      const message = event.value as { seq: bigint; body: string };
      seqs.push(message.seq);
      bodies.push(message.body);
      if (seqs.length >= count) break;
    } else if (event.case === "caughtUp") {
      caughtUp = (event.value as { headSeq: bigint }).headSeq;
    }
  }
  return { seqs, bodies, caughtUp };
}

export function range(from: number, to: number): bigint[] {
  return Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));
}
