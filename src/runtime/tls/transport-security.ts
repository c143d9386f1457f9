import type { Config } from "../config.js";
import { type ClientTransport, tlsTransport } from "../grpc/channel-credentials.js";
import type { Logger } from "../logger.js";
import { TlsCertificates } from "./certificates.js";

/** The TLS endpoints one command runs: its listeners and its link to core. */
type Endpoint = "http" | "grpc" | "core";

/** TLS for one process, built from configuration; every part undefined means plaintext. */
export interface TransportSecurity {
  /** Certificates of the bridge's HTTPS/wss listener. */
  readonly http: TlsCertificates | undefined;
  /** Certificates of core's gRPC listener (with the client CA for mTLS). */
  readonly grpc: TlsCertificates | undefined;
  /** How the bridge's clients reach core. */
  readonly core: ClientTransport | undefined;
  /** Reads every certificate file again (what SIGHUP does); a broken set is refused and logged. */
  reload(): void;
  /** Stops watching files and signals. */
  close(): void;
}

/**
 * The certificates of the `endpoints` a command runs, from the files read
 * at start: logged once (subject, expiry), reloaded on SIGHUP and when a
 * file changes (every `watchIntervalMs`). Without any TLS configured
 * SIGHUP keeps its default meaning.
 */
export function transportSecurity(tls: Config["tls"], endpoints: readonly Endpoint[], logger: Logger): TransportSecurity {
  const log = logger.child({ component: "tls" });
  const certificates = (endpoint: Endpoint, name: string, files: ConstructorParameters<typeof TlsCertificates>[0] | undefined) => {
    if (files === undefined || !endpoints.includes(endpoint)) return undefined;
    const loaded = new TlsCertificates(files, name, log);
    const described = loaded.describe();
    if (described.expired === true) log.warn(described, `${name}: the certificate has expired; peers will refuse it`);
    else log.info(described, `${name}: TLS on`);
    loaded.watch(tls.watchIntervalMs);
    return loaded;
  };
  const http = certificates("http", "http listener", tls.http === undefined ? undefined : { cert: tls.http.cert, key: tls.http.key });
  const grpc = certificates("grpc", "grpc listener", tls.grpc === undefined ? undefined : { cert: tls.grpc.cert, key: tls.grpc.key, ca: tls.grpc.clientCa });
  const coreLink = certificates("core", "core link", tls.core === undefined ? undefined : { cert: tls.core.cert, key: tls.core.key, ca: tls.core.ca });
  const all = [http, grpc, coreLink].filter((entry) => entry !== undefined);
  const reload = () => {
    for (const entry of all) entry.reload();
  };
  const onHangup = () => {
    log.info("SIGHUP: reloading certificates");
    reload();
  };
  if (all.length > 0) process.on("SIGHUP", onHangup);
  return {
    http,
    grpc,
    core: coreLink === undefined ? undefined : tlsTransport(coreLink, tls.core?.serverName),
    reload,
    close() {
      process.off("SIGHUP", onHangup);
      for (const entry of all) entry.close();
    },
  };
}
