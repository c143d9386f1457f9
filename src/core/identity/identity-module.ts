import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { IdentityService } from "../../../gen/parley/v1/identity_pb.js";
import { bindService, CALLER, type ServiceBinding } from "../../runtime/index.js";

/**
 * parley.v1.IdentityService: who the caller's token says it is. The auth
 * interceptor has verified the token before the handler runs; the handler
 * only reads the result out.
 */
export function createIdentityModule(): { readonly binding: ServiceBinding } {
  return {
    binding: bindService(IdentityService, {
      whoAmI: (_request, context) => {
        const caller = context.values.get(CALLER);
        return Promise.resolve({
          user: caller.user,
          expiresAt: caller.expiresAt === undefined ? undefined : timestampFromMs(caller.expiresAt * 1000),
          scopes: [...caller.scopes],
        });
      },
    }),
  };
}
