import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../wire/index.js";
import { ExpiringCache } from "./expiring-cache.js";
import { type KeyLookup, keyLookup, type TokenRules } from "./key-sources.js";

/** Who is acting: the `sub` of a verified token. */
export interface Identity {
  readonly user: string;
  /** Token expiry, seconds since the epoch (undefined: an identity that does not come from a token, e.g. a client certificate). */
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

/**
 * User ids (token `sub`): what may appear as a sender or recipient. `|` is
 * in the set because identity providers use it (Auth0: `auth0|5f7c...`).
 */
export const USER_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@|-]{0,127}$/;

/**
 * How long a verified token is trusted without verifying it again, at most
 * (ms): a key removed from the key set stops working within this time plus
 * the key set's cache age.
 */
const VERIFIED_TTL_MS = 60_000;

export interface TokenVerifierOptions {
  /** How many verified tokens to remember (verifying costs an HMAC). */
  readonly cacheSize?: number;
  /** Allowed clock skew for `exp`/`nbf`, seconds. */
  readonly clockToleranceSeconds?: number;
  /** Current time in ms (tests). */
  readonly now?: () => number;
}

/**
 * Verifies bearer tokens with a maintained library (jose) against the
 * configured rules (key sources, issuer, audience, lifetime). Results are
 * cached by token string for up to a minute, and never past the token's
 * expiry, so a stream carrying one token per item (the bridge's sends) pays
 * for each token about once.
 */
export class TokenVerifier {
  readonly #rules: TokenRules;
  readonly #keys: KeyLookup;
  readonly #cache: ExpiringCache<Identity>;
  /** Verifications under way, by token: bounded by the calls in flight. */
  readonly #verifying = new Map<string, Promise<Identity>>();
  readonly #tolerance: number;
  readonly #now: () => number;

  constructor(rules: TokenRules, options: TokenVerifierOptions = {}) {
    this.#rules = rules;
    this.#keys = keyLookup(rules);
    this.#cache = new ExpiringCache<Identity>(options.cacheSize ?? 10_000, VERIFIED_TTL_MS, options.now ?? Date.now);
    this.#tolerance = options.clockToleranceSeconds ?? 5;
    this.#now = options.now ?? Date.now;
  }

  /** The identity in `token`, or an UNAUTHENTICATED ParleyError saying why not. */
  async verify(token: string): Promise<Identity> {
    const cached = this.cachedIdentity(token);
    if (cached !== undefined) return cached;
    // Calls that arrive together with one token (a client opening thousands
    // of streams at once) share one verification instead of each paying an
    // HMAC before the first has filled the cache.
    const pending = this.#verifying.get(token);
    if (pending !== undefined) return pending;
    const verifying = this.#verifyUncached(token).then((identity) => {
      this.#cache.set(token, identity, identity.expiresAt === undefined ? undefined : (identity.expiresAt + this.#tolerance) * 1000);
      return identity;
    });
    this.#verifying.set(token, verifying);
    try {
      return await verifying;
    } finally {
      this.#verifying.delete(token);
    }
  }

  /** The identity of a token verified before and not expired since; undefined otherwise (call verify). */
  cachedIdentity(token: string): Identity | undefined {
    return this.#cache.get(token);
  }

  async #verifyUncached(token: string): Promise<Identity> {
    if (token === "") throw unauthenticated("no bearer token");
    let payload;
    try {
      let header;
      const rules = this.#rules;
      ({ payload, protectedHeader: header } = await jwtVerify(token, this.#keys.resolve, {
        algorithms: [...this.#keys.algorithms],
        clockTolerance: this.#tolerance,
        currentDate: new Date(this.#now()),
        // A token without an expiry would be valid forever.
        requiredClaims: ["exp"],
        ...(rules.issuer === undefined ? {} : { issuer: rules.issuer }),
        ...(rules.audience === undefined ? {} : { audience: [...rules.audience] }),
      }));
      // An ID token or anything else that is not an access token is refused.
      if (header.typ !== undefined && !ACCESS_TOKEN_TYPES.has(header.typ.toLowerCase())) {
        throw unauthenticated(`token type \`${header.typ}\` is not an access token (JWT or at+jwt)`);
      }
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      throw unauthenticated(describeJoseError(error), error);
    }
    // jose checked `exp` is a number in the future.
    const expiresAt = payload.exp ?? 0;
    // Measured from now at the latest: an `iat` in the future (which jose
    // accepts) would otherwise stretch a token's life past the maximum.
    const nowSeconds = this.#now() / 1000;
    const issuedAt = typeof payload.iat === "number" ? Math.min(payload.iat, nowSeconds) : nowSeconds;
    if (expiresAt - issuedAt > this.#rules.maxLifetimeSeconds + this.#tolerance) {
      throw unauthenticated(`token lifetime (exp − iat) of ${Math.round(expiresAt - issuedAt)} s exceeds the maximum of ${this.#rules.maxLifetimeSeconds} s`);
    }
    const sub: unknown = payload.sub;
    // Checked as a string first: a regular expression would read ["bob"] as "bob".
    if (typeof sub !== "string" || !USER_ID.test(sub)) {
      throw unauthenticated("token has no valid `sub` (user id: letters, digits, _ . : @ -, up to 128)");
    }
    const scope = payload.scope;
    const scopes = new Set(typeof scope === "string" ? scope.split(" ").filter((s) => s !== "") : []);
    if (scopes.has(ROOMS_RELAY_SCOPE) && !(this.#rules.relaySubjects ?? []).includes(sub)) {
      throw unauthenticated(`token carries the \`${ROOMS_RELAY_SCOPE}\` scope, but \`${sub}\` is not a configured relay (PARLEY_RELAY_SUBJECTS)`);
    }
    return { user: sub, expiresAt, scopes };
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
  /** The `kid` header, naming the key among several. */
  readonly kid?: string;
}

/** Signs an HS256 token for `user` (tests, tools and the development mode). */
export async function mintToken(secret: string, user: string, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(options.scopes === undefined ? {} : { scope: options.scopes.join(" ") })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", ...(options.kid === undefined ? {} : { kid: options.kid }) })
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
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "token algorithm is not one the configured keys use";
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.reason === "missing") return `token has no \`${error.claim}\` claim, which is required`;
    if (error.claim === "iss") return "token issuer (`iss`) is not the configured one";
    if (error.claim === "aud") return "token audience (`aud`) is not one of the configured ones";
    if (error.claim === "nbf") return "token is not valid yet (`nbf`)";
    return `token claim \`${error.claim}\` is not valid`;
  }
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return "token is malformed";
  return "token could not be verified";
}
