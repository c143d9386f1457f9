import { InterceptingCall, type Interceptor, ListenerBuilder, RequesterBuilder, status as Status } from "@grpc/grpc-js";

/**
 * What to check when a channel could not connect, read from the TLS or
 * HTTP/2 failure grpc-js reports: a plaintext client at a TLS port and the
 * reverse look alike from the outside ("Failed to connect", "wrong version
 * number") and say nothing of the setting that fixes them. The one place
 * those messages are interpreted; undefined when there is nothing to add.
 */
function transportHint(details: string, secure: boolean): string | undefined {
  // A connection that was never established: a drop of a working one (a
  // server restarting) needs no TLS advice.
  const neverConnected = /No connection established/i.test(details);
  if (!secure) {
    return neverConnected && /Failed to connect|Connection dropped|socket hang up|ECONNRESET|Protocol error/i.test(details)
      ? "is the server serving TLS? The bridge connects to core with TLS when PARLEY_CORE_TLS_CA is set"
      : undefined;
  }
  if (/wrong version number|packet length too long|ERR_SSL_WRONG_VERSION_NUMBER/i.test(details)) {
    return "the server does not speak TLS: serve core with TLS (PARLEY_GRPC_TLS_CERT and PARLEY_GRPC_TLS_KEY) or unset PARLEY_CORE_TLS_CA";
  }
  if (/certificate required|alert handshake failure/i.test(details)) {
    return "the server requires a client certificate: set PARLEY_CORE_TLS_CERT and PARLEY_CORE_TLS_KEY";
  }
  if (/altnames|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate/i.test(details)) {
    return "the server's certificate does not carry the host of the address: connect by a name it carries, or set PARLEY_CORE_TLS_SERVER_NAME to one";
  }
  if (/self[- ]signed certificate|unable to verify|unable to get (local )?issuer|certificate has expired|certificate is not yet valid/i.test(details)) {
    return "the server's certificate does not verify against PARLEY_CORE_TLS_CA (another CA signed it, or it expired)";
  }
  if (/alert (bad certificate|unknown ca|certificate unknown)/i.test(details) || (neverConnected && /Failed to connect|Connection dropped|socket hang up|ECONNRESET/i.test(details))) {
    return "the server closed the connection after the TLS handshake: does it accept this client certificate (PARLEY_CORE_TLS_CERT, signed by the CA in core's PARLEY_GRPC_TLS_CLIENT_CA)?";
  }
  return undefined;
}

/**
 * A client interceptor that appends the transport hint to the details of
 * an UNAVAILABLE status raised by the channel, for every kind of call (a
 * bidirectional stream's error included), so that the error a caller logs
 * says what to check.
 */
export function transportHints(secure: boolean): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(
      nextCall(options),
      new RequesterBuilder()
        .withStart((metadata, _listener, next) => {
          next(
            metadata,
            new ListenerBuilder()
              .withOnReceiveStatus((status, nextStatus) => {
                const hint = status.code === Status.UNAVAILABLE ? transportHint(status.details, secure) : undefined;
                nextStatus(hint === undefined ? status : { ...status, details: `${status.details.trimEnd()} (${hint})` });
              })
              .build(),
          );
        })
        .build(),
    );
}
