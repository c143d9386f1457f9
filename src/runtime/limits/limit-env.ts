// The bridge's limits as environment variables: one table, so that each
// variable, the limit it sets and its bounds are read in one place (the
// defaults live with the limits, in src/bridge/limits.ts).
import proxyAddr from "proxy-addr";
import { z } from "zod";

/** Per-connection limits (ConnectionLimits) an operator may set. */
type ConnectionLimitName = "maxFrameBytes" | "maxInflightSends" | "maxSubscriptions" | "framesPerSecond" | "frameBurst";
/** Per-bridge limits (AdmissionLimits) an operator may set. */
type AdmissionLimitName =
  | "maxConnectionsPerUser"
  | "maxConnectionsPerAddress"
  | "maxPendingConnections"
  | "maxPendingConnectionsPerAddress"
  | "headersTimeoutMs"
  | "requestTimeoutMs"
  | "sendsPerSecondPerUser"
  | "sendBurstPerUser"
  | "maxSubscriptionsPerUser"
  | "subscribesPerSecondPerUser"
  | "subscribeBurstPerUser"
  | "maxCoreCallsPerUser";

type Entry = readonly ["connection", ConnectionLimitName, number, number] | readonly ["admission", AdmissionLimitName, number, number];

/** Variable → [which limits, which limit, min, max]. */
const LIMIT_VARIABLES = {
  PARLEY_WS_MAX_FRAME_BYTES: ["connection", "maxFrameBytes", 1_024, 16 * 1024 * 1024],
  PARLEY_WS_MAX_INFLIGHT_SENDS: ["connection", "maxInflightSends", 1, 65_536],
  PARLEY_WS_MAX_SUBSCRIPTIONS: ["connection", "maxSubscriptions", 1, 65_536],
  PARLEY_WS_FRAMES_PER_SECOND: ["connection", "framesPerSecond", 1, 1_000_000],
  PARLEY_WS_FRAME_BURST: ["connection", "frameBurst", 1, 1_000_000],
  PARLEY_WS_MAX_CONNECTIONS_PER_USER: ["admission", "maxConnectionsPerUser", 1, 1_000_000],
  PARLEY_WS_MAX_CONNECTIONS_PER_ADDRESS: ["admission", "maxConnectionsPerAddress", 1, 10_000_000],
  PARLEY_HTTP_MAX_PENDING_CONNECTIONS: ["admission", "maxPendingConnections", 1, 10_000_000],
  PARLEY_HTTP_MAX_PENDING_PER_ADDRESS: ["admission", "maxPendingConnectionsPerAddress", 1, 10_000_000],
  PARLEY_HTTP_HEADERS_TIMEOUT_MS: ["admission", "headersTimeoutMs", 500, 120_000],
  PARLEY_HTTP_REQUEST_TIMEOUT_MS: ["admission", "requestTimeoutMs", 500, 600_000],
  PARLEY_WS_SENDS_PER_SECOND_PER_USER: ["admission", "sendsPerSecondPerUser", 1, 10_000_000],
  PARLEY_WS_SEND_BURST_PER_USER: ["admission", "sendBurstPerUser", 1, 10_000_000],
  PARLEY_WS_MAX_SUBSCRIPTIONS_PER_USER: ["admission", "maxSubscriptionsPerUser", 1, 10_000_000],
  PARLEY_WS_SUBSCRIBES_PER_SECOND_PER_USER: ["admission", "subscribesPerSecondPerUser", 1, 10_000_000],
  PARLEY_WS_SUBSCRIBE_BURST_PER_USER: ["admission", "subscribeBurstPerUser", 1, 10_000_000],
  PARLEY_WS_MAX_CORE_CALLS_PER_USER: ["admission", "maxCoreCallsPerUser", 1, 100_000],
} as const satisfies Record<string, Entry>;

type LimitVariable = keyof typeof LIMIT_VARIABLES;

/** The zod shape of the limit variables, merged into the environment's schema. */
export const LIMIT_ENV_SHAPE = Object.fromEntries(
  Object.entries(LIMIT_VARIABLES).map(([name, [, , min, max]]) => [name, z.coerce.number().int().min(min).max(max).optional()]),
) as Record<LimitVariable, z.ZodOptional<z.ZodCoercedNumber>>;

/** `PARLEY_TRUSTED_PROXIES`: addresses, CIDR ranges or loopback / linklocal / uniquelocal. */
export const trustedProxies = z.string().transform((value, context): string[] => {
  const list = value.split(",").map((part) => part.trim()).filter((part) => part !== "");
  try {
    proxyAddr.compile(list);
  } catch (error) {
    context.addIssue({ code: "custom", message: `must be IP addresses or CIDR ranges (or loopback, linklocal, uniquelocal), separated by commas: ${error instanceof Error ? error.message : String(error)}` });
    return z.NEVER;
  }
  return list;
});

/** The limits set in the environment; unset ones keep their defaults. */
export interface LimitSettings {
  readonly connection: { readonly [K in ConnectionLimitName]?: number };
  readonly admission: { readonly [K in AdmissionLimitName]?: number };
}

/** Picks the set limit variables out of the parsed environment. */
export function limitSettings(parsed: Readonly<Partial<Record<LimitVariable, number>>>): LimitSettings {
  const connection: Partial<Record<ConnectionLimitName, number>> = {};
  const admission: Partial<Record<AdmissionLimitName, number>> = {};
  for (const [name, entry] of Object.entries(LIMIT_VARIABLES) as [LimitVariable, Entry][]) {
    const value = parsed[name];
    if (value === undefined) continue;
    if (entry[0] === "connection") connection[entry[1]] = value;
    else admission[entry[1]] = value;
  }
  return { connection, admission };
}
