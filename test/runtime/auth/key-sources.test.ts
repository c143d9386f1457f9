import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { hmacRules, type TokenRules } from "../../../src/runtime/auth/key-sources.js";
import { mintToken, TokenVerifier } from "../../../src/runtime/auth/tokens.js";
import { loadConfig } from "../../../src/runtime/config.js";
import { configProblems, rejection } from "../../support/assertions.js";

// Tokens from real identity providers: HS256 keys by kid (a rotation runs
// with two), asymmetric keys from a JWKS URL (rotated at the provider) or a
// file, issuer / audience / lifetime rules. Each refusal says why.

const now = () => Math.floor(Date.now() / 1000);
const SECRET_A = "rotation-key-a-that-is-long-enough-for-hs256";
const SECRET_B = "rotation-key-b-that-is-long-enough-for-hs256";

interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function signingKey(kid: string, alg = "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

function tokenOf(key: SigningKey, claims: Record<string, unknown> = {}, lifetime = 600): Promise<string> {
  return new SignJWT({ sub: "alice", ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "at+jwt" })
    .setIssuedAt()
    .setExpirationTime(now() + lifetime)
    .sign(key.privateKey);
}

/** A provider's `jwks_uri`, serving whatever `keys` holds now; counts fetches. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  readonly #server: Server;
  constructor() {
    this.#server = createServer((_request, response) => {
      this.fetches++;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ keys: this.keys }));
    });
  }
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/certs`;
  }
  stop(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => { resolve(); }));
  }
}

const servers: JwksServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

async function provider(...keys: SigningKey[]): Promise<{ server: JwksServer; url: string }> {
  const server = new JwksServer();
  server.keys = keys.map((key) => key.jwk);
  servers.push(server);
  return { server, url: await server.start() };
}

function remoteRules(url: string, extra: Partial<TokenRules> = {}): TokenRules {
  return { hmacKeys: [], remoteKeySet: { url, cacheMaxAgeMs: 600_000, cooldownMs: 0, timeoutMs: 1_000 }, maxLifetimeSeconds: 86_400, ...extra };
}

async function refusal(verifier: TokenVerifier, token: string, category = ErrorCategory.UNAUTHENTICATED): Promise<string> {
  const error = await rejection(verifier.verify(token));
  expect(error.category).toBe(category);
  return error.message;
}

describe("HS256 keys by kid", () => {
  const rotating = new TokenVerifier({ hmacKeys: [{ kid: "a", secret: SECRET_A }, { kid: "b", secret: SECRET_B }], maxLifetimeSeconds: 3600 });

  it("accepts tokens of either key during a rotation, each found by its kid", async () => {
    expect((await rotating.verify(await mintToken(SECRET_A, "alice", { kid: "a" }))).user).toBe("alice");
    expect((await rotating.verify(await mintToken(SECRET_B, "bob", { kid: "b" }))).user).toBe("bob");
  });

  it("refuses an unknown kid, a token without kid, and a kid paired with the other key's signature", async () => {
    expect(await refusal(rotating, await mintToken(SECRET_A, "alice", { kid: "c" }))).toMatch(/no HS256 key has kid `c`/);
    expect(await refusal(rotating, await mintToken(SECRET_A, "alice"))).toMatch(/token has no `kid`, and every configured HS256 key has one/);
    expect(await refusal(rotating, await mintToken(SECRET_A, "alice", { kid: "b" }))).toMatch(/signature does not verify/);
  });

  it("once the old key is removed, its tokens are refused and the new key's work", async () => {
    const after = new TokenVerifier({ hmacKeys: [{ kid: "b", secret: SECRET_B }], maxLifetimeSeconds: 3600 });
    expect(await refusal(after, await mintToken(SECRET_A, "alice", { kid: "a" }))).toMatch(/no HS256 key has kid `a`/);
    expect((await after.verify(await mintToken(SECRET_B, "alice", { kid: "b" }))).user).toBe("alice");
  });
});

describe("a JWKS URL (an OIDC provider's jwks_uri)", () => {
  it("accepts RS256, ES256 and EdDSA tokens whose kid is in the set, refuses a key not in it", async () => {
    const rsa = await signingKey("rsa-1");
    const ec = await signingKey("ec-1", "ES256");
    const ed = await signingKey("ed-1", "EdDSA");
    const stranger = await signingKey("rsa-1");
    const { url } = await provider(rsa, ec, ed);
    const verifier = new TokenVerifier(remoteRules(url));
    for (const key of [rsa, ec, ed]) expect((await verifier.verify(await tokenOf(key))).user).toBe("alice");
    // Same kid, another key pair: the signature decides.
    expect(await refusal(verifier, await tokenOf(stranger))).toMatch(/signature does not verify/);
  });

  it("rotation: a new kid is fetched when first seen; the removed key's tokens are refused once the set is refreshed", async () => {
    const old = await signingKey("2026-11");
    const fresh = await signingKey("2026-12");
    const { server, url } = await provider(old);
    const verifier = new TokenVerifier(remoteRules(url));
    expect((await verifier.verify(await tokenOf(old))).user).toBe("alice");
    const fetchesBefore = server.fetches;

    // The provider publishes the new key and retires the old one.
    server.keys = [fresh.jwk];
    expect((await verifier.verify(await tokenOf(fresh, { sub: "bob" }))).user).toBe("bob");
    expect(server.fetches).toBe(fetchesBefore + 1);
    expect(await refusal(verifier, await tokenOf(old, { sub: "carol" }))).toMatch(/no key in the key set has kid `2026-11`/);
  });

  it("an unreachable key set is UNAVAILABLE (retryable), not UNAUTHENTICATED; so is one that does not answer in time", async () => {
    const key = await signingKey("k");
    const { server, url } = await provider(key);
    await server.stop();
    servers.splice(servers.indexOf(server), 1);
    const gone = new TokenVerifier(remoteRules(url));
    const error = await rejection(gone.verify(await tokenOf(key)));
    expect(error.category).toBe(ErrorCategory.UNAVAILABLE);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/identity provider's key set could not be read/);

    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const slow = new TokenVerifier(remoteRules(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/certs`, {}));
      expect(await refusal(slow, await tokenOf(key), ErrorCategory.UNAVAILABLE)).toMatch(/timed out/);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("checks issuer and audience when configured, each refusal naming the claim", async () => {
    const key = await signingKey("k");
    const { url } = await provider(key);
    const verifier = new TokenVerifier(remoteRules(url, { issuer: "https://id.example.com/realms/main", audience: ["parley", "chat"] }));
    const good = { iss: "https://id.example.com/realms/main", aud: ["account", "chat"] };
    expect((await verifier.verify(await tokenOf(key, good))).user).toBe("alice");
    expect(await refusal(verifier, await tokenOf(key, { ...good, iss: "https://evil.example.com" }))).toMatch(/issuer \(`iss`\) is not the configured one/);
    expect(await refusal(verifier, await tokenOf(key, { ...good, aud: "billing" }))).toMatch(/audience \(`aud`\) is not one of the configured ones/);
    expect(await refusal(verifier, await tokenOf(key, { aud: "parley" }))).toMatch(/no `iss` claim, which is required/);
  });

  it("refuses the algorithm-confusion attack: an HS256 token keyed with the provider's public key", async () => {
    const key = await signingKey("k");
    const { url } = await provider(key);
    const verifier = new TokenVerifier(remoteRules(url));
    const forged = await new SignJWT({ sub: "mallory" })
      .setProtectedHeader({ alg: "HS256", kid: "k" })
      .setExpirationTime(now() + 600)
      .sign(new TextEncoder().encode(JSON.stringify(key.jwk)));
    expect(await refusal(verifier, forged)).toMatch(/algorithm is not one the configured keys use/);
  });
});

describe("rules on every token", () => {
  it("refuses a lifetime over the maximum, measured from `iat` (or from now without it)", async () => {
    const verifier = new TokenVerifier(hmacRules(SECRET_A, { maxLifetimeSeconds: 3600 }));
    expect((await verifier.verify(await mintToken(SECRET_A, "alice", { expiresInSeconds: 3600 }))).user).toBe("alice");
    expect(await refusal(verifier, await mintToken(SECRET_A, "alice", { expiresInSeconds: 7200 }))).toMatch(/lifetime \(exp − iat\) of 7200 s exceeds the maximum of 3600 s/);
    const noIat = await new SignJWT({ sub: "alice" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime(now() + 7200).sign(new TextEncoder().encode(SECRET_A));
    expect(await refusal(verifier, noIat)).toMatch(/exceeds the maximum/);
  });

  it("measures the lifetime from now when `iat` is in the future: a future `iat` does not stretch the maximum", async () => {
    const verifier = new TokenVerifier(hmacRules(SECRET_A, { maxLifetimeSeconds: 3600 }));
    const signedWith = (claims: Record<string, unknown>) => new SignJWT({ sub: "alice", ...claims }).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(SECRET_A));
    const tenYears = now() + 10 * 365 * 24 * 3600;
    expect(await refusal(verifier, await signedWith({ iat: tenYears, exp: tenYears + 600 }))).toMatch(/exceeds the maximum of 3600 s/);
    // exp − iat is 0 in floating point, the expiry never comes.
    expect(await refusal(verifier, await signedWith({ iat: 1e308 - 10, exp: 1e308 }))).toMatch(/exceeds the maximum of 3600 s/);
    // A provider whose clock runs a little ahead is within the tolerance.
    expect((await verifier.verify(await signedWith({ iat: now() + 2, exp: now() + 2 + 3600 }))).user).toBe("alice");
  });

  it("accepts an identity provider's user ids (Auth0's `auth0|...`)", async () => {
    const verifier = new TokenVerifier(hmacRules(SECRET_A));
    expect((await verifier.verify(await mintToken(SECRET_A, "auth0|5f7c8ec7c33c6c004bbafe82"))).user).toBe("auth0|5f7c8ec7c33c6c004bbafe82");
  });
});

describe("configuration of key sources", () => {
  const dir = mkdtempSync(join(tmpdir(), "parley-jwks-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const problems = (env: Record<string, string>): string => configProblems(env).join("\n");

  it("reads HS256 keys by kid, a JWKS URL, issuer, audiences and the maximum lifetime", () => {
    const config = loadConfig({
      PARLEY_JWT_KEYS: `old:${SECRET_A}, new:${SECRET_B}`,
      PARLEY_JWKS_URL: "https://id.example.com/certs",
      PARLEY_JWT_ISSUER: "https://id.example.com",
      PARLEY_JWT_AUDIENCE: "parley, chat",
      PARLEY_JWT_MAX_LIFETIME_SECONDS: "900",
    });
    expect(config.tokens).toMatchObject({
      hmacKeys: [{ kid: "old", secret: SECRET_A }, { kid: "new", secret: SECRET_B }],
      remoteKeySet: { url: "https://id.example.com/certs", cacheMaxAgeMs: 600_000, cooldownMs: 30_000, timeoutMs: 5_000 },
      issuer: "https://id.example.com",
      audience: ["parley", "chat"],
      maxLifetimeSeconds: 900,
    });
  });

  it("refuses short or duplicate HS256 keys, a JWKS over plain HTTP off this machine, and a file that is no key set", () => {
    expect(problems({ PARLEY_JWT_KEYS: "a:short" })).toMatch(/PARLEY_JWT_KEYS the secret of kid `a` must be at least 32 characters/);
    expect(problems({ PARLEY_JWT_KEYS: `a:${SECRET_A},a:${SECRET_B}` })).toMatch(/kid `a` is given twice/);
    expect(problems({ PARLEY_JWT_KEYS: SECRET_A })).toMatch(/must be kid:secret pairs/);
    expect(problems({ PARLEY_JWKS_URL: "http://id.example.com/certs" })).toMatch(/PARLEY_JWKS_URL must be an https:\/\/ URL/);
    expect(() => loadConfig({ PARLEY_JWKS_URL: "http://127.0.0.1:8081/certs" })).not.toThrow();
    const notKeys = join(dir, "not-keys.json");
    writeFileSync(notKeys, JSON.stringify({ hello: "world" }));
    expect(problems({ PARLEY_JWKS_FILE: notKeys })).toMatch(/is not a JSON Web Key Set/);
    expect(problems({ PARLEY_JWKS_FILE: join(dir, "missing.json") })).toMatch(/PARLEY_JWKS_FILE .* cannot be read/);
  });

  it("a JWKS file verifies the tokens of its keys", async () => {
    const key = await signingKey("file-key", "ES256");
    const file = join(dir, "keys.json");
    writeFileSync(file, JSON.stringify({ keys: [key.jwk] }));
    const rules = loadConfig({ PARLEY_JWKS_FILE: file }).tokens;
    if (rules === undefined) throw new Error("no rules");
    expect((await new TokenVerifier(rules).verify(await tokenOf(key))).user).toBe("alice");
  });
});
