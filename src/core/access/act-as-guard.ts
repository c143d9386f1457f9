import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { ServerInterceptor } from "../../runtime/index.js";
import { ParleyError } from "../../wire/index.js";

/** The header a service identity (ROOMS_ADMIN_SCOPE) names the user it acts for with, on RoomService calls. */
export const ACT_AS_HEADER = "parley-act-as";

const HONOURED_ON = "/parley.v1.RoomService/";

/**
 * Refuses `parley-act-as` on every call but RoomService's: a service that
 * sends it elsewhere (a message "as bob") would otherwise act as itself
 * without knowing it. Sends act for users through their own tokens.
 */
export function actAsGuard(): ServerInterceptor {
  return (next) => (context) => {
    if (context.header(ACT_AS_HEADER) !== undefined && !context.path.startsWith(HONOURED_ON)) {
      return Promise.reject(
        new ParleyError(ErrorCategory.PERMISSION_DENIED, `${ACT_AS_HEADER} is honoured on RoomService calls only; act for a user with their own token elsewhere`, { retryable: false }),
      );
    }
    return next(context);
  };
}
