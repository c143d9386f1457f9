import type { IncomingHttpHeaders } from "node:http";

/**
 * Browser origins allowed to open WebSockets (PARLEY_ALLOWED_ORIGINS):
 * exact origins such as `https://app.example.com`, or `*` for any.
 */
export type AllowedOrigins = readonly string[] | "*";

/**
 * Which browser pages may make a request. A browser always sends `Origin`
 * on a WebSocket handshake and on a cross-site POST; a request without one
 * comes from a program (a service, a CLI), which no web page can make.
 */
export interface OriginPolicy {
  /** Origins always accepted; undefined when none were configured. */
  readonly allowed?: AllowedOrigins;
  /**
   * Also accept the origin the request was sent to, that is a page served
   * from the host and port of its `Host` header: `any` host, a `loopback`
   * host only (the development mode's own page: a DNS-rebound name is not
   * loopback), or `none`. Default: `any` without `allowed`, `none` with it.
   */
  readonly sameOrigin?: "any" | "loopback" | "none";
}

/** Host names that reach only this machine (IPv6 with or without brackets). */
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]|::1)$/i;

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK.test(hostname);
}

const HOST_HEADER = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

/** The request's `Host` header as `{ hostname, host }` (host with port), or undefined when absent or malformed. */
function hostOf(headers: IncomingHttpHeaders): { hostname: string; host: string } | undefined {
  const raw = headers.host;
  if (raw === undefined || !HOST_HEADER.test(raw)) return undefined;
  const url = new URL(`http://${raw}`);
  return { hostname: url.hostname, host: url.host };
}

/** Whether the request's `Host` header names this machine (localhost, 127.0.0.1, [::1], with any port). */
export function hasLoopbackHost(headers: IncomingHttpHeaders): boolean {
  const host = hostOf(headers);
  return host !== undefined && isLoopbackHost(host.hostname);
}

/** `scheme://host[:port]` in its canonical form, or undefined when `value` is not an http(s) origin. */
function canonicalOrigin(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  // An origin is exactly scheme, host and port: anything more is a mistake in the list.
  return url.origin === value.toLowerCase() ? url.origin : undefined;
}

/**
 * Whether the request's page (its `Origin`) may make it, by `policy`.
 * No `Origin`: yes (not a browser page). `Origin: null` (a sandboxed or
 * local file page) only under `*`.
 */
export function originAllowed(headers: IncomingHttpHeaders, policy: OriginPolicy): boolean {
  const origin = headers.origin;
  if (origin === undefined) return true;
  if (policy.allowed === "*") return true;
  const canonical = canonicalOrigin(origin);
  if (canonical === undefined) return false;
  if (policy.allowed?.includes(canonical) === true) return true;
  const sameOrigin = policy.sameOrigin ?? (policy.allowed === undefined ? "any" : "none");
  if (sameOrigin === "none") return false;
  const host = hostOf(headers);
  if (host === undefined || (sameOrigin === "loopback" && !isLoopbackHost(host.hostname))) return false;
  // The scheme is not compared: behind a TLS-terminating proxy the bridge
  // sees http while the page is https; host and port decide.
  return new URL(canonical).host === host.host;
}

/**
 * PARLEY_ALLOWED_ORIGINS parsed: comma-separated exact origins, or `*`
 * alone. Throws a RangeError naming the first bad entry.
 */
export function parseAllowedOrigins(value: string): AllowedOrigins {
  const entries = value
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 0) throw new RangeError("lists no origin");
  if (entries.includes("*")) {
    if (entries.length > 1) throw new RangeError("`*` allows every origin and must stand alone");
    return "*";
  }
  return entries.map((entry) => {
    const canonical = canonicalOrigin(entry);
    if (canonical === undefined) {
      throw new RangeError(`"${entry}" is not an origin: scheme, host and port only, like https://app.example.com or http://localhost:3000 (no path, no trailing slash, no default port)`);
    }
    return canonical;
  });
}
