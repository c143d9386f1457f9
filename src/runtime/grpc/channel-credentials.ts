import { type ChannelCredentials, type ChannelOptions, experimental } from "@grpc/grpc-js";
import type { TlsCertificates } from "../tls/certificates.js";

/** How a client's channel is secured: what createClient takes as `credentials` and `channelOptions`. */
export interface ClientTransport {
  readonly credentials: ChannelCredentials;
  readonly channelOptions: ChannelOptions;
}

/**
 * TLS to a server whose certificate must chain to `certificates`' CA, with
 * `certificates`' own certificate as the client certificate (mTLS) when it
 * has one. Every new connection uses the certificates of the moment, so a
 * reload reaches the client too. `serverName` replaces the address's host
 * as the name checked on the server's certificate (and sent as SNI).
 */
export function tlsTransport(certificates: TlsCertificates, serverName?: string): ClientTransport {
  const provider = certificateProvider(certificates);
  return {
    credentials: experimental.createCertificateProviderChannelCredentials(provider, certificates.material.cert === undefined ? null : provider),
    channelOptions: serverName === undefined ? {} : { "grpc.ssl_target_name_override": serverName },
  };
}

type Listener<T> = (update: T | null) => void;

/** grpc-js's certificate-provider interface over TlsCertificates: the current material now, and again after each reload. */
function certificateProvider(certificates: TlsCertificates): experimental.CertificateProvider {
  const subscriptions = new Map<unknown, () => void>();
  const subscribe = <T>(listener: Listener<T>, current: () => T | null) => {
    const push = () => {
      listener(current());
    };
    subscriptions.set(listener, certificates.onChange(push));
    // grpc-js registers its listeners before it is ready for their first call.
    process.nextTick(push);
  };
  const unsubscribe = (listener: unknown) => {
    subscriptions.get(listener)?.();
    subscriptions.delete(listener);
  };
  return {
    addCaCertificateListener(listener) {
      subscribe(listener, () => {
        const { ca } = certificates.material;
        return ca === undefined ? null : { caCertificate: ca };
      });
    },
    removeCaCertificateListener: unsubscribe,
    addIdentityCertificateListener(listener) {
      subscribe(listener, () => {
        const { cert, key } = certificates.material;
        return cert === undefined || key === undefined ? null : { certificate: cert, privateKey: key };
      });
    },
    removeIdentityCertificateListener: unsubscribe,
  };
}
