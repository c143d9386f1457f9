import type { PeerCertificate as TlsPeerCertificate } from "node:tls";
import type { PeerCertificate } from "./call-context.js";

/** A DNS subject alternative name as Node prints it unquoted (quoted entries hold characters no DNS name has). */
const DNS_NAME = /^DNS:([A-Za-z0-9*._-]+)$/;

/**
 * The part of a verified client certificate handlers may rely on. grpc-js
 * fills the auth context only when the TLS socket authorized its peer, so
 * an unverified or absent certificate gives undefined. A subject with
 * several CNs gives no commonName: an identity must not depend on which
 * one a reader picks.
 */
export function peerCertificateOf(authContext: { readonly sslPeerCertificate?: TlsPeerCertificate | undefined }): PeerCertificate | undefined {
  const certificate = authContext.sslPeerCertificate;
  if (certificate === undefined) return undefined;
  const cn: unknown = certificate.subject.CN;
  const dnsNames = (certificate.subjectaltname ?? "")
    .split(", ")
    .flatMap((entry) => {
      const name = DNS_NAME.exec(entry)?.[1];
      return name === undefined ? [] : [name];
    });
  return { commonName: typeof cn === "string" ? cn : undefined, dnsNames };
}
