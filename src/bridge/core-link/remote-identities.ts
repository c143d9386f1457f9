import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { IdentityService } from "../../../gen/parley/v1/identity_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ExpiringCache, type Identity, type ServiceClient } from "../../runtime/index.js";
import { ParleyError } from "../../wire/index.js";

/** How long an answer is reused at most (ms): a refusal at core (a removed key) reaches open connections' next check within it. */
const REMEMBER_MS = 60_000;
const MAX_REMEMBERED = 10_000;
const WHO_AM_I_TIMEOUT_MS = 5_000;
/**
 * What a token may hold to travel in an `authorization` header (a JWT is
 * base64url and dots): grpc-js throws on anything else, which once made a
 * pasted newline an INTERNAL error whose message echoed the token.
 */
const HEADER_SAFE = /^[!-~]+$/;

/**
 * Browser users' identities, as core verifies their tokens (IdentityService
 * WhoAmI). The bridge holds no key: it cannot verify a token, so it cannot
 * sign one either. Answers are remembered for a minute (never past the
 * token's expiry), so reconnect storms of one user cost core one call.
 */
export class RemoteIdentities {
  readonly #identity: ServiceClient<typeof IdentityService>;
  readonly #remembered = new ExpiringCache<Identity>(MAX_REMEMBERED, REMEMBER_MS);

  constructor(identity: ServiceClient<typeof IdentityService>) {
    this.#identity = identity;
  }

  /** The identity in `token`, or core's UNAUTHENTICATED (or UNAVAILABLE) ParleyError. */
  async verify(token: string): Promise<Identity> {
    if (!HEADER_SAFE.test(token)) throw new ParleyError(ErrorCategory.UNAUTHENTICATED, "unauthenticated: token is malformed");
    const remembered = this.#remembered.get(token);
    if (remembered !== undefined) return remembered;
    const answer = await this.#identity.whoAmI({}, { headers: { authorization: `Bearer ${token}` }, timeoutMs: WHO_AM_I_TIMEOUT_MS });
    const expiresAtMs = answer.expiresAt === undefined ? undefined : timestampMs(answer.expiresAt);
    const identity: Identity = { user: answer.user, expiresAt: expiresAtMs === undefined ? undefined : expiresAtMs / 1000, scopes: new Set(answer.scopes) };
    this.#remembered.set(token, identity, expiresAtMs);
    return identity;
  }
}
