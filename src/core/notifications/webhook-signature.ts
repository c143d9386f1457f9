import { createHmac, timingSafeEqual } from "node:crypto";

/** `t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]` over `<t>.<raw body>`. */
export const PARLEY_SIGNATURE_HEADER = "parley-signature";
/** The delivery id: the same on every retry of a delivery, so receivers can drop repeats. */
export const PARLEY_DELIVERY_ID_HEADER = "parley-delivery-id";
/** The attempt number: 1 for the first, then 2, 3, ... */
export const PARLEY_ATTEMPT_HEADER = "parley-attempt";

/** How far a signature's timestamp may be from the receiver's clock, either way. */
const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

/**
 * One secret, or several while rotating: the sender signs with each (one
 * `v1=` entry per secret) and a receiver accepts a match with any of its own.
 */
export type WebhookSecret = string | readonly string[];

/** Why a signature was refused. */
type WebhookSignatureFailure =
  /** No header, no or a repeated `t=`, or a `v1=` that is not 64 hex digits. */
  | "malformed"
  /** A well-formed header without any `v1=` entry (e.g. only a future scheme). */
  | "no-signature"
  /** No `v1=` entry matches any secret: a wrong secret or a changed body or timestamp. */
  | "mismatch"
  /** Authentic, but signed further than the tolerance from now: a replay or a skewed clock. */
  | "stale";

export type WebhookVerification =
  | { readonly ok: true; readonly timestamp: number }
  | { readonly ok: false; readonly reason: WebhookSignatureFailure };

export interface VerifyWebhookOptions {
  /** Default 300 s. */
  readonly toleranceSeconds?: number;
  /** The receiver's clock, in unix seconds (default: now). */
  readonly nowSeconds?: number;
}

/**
 * The `parley-signature` header value for `rawBody` sent at `unixSeconds`.
 * The timestamp is inside the MAC, so it cannot be changed to make an old
 * request look fresh.
 */
export function signWebhook(secret: WebhookSecret, rawBody: string | Uint8Array, unixSeconds: number): string {
  if (!Number.isSafeInteger(unixSeconds) || unixSeconds < 0) {
    throw new RangeError(`unixSeconds must be a non-negative integer, got ${unixSeconds}`);
  }
  const t = String(unixSeconds);
  const entries = secretList(secret).map((s) => `v1=${mac(s, t, rawBody).toString("hex")}`);
  return [`t=${t}`, ...entries].join(",");
}

/**
 * Checks a `parley-signature` header against the raw request body (the exact
 * bytes received, before any JSON parsing). Never throws on bad input: it
 * returns `{ ok: true, timestamp }` or `{ ok: false, reason }` so that the
 * receiver decides how to answer (parley's example answers 401).
 *
 * The signature is checked before the timestamp, so `stale` always means
 * "signed with the right secret, but too old or too far ahead".
 */
export function verifyWebhookSignature(
  secret: WebhookSecret,
  headerValue: string | undefined,
  rawBody: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): WebhookVerification {
  const parsed = parseHeader(headerValue);
  if (typeof parsed === "string") return { ok: false, reason: parsed };
  const expected = secretList(secret).map((s) => mac(s, parsed.t, rawBody));
  // timingSafeEqual: the time taken must not tell an attacker how many
  // leading bytes of a forged signature were right.
  const authentic = parsed.signatures.some((candidate) => expected.some((e) => timingSafeEqual(e, candidate)));
  if (!authentic) return { ok: false, reason: "mismatch" };
  const timestamp = Number(parsed.t);
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_SIGNATURE_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: "stale" };
  return { ok: true, timestamp };
}

function mac(secret: string, t: string, rawBody: string | Uint8Array): Buffer {
  return createHmac("sha256", secret).update(`${t}.`).update(rawBody).digest();
}

function secretList(secret: WebhookSecret): readonly string[] {
  const list = typeof secret === "string" ? [secret] : secret;
  if (list.length === 0 || list.some((s) => s === "")) throw new RangeError("a webhook secret must not be empty");
  return list;
}

const DIGITS = /^\d{1,15}$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

function parseHeader(value: string | undefined): { t: string; signatures: Buffer[] } | WebhookSignatureFailure {
  if (value === undefined) return "malformed";
  let t: string | undefined;
  const signatures: Buffer[] = [];
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim();
    const entry = part.slice(eq + 1).trim();
    if (eq < 0) return "malformed";
    if (key === "t") {
      if (t !== undefined || !DIGITS.test(entry)) return "malformed";
      t = entry;
    } else if (key === "v1") {
      if (!SHA256_HEX.test(entry)) return "malformed";
      signatures.push(Buffer.from(entry, "hex"));
    }
    // Other keys are future schemes: ignored, so adding one breaks no receiver.
  }
  if (t === undefined) return "malformed";
  if (signatures.length === 0) return "no-signature";
  return { t, signatures };
}
