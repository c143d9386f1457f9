import { ContextKey, type ServerInterceptor } from "../grpc/call-context.js";
import { bearerToken, type Identity, type TokenVerifier } from "../auth/tokens.js";

/** The verified caller of a gRPC call, set by the auth interceptor. */
export const CALLER = new ContextKey<Identity>("authenticated caller");

/**
 * Requires `authorization: Bearer <JWT>` on every call and puts the verified
 * identity into the call context; fails the call with UNAUTHENTICATED before
 * any handler code runs otherwise.
 */
export function authInterceptor(verifier: TokenVerifier): ServerInterceptor {
  return (next) => async (context) => {
    const identity = await verifier.verify(bearerToken(context.header("authorization")));
    context.values.set(CALLER, identity);
    await next(context);
  };
}
