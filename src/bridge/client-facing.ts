import { ParleyError } from "../wire/index.js";

/**
 * Network addresses in a message: IPv4 and bracketed IPv6 with a port, and
 * grpc-js target names (`dns:core.internal:50051`, `ipv4:10.0.0.5:50051`).
 */
const ADDRESS = /\b(?:dns|ipv4|ipv6|unix):[^\s,)]+|\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\](?::\d+)?|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b/g;

/**
 * An error as a browser may see it: transport failures between bridge and
 * core come from grpc-js with the core's address in them ("connect
 * ECONNREFUSED 10.0.0.5:50051"), which tells an outsider the internal
 * topology. The log line keeps the original; the client gets the same
 * category, retryability and field with the addresses taken out.
 */
export function clientFacing(error: ParleyError): ParleyError {
  const message = error.message.replace(ADDRESS, "<internal address>");
  if (message === error.message) return error;
  return new ParleyError(error.category, message, {
    field: error.field,
    cause: error.cause,
    retryable: error.retryable,
    retryAfterMs: error.retryAfterMs,
    context: error.context,
  });
}
