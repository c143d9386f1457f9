import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../wire/index.js";

/** Who is acting: the `sub` of a verified token. */
export interface Identity {
  readonly user: string;
  /** Token expiry, seconds since the epoch (undefined: no `exp`). */
  readonly expiresAt: number | undefined;
  /** OAuth-style scopes from the `scope` claim (space-separated), e.g. `notifications:send`. */
  readonly scopes: ReadonlySet<string>;
}

/** The scope a token needs to send notifications (service identities carry it). */
export const NOTIFICATIONS_SEND_SCOPE = "notifications:send";

/**
 * The scope of a service that manages rooms on behalf of users: with it, a
 * RoomService call may name the user it acts as (`parley-act-as`).
 */
export const ROOMS_ADMIN_SCOPE = "rooms:admin";

/**
 * The scope of a relay (the WebSocket bridge): it may follow any room's log
 * to pass events on to the connections it has authorized itself, each
 * through a GetRoom call with that connection's own token.
 */
export const ROOMS_RELAY_SCOPE = "rooms:relay";

/** The `typ` header values of an access token (RFC 9068), compared in lower case. */
const ACCESS_TOKEN_TYPES: ReadonlySet<string> = new Set(["jwt", "at+jwt", "application/at+jwt"]);

/** User ids (token `sub`): what may appear as a sender or recipient. */
export const USER_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;

export interface TokenVerifierOptions {
  /** How many verified tokens to remember (verifying costs an HMAC). */
  readonly cacheSize?: number;
  /** Allowed clock skew for `exp`/`nbf`, seconds. */
  readonly clockToleranceSeconds?: number;
  /** Current time in ms (tests). */
  readonly now?: () => number;
}

/**
 * Verifies `HS256` bearer tokens with a maintained library (jose). Results
 * are cached by token string until the token expires, so a stream carrying
 * one token per item (the bridge) pays for each token once.
 */
export class TokenVerifier {
  readonly #key: Uint8Array;
  readonly #cache = new Map<string, Identity>();
  readonly #cacheSize: number;
  readonly #tolerance: number;
  readonly #now: () => number;

  constructor(secret: string, options: TokenVerifierOptions = {}) {
    this.#key = new TextEncoder().encode(secret);
    this.#cacheSize = options.cacheSize ?? 10_000;
    this.#tolerance = options.clockToleranceSeconds ?? 5;
    this.#now = options.now ?? Date.now;
  }

  /** The identity in `token`, or an UNAUTHENTICATED ParleyError saying why not. */
  async verify(token: string): Promise<Identity> {
    const cached = this.cachedIdentity(token);
    if (cached !== undefined) return cached;
    const identity = await this.#verifyUncached(token);
    if (this.#cache.size >= this.#cacheSize) {
      // Maps iterate in insertion order: drop the oldest entry.
      const oldest = this.#cache.keys().next();
      if (oldest.done !== true) this.#cache.delete(oldest.value);
    }
    this.#cache.set(token, identity);
    return identity;
  }

  /** The identity of a token verified before and not expired since; undefined otherwise (call verify). */
  cachedIdentity(token: string): Identity | undefined {
    const cached = this.#cache.get(token);
    if (cached === undefined) return undefined;
    if (cached.expiresAt === undefined || cached.expiresAt + this.#tolerance > this.#now() / 1000) return cached;
    this.#cache.delete(token);
    return undefined;
  }

  async #verifyUncached(token: string): Promise<Identity> {
    if (token === "") throw unauthenticated("no bearer token");
    let payload;
    try {
      let header;
      ({ payload, protectedHeader: header } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        clockTolerance: this.#tolerance,
        currentDate: new Date(this.#now()),
        // A token without an expiry would be valid forever.
        requiredClaims: ["exp"],
      }));
      // An ID token or anything else that is not an access token is refused.
      if (header.typ !== undefined && !ACCESS_TOKEN_TYPES.has(header.typ.toLowerCase())) {
        throw unauthenticated(`token type \`${header.typ}\` is not an access token (JWT or at+jwt)`);
      }
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      throw unauthenticated(describeJoseError(error), error);
    }
    const sub: unknown = payload.sub;
    // Checked as a string first: a regular expression would read ["bob"] as "bob".
    if (typeof sub !== "string" || !USER_ID.test(sub)) {
      throw unauthenticated("token has no valid `sub` (user id: letters, digits, _ . : @ -, up to 128)");
    }
    const scope = payload.scope;
    const scopes = new Set(typeof scope === "string" ? scope.split(" ").filter((s) => s !== "") : []);
    return { user: sub, expiresAt: payload.exp, scopes };
  }
}

/** Reads the token out of an `authorization: Bearer <token>` header value. */
export function bearerToken(header: string | undefined): string {
  if (header === undefined) throw unauthenticated("missing `authorization: Bearer <token>` metadata");
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (match?.[1] === undefined) throw unauthenticated("`authorization` must be `Bearer <token>`");
  return match[1];
}

export interface MintOptions {
  /** Lifetime in seconds (default one hour); negative mints an expired token. */
  readonly expiresInSeconds?: number;
  /** Scopes for the `scope` claim. */
  readonly scopes?: readonly string[];
}

/** Signs an HS256 token for `user` (tests, tools and the development mode). */
export async function mintToken(secret: string, user: string, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(options.scopes === undefined ? {} : { scope: options.scopes.join(" ") })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(user)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresInSeconds ?? 3600))
    .sign(new TextEncoder().encode(secret));
}

function unauthenticated(reason: string, cause?: unknown): ParleyError {
  return new ParleyError(ErrorCategory.UNAUTHENTICATED, `unauthenticated: ${reason}`, { cause });
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return "token expired";
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "token signature does not verify";
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "token algorithm not allowed (HS256 only)";
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return error.reason === "missing" ? `token has no \`${error.claim}\` claim, which is required` : `token claim \`${error.claim}\` is not valid`;
  }
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return "token is malformed";
  return "token could not be verified";
}
