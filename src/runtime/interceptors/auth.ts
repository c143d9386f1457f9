import { ContextKey, type ServerInterceptor } from "../grpc/call-context.js";
import { bearerToken, type Identity, ROOMS_RELAY_SCOPE, type TokenVerifier } from "../auth/tokens.js";

/** The verified caller of a gRPC call, set by the auth interceptor. */
export const CALLER = new ContextKey<Identity>("authenticated caller");

/**
 * Requires `authorization: Bearer <JWT>` on every call and puts the verified
 * identity into the call context; fails the call with UNAUTHENTICATED before
 * any handler code runs otherwise.
 *
 * The one exception: a call without `authorization` over mTLS whose verified
 * client certificate names one of `relayNames` (its common name or a DNS
 * name) is that relay (a bridge known by its certificate, ROOMS_RELAY_SCOPE
 * only). A call that brings a token is always the token's, certificate or
 * not: a bridge's calls for users carry the users' tokens.
 */
export function authInterceptor(verifier: TokenVerifier, relayNames: ReadonlySet<string> = new Set()): ServerInterceptor {
  return (next) => async (context) => {
    const header = context.header("authorization");
    const relay = header === undefined && relayNames.size > 0 ? relayByCertificate(context.peerCertificate, relayNames) : undefined;
    const identity = relay ?? (await verifier.verify(bearerToken(header)));
    context.values.set(CALLER, identity);
    await next(context);
  };
}

function relayByCertificate(certificate: { readonly commonName: string | undefined; readonly dnsNames: readonly string[] } | undefined, relayNames: ReadonlySet<string>): Identity | undefined {
  if (certificate === undefined) return undefined;
  const name = [certificate.commonName, ...certificate.dnsNames].find((candidate) => candidate !== undefined && relayNames.has(candidate));
  if (name === undefined) return undefined;
  return { user: `relay:${name}`, expiresAt: undefined, scopes: new Set([ROOMS_RELAY_SCOPE]) };
}
