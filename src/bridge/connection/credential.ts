import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { Identity } from "../../runtime/index.js";
import { ParleyError } from "../../wire/index.js";

/**
 * A connection's user token and what core said it is. Every core call made
 * for the connection reads the token when it is made, so a refreshed token
 * takes over at once: calls, retries, resubscriptions and sends in flight
 * after the refresh carry the new one.
 */
export class Credential {
  #token: string;
  #identity: Identity;

  constructor(token: string, identity: Identity) {
    this.#token = token;
    this.#identity = identity;
  }

  get token(): string {
    return this.#token;
  }

  get identity(): Identity {
    return this.#identity;
  }

  /** Takes a newer token of the same user; another user's is PERMISSION_DENIED (a connection never changes hands). */
  replace(token: string, identity: Identity): void {
    if (identity.user !== this.#identity.user) {
      throw new ParleyError(ErrorCategory.PERMISSION_DENIED, `the new token is ${identity.user}'s, this connection is ${this.#identity.user}'s; reconnect to change user`, {
        field: "refresh_token.token",
        retryable: false,
      });
    }
    this.#token = token;
    this.#identity = identity;
  }
}
