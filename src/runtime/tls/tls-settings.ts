import { checkKeyPair, PemFile, PemFileError, type PemKind } from "./pem-file.js";

/** A TLS listener's certificate and key, and the CA its clients' certificates must chain to (mTLS) if any. */
interface ServerTlsFiles {
  readonly cert: PemFile;
  readonly key: PemFile;
  /** Set: every client must present a certificate signed by this CA. */
  readonly clientCa: PemFile | undefined;
}

/** How a client reaches a TLS server: the CA that must have signed the server's certificate, its own certificate for mTLS. */
interface ClientTlsFiles {
  readonly ca: PemFile;
  readonly cert: PemFile | undefined;
  readonly key: PemFile | undefined;
  /** The name checked on the server's certificate (and sent as SNI) instead of the host of the address. */
  readonly serverName: string | undefined;
}

/** Transport security from the environment; undefined means plaintext, as before. */
export interface TlsSettings {
  /** The bridge's HTTP/WebSocket listener (PARLEY_HTTP_TLS_*). */
  readonly http: ServerTlsFiles | undefined;
  /** Core's gRPC listener (PARLEY_GRPC_TLS_*). */
  readonly grpc: ServerTlsFiles | undefined;
  /** How the bridge reaches core (PARLEY_CORE_TLS_*). */
  readonly core: ClientTlsFiles | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

/** A DNS name (or an IP address) a certificate can carry. */
const SERVER_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^[0-9a-fA-F:.]+$/;

/**
 * Reads the TLS variables: pairs must be complete, every file must be a
 * readable PEM of the right kind, a key must belong to its certificate.
 * Every problem names its variable; the files are read here, at start, so
 * that a bad path stops start-up instead of the first handshake.
 */
export function readTlsSettings(env: Env): { settings: TlsSettings; problems: string[] } {
  const problems: string[] = [];
  const read = (variable: string, kind: PemKind): PemFile | undefined => {
    const path = env[variable];
    if (path === undefined || path === "") return undefined;
    try {
      return PemFile.read(variable, path, kind);
    } catch (error) {
      if (!(error instanceof PemFileError)) throw error;
      problems.push(error.message);
      return undefined;
    }
  };
  const set = (variable: string) => env[variable] !== undefined && env[variable] !== "";
  const pair = (certVariable: string, keyVariable: string) => {
    if (set(certVariable) !== set(keyVariable)) {
      const [given, missing] = set(certVariable) ? [certVariable, keyVariable] : [keyVariable, certVariable];
      problems.push(`${missing} is required when ${given} is set (a certificate and its key: both or neither)`);
    }
    const cert = read(certVariable, "certificate");
    const key = read(keyVariable, "private key");
    if (cert === undefined || key === undefined) return undefined;
    try {
      checkKeyPair(cert, key);
    } catch (error) {
      if (!(error instanceof PemFileError)) throw error;
      problems.push(error.message);
      return undefined;
    }
    return { cert, key };
  };

  const http = pair("PARLEY_HTTP_TLS_CERT", "PARLEY_HTTP_TLS_KEY");

  const grpcPair = pair("PARLEY_GRPC_TLS_CERT", "PARLEY_GRPC_TLS_KEY");
  const clientCa = read("PARLEY_GRPC_TLS_CLIENT_CA", "certificate");
  if (set("PARLEY_GRPC_TLS_CLIENT_CA") && !(set("PARLEY_GRPC_TLS_CERT") && set("PARLEY_GRPC_TLS_KEY"))) {
    problems.push("PARLEY_GRPC_TLS_CLIENT_CA needs PARLEY_GRPC_TLS_CERT and PARLEY_GRPC_TLS_KEY: client certificates are checked during a TLS handshake");
  }

  const corePair = pair("PARLEY_CORE_TLS_CERT", "PARLEY_CORE_TLS_KEY");
  const coreCa = read("PARLEY_CORE_TLS_CA", "certificate");
  const serverName = env.PARLEY_CORE_TLS_SERVER_NAME === "" ? undefined : env.PARLEY_CORE_TLS_SERVER_NAME;
  if (!set("PARLEY_CORE_TLS_CA")) {
    for (const variable of ["PARLEY_CORE_TLS_CERT", "PARLEY_CORE_TLS_KEY", "PARLEY_CORE_TLS_SERVER_NAME"]) {
      if (set(variable)) problems.push(`${variable} needs PARLEY_CORE_TLS_CA: without it the link to core is plaintext`);
    }
  }
  if (serverName !== undefined && !SERVER_NAME.test(serverName)) {
    problems.push(`PARLEY_CORE_TLS_SERVER_NAME must be a DNS name or an IP address that core's certificate carries, e.g. core.internal`);
  }

  return {
    problems,
    settings: {
      http: http === undefined ? undefined : { ...http, clientCa: undefined },
      grpc: grpcPair === undefined ? undefined : { ...grpcPair, clientCa },
      core: coreCa === undefined ? undefined : { ca: coreCa, cert: corePair?.cert, key: corePair?.key, serverName },
    },
  };
}
