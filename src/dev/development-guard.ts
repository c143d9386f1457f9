import { ConfigError, type Config, isLoopbackHost } from "../runtime/index.js";

/**
 * The development mode hands out tokens to anyone (/dev/token) and runs on
 * an embedded database: it must never be reachable in production. It
 * refuses to start where production is declared (PARLEY_ENV or NODE_ENV
 * `production`) or where it would listen beyond this machine.
 */
export function assertDevelopmentModeAllowed(config: Config): void {
  const problems: string[] = [];
  if (config.productionMarked) {
    problems.push("the development mode (no DATABASE_URL) does not start where PARLEY_ENV or NODE_ENV is production: set DATABASE_URL and PARLEY_JWT_SECRET");
  }
  for (const [name, address] of [
    ["PARLEY_HTTP_ADDR", config.httpAddress],
    ["PARLEY_GRPC_ADDR", config.grpcAddress],
  ] as const) {
    const host = address.slice(0, address.lastIndexOf(":"));
    if (!isLoopbackHost(host)) problems.push(`${name} ${address}: the development mode listens on loopback addresses only (127.0.0.1, ::1, localhost)`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
