import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { CALLER, ROOMS_RELAY_SCOPE, type ServerInterceptor } from "../../runtime/index.js";
import { ParleyError } from "../../wire/index.js";

/**
 * What a relay (a caller with ROOMS_RELAY_SCOPE: the WebSocket bridge) may
 * call as itself: follow rooms' logs for connections it has authorized, and
 * carry users' sends, each with the user's own token. Everything else a
 * user does, the relay does with that user's token, so a relay's own
 * credential (stolen from a bridge) acts as nobody.
 */
const RELAY_CALLS: ReadonlySet<string> = new Set([
  "/parley.v1.ChatService/Subscribe",
  "/parley.v1.ChatService/ListRoomEvents",
  // Each item must carry an acting token (the send stream's own check).
  "/parley.v1.ChatService/SendStream",
  "/parley.v1.ChatService/SendBatches",
  // Who the relay's own credential says it is (nothing to act on).
  "/parley.v1.IdentityService/WhoAmI",
]);

/** Refuses a relay identity's call outside RELAY_CALLS: PERMISSION_DENIED, before any handler runs. */
export function relayGuard(): ServerInterceptor {
  return (next) => (context) => {
    const caller = context.values.find(CALLER);
    if (caller !== undefined && caller.scopes.has(ROOMS_RELAY_SCOPE) && !RELAY_CALLS.has(context.path)) {
      return Promise.reject(
        new ParleyError(ErrorCategory.PERMISSION_DENIED, `a relay identity (${ROOMS_RELAY_SCOPE}) does not act by itself; call ${context.path} with the user's own token`, { retryable: false }),
      );
    }
    return next(context);
  };
}

/** A relay's send item without an acting token is nobody's send. */
export function relayActingAlone(): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, `a relay identity (${ROOMS_RELAY_SCOPE}) sends only for users: each item needs the user's acting_token`, { retryable: false });
}
