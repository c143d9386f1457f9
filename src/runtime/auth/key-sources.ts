// Where the keys that verify bearer tokens come from: shared HS256 secrets
// (each with an optional `kid`, so a rotation can run with two at once), an
// identity provider's JWKS URL, or a JWKS file. Any OIDC provider (Keycloak,
// Auth0, ...) works by pointing PARLEY_JWKS_URL at its `jwks_uri`.
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTHeaderParameters } from "jose";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../wire/index.js";

/** A shared HS256 secret; a token names it by `kid` (a key without `kid` verifies tokens without one). */
export interface HmacKey {
  readonly kid?: string;
  readonly secret: string;
}

/** An identity provider's key set, fetched over HTTPS and cached (jose's remote key set). */
interface RemoteKeySet {
  readonly url: string;
  /** How long a fetched set is used before it is fetched again (ms). */
  readonly cacheMaxAgeMs: number;
  /** After a fetch, the least time before an unknown `kid` may fetch again (ms). */
  readonly cooldownMs: number;
  /** A fetch that takes longer fails (ms). */
  readonly timeoutMs: number;
}

/** What a token must be signed with, and whom it must come from and be for. */
export interface TokenRules {
  readonly hmacKeys: readonly HmacKey[];
  readonly remoteKeySet?: RemoteKeySet;
  /** A JWKS document (public keys), e.g. read from PARLEY_JWKS_FILE. */
  readonly localKeySet?: JSONWebKeySet;
  /** Required `iss`, when set. */
  readonly issuer?: string;
  /** Accepted `aud` values (one must match), when set. */
  readonly audience?: readonly string[];
  /** Longest accepted lifetime: `exp` − `iat` (or − now, without `iat`), seconds. */
  readonly maxLifetimeSeconds: number;
  /**
   * The subjects that may carry the `rooms:relay` scope (the bridges'
   * client ids at the identity provider). A token of anyone else with that
   * scope is refused: a misconfigured provider must not hand a user the
   * power to read every room.
   */
  readonly relaySubjects?: readonly string[];
}

/** The default longest token lifetime: a day. */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;

/** Rules for one kid-less HS256 secret (tests, tools, the development mode). */
export function hmacRules(secret: string, options: Partial<Omit<TokenRules, "hmacKeys">> = {}): TokenRules {
  return { hmacKeys: [{ secret }], maxLifetimeSeconds: DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, ...options };
}

const HMAC_ALGORITHMS = ["HS256"];
/** Asymmetric algorithms a key set may use; never `none`, never HMAC (a public key is no secret). */
const KEY_SET_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];

type KeyResolver = (header: JWTHeaderParameters) => Promise<Uint8Array | CryptoKey>;

/** A key resolver for jose's jwtVerify, and the algorithms it may be asked for. */
export interface KeyLookup {
  readonly algorithms: readonly string[];
  readonly resolve: KeyResolver;
}

/** Builds the lookup: HS256 tokens find their secret by `kid`, the rest go to the key set(s). */
export function keyLookup(rules: TokenRules): KeyLookup {
  const secrets = new Map<string | undefined, Uint8Array>(rules.hmacKeys.map((key) => [key.kid, new TextEncoder().encode(key.secret)]));
  const local = rules.localKeySet === undefined ? undefined : createLocalJWKSet(rules.localKeySet);
  const remote =
    rules.remoteKeySet === undefined
      ? undefined
      : createRemoteJWKSet(new URL(rules.remoteKeySet.url), {
          cacheMaxAge: rules.remoteKeySet.cacheMaxAgeMs,
          cooldownDuration: rules.remoteKeySet.cooldownMs,
          timeoutDuration: rules.remoteKeySet.timeoutMs,
        });
  const algorithms = [...(secrets.size > 0 ? HMAC_ALGORITHMS : []), ...(local !== undefined || remote !== undefined ? KEY_SET_ALGORITHMS : [])];

  const resolve: KeyResolver = async (header) => {
    if (HMAC_ALGORITHMS.includes(header.alg)) {
      // A kid-less key is the deployment's one key: it also answers a kid it does not know.
      const secret = secrets.get(header.kid) ?? secrets.get(undefined);
      if (secret === undefined) throw unauthenticated(header.kid === undefined ? "token has no `kid`, and every configured HS256 key has one" : `no HS256 key has kid \`${header.kid}\``);
      return secret;
    }
    if (local !== undefined) {
      try {
        return await local(header);
      } catch (error) {
        // Not in the file: the provider's set may have it.
        if (remote === undefined || !(error instanceof joseErrors.JWKSNoMatchingKey)) throw keySetError(error, header);
      }
    }
    if (remote === undefined) throw unauthenticated(`no key for algorithm ${header.alg}`);
    try {
      return await remote(header);
    } catch (error) {
      throw keySetError(error, header);
    }
  };
  return { algorithms, resolve };
}

/**
 * A key set that cannot be read is the provider's outage, not the caller's
 * fault: UNAVAILABLE (retryable), never UNAUTHENTICATED, which would log a
 * user out for good.
 */
function keySetError(error: unknown, header: JWTHeaderParameters): ParleyError {
  if (error instanceof ParleyError) return error;
  if (error instanceof joseErrors.JWKSNoMatchingKey) {
    return unauthenticated(header.kid === undefined ? "no key in the key set matches the token (it has no `kid`)" : `no key in the key set has kid \`${header.kid}\``, error);
  }
  if (error instanceof joseErrors.JWKSMultipleMatchingKeys) return unauthenticated("several keys in the key set match the token; give each a `kid`", error);
  if (error instanceof joseErrors.JOSENotSupported || error instanceof joseErrors.JOSEAlgNotAllowed) return unauthenticated(`token algorithm ${header.alg} is not supported by the key set`, error);
  const reason = error instanceof joseErrors.JWKSTimeout ? "timed out" : error instanceof Error ? error.message : String(error);
  return new ParleyError(ErrorCategory.UNAVAILABLE, `the identity provider's key set could not be read (${reason}); try again`, { cause: error, retryable: true });
}

function unauthenticated(reason: string, cause?: unknown): ParleyError {
  return new ParleyError(ErrorCategory.UNAUTHENTICATED, `unauthenticated: ${reason}`, { cause });
}
