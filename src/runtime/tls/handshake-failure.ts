import type { TLSSocket } from "node:tls";

/** Variables an operator would look at for a failed handshake on one listener. */
export interface ListenerVariables {
  /** The listener's own certificate, e.g. PARLEY_GRPC_TLS_CERT. */
  readonly cert: string | undefined;
  /** The CA client certificates must chain to, e.g. PARLEY_GRPC_TLS_CLIENT_CA. */
  readonly clientCa: string | undefined;
}

/** One failed TLS handshake as an operator reads it. */
export interface HandshakeFailure {
  /** UNAUTHENTICATED for a refused client certificate; VALIDATION for anything else the client got wrong. */
  readonly category: "VALIDATION" | "UNAUTHENTICATED";
  /** What went wrong and what to check, in one sentence. */
  readonly reason: string;
  /** The TLS library's code (e.g. ERR_SSL_WRONG_VERSION_NUMBER), for searching. */
  readonly code: string;
}

/** Bytes that are no TLS record at all: someone speaks plain HTTP, HTTP/2 or a raw protocol to the port. */
const NOT_TLS = new Set(["ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_HTTP_REQUEST", "ERR_SSL_HTTPS_PROXY_REQUEST", "ERR_SSL_UNKNOWN_PROTOCOL", "ERR_SSL_PACKET_LENGTH_TOO_LONG"]);

/**
 * Reads a `tlsClientError` of a listener: which side is misconfigured and
 * what to check. The one place these codes are interpreted.
 */
export function describeHandshakeFailure(error: Error & { code?: unknown }, socket: TLSSocket, variables: ListenerVariables): HandshakeFailure {
  const code = typeof error.code === "string" ? error.code : "UNKNOWN";
  // A client certificate that did not verify: the handshake finished, then
  // Node cut the socket and kept the reason here.
  const refused = (socket as TLSSocket & { authorizationError?: unknown }).authorizationError;
  if (typeof refused === "string" || refused instanceof Error) {
    const why = refused instanceof Error ? refused.message : refused;
    return {
      category: "UNAUTHENTICATED",
      code,
      reason: `client certificate refused (${why}): it must be signed by the CA in ${variables.clientCa ?? "the client CA"}`,
    };
  }
  if (NOT_TLS.has(code)) return { category: "VALIDATION", code, reason: "not a TLS handshake: plaintext client on a TLS port? Connect with TLS (https://, wss://, gRPC TLS credentials)" };
  if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") {
    return { category: "UNAUTHENTICATED", code, reason: `the client sent no certificate; this listener requires one signed by the CA in ${variables.clientCa ?? "the client CA"}` };
  }
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR)/.test(code)) {
    return {
      category: "VALIDATION",
      code,
      reason: `the client does not accept this listener's certificate (${variables.cert ?? "its certificate"}): does it trust the CA that signed it, and does the certificate carry the name the client dials?`,
    };
  }
  return { category: "VALIDATION", code, reason: `TLS handshake failed: ${error.message.split("\n")[0] ?? code}` };
}
