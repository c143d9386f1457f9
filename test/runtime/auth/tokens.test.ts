import { SignJWT, UnsecuredJWT } from "jose";
import { describe, expect, it } from "vitest";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { mintToken, TokenVerifier } from "../../../src/runtime/auth/tokens.js";
import { hmacRules } from "../../../src/runtime/auth/key-sources.js";
import { rejection } from "../../support/assertions.js";

// What a token must be to be accepted: HS256 over the key, an expiry, an
// access-token type, and a `sub` that is a user id — each refusal saying why.

const SECRET = "tokens-test-secret-that-is-long-enough-for-hs256";
const key = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);

/** A token with exactly these claims and header fields. */
function signed(claims: Record<string, unknown>, header: Record<string, unknown> = { typ: "JWT" }): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256", ...header }).sign(key);
}

async function refusal(token: string): Promise<string> {
  const error = await rejection(new TokenVerifier(hmacRules(SECRET)).verify(token));
  expect(error.category).toBe(ErrorCategory.UNAUTHENTICATED);
  return error.message;
}

describe("TokenVerifier", () => {
  it("accepts a minted token: its sub is the user, its scopes the scope claim", async () => {
    const identity = await new TokenVerifier(hmacRules(SECRET)).verify(await mintToken(SECRET, "alice", { scopes: ["rooms:admin"] }));
    expect(identity.user).toBe("alice");
    expect([...identity.scopes]).toEqual(["rooms:admin"]);
  });

  it("answers calls that arrive together with one token alike, the good with its identity and the bad with its refusal, and remembers neither wrongly", async () => {
    const verifier = new TokenVerifier(hmacRules(SECRET));
    const good = await mintToken(SECRET, "crowd");
    const bad = await mintToken("another-secret-that-is-long-enough-for-hs256", "crowd");
    const [goods, bads] = await Promise.all([
      Promise.all(Array.from({ length: 1_000 }, () => verifier.verify(good))),
      Promise.all(Array.from({ length: 1_000 }, () => rejection(verifier.verify(bad)))),
    ]);
    expect(new Set(goods.map((identity) => identity.user))).toEqual(new Set(["crowd"]));
    expect(new Set(bads.map((error) => error.category))).toEqual(new Set([ErrorCategory.UNAUTHENTICATED]));
    expect(verifier.cachedIdentity(good)?.user).toBe("crowd");
    expect(verifier.cachedIdentity(bad)).toBeUndefined();
    expect((await rejection(verifier.verify(bad))).category).toBe(ErrorCategory.UNAUTHENTICATED);
  });

  it("refuses a token without `exp`, which would never expire", async () => {
    expect(await refusal(await signed({ sub: "alice" }))).toMatch(/no `exp` claim, which is required/);
  });

  it("refuses a `sub` that is not a string, even one a pattern would read as a user id", async () => {
    for (const sub of [["bob"], 42, { id: "bob" }, "", "not a user"]) {
      expect(await refusal(await signed({ sub, exp: now() + 60 }))).toMatch(/no valid `sub`/);
    }
  });

  it("refuses a token whose type is not an access token; accepts JWT and at+jwt in any case", async () => {
    expect(await refusal(await signed({ sub: "alice", exp: now() + 60 }, { typ: "id+jwt" }))).toMatch(/token type `id\+jwt` is not an access token/);
    for (const typ of ["JWT", "at+jwt", "application/at+JWT"]) {
      expect((await new TokenVerifier(hmacRules(SECRET)).verify(await signed({ sub: "alice", exp: now() + 60 }, { typ }))).user).toBe("alice");
    }
    // No typ at all is allowed (many providers omit it).
    expect((await new TokenVerifier(hmacRules(SECRET)).verify(await signed({ sub: "alice", exp: now() + 60 }, {}))).user).toBe("alice");
  });

  it("refuses a token not yet valid (`nbf`), an expired one, an unsigned one and one signed with another key", async () => {
    expect(await refusal(await signed({ sub: "alice", exp: now() + 600, nbf: now() + 300 }))).toMatch(/`nbf`/);
    expect(await refusal(await mintToken(SECRET, "alice", { expiresInSeconds: -60 }))).toMatch(/expired/);
    expect(await refusal(new UnsecuredJWT({ sub: "alice", exp: now() + 60 }).encode())).toMatch(/unauthenticated/);
    expect(await refusal(await mintToken("another-secret-that-is-long-enough-too", "alice"))).toMatch(/signature does not verify/);
  });
});
