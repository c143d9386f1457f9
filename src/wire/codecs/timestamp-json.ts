import type { Timestamp } from "@bufbuild/protobuf/wkt";

const EARLIEST_MS = Date.parse("0001-01-01T00:00:00Z");
const LATEST_MS = Date.parse("9999-12-31T23:59:59Z");

/** The last second formatted: a room's messages mostly share their second. */
let cachedSeconds: bigint | undefined;
let cachedSecondText = "";

/** RFC 3339 in UTC, as protobuf-es writes it; undefined where toJson throws (out of range, bad nanos). */
export function timestampJson(timestamp: Timestamp): string | undefined {
  const { seconds, nanos } = timestamp;
  if (seconds !== cachedSeconds) {
    const ms = Number(seconds) * 1000;
    if (!(ms >= EARLIEST_MS && ms <= LATEST_MS)) return undefined;
    // "YYYY-MM-DDTHH:mm:ss" of "YYYY-MM-DDTHH:mm:ss.000Z" (whole seconds).
    cachedSecondText = new Date(ms).toISOString().slice(0, 19);
    cachedSeconds = seconds;
  }
  if (nanos < 0 || nanos > 999_999_999) return undefined;
  if (nanos === 0) return `${cachedSecondText}Z`;
  const digits = (nanos + 1_000_000_000).toString().slice(1);
  if (digits.endsWith("000000")) return `${cachedSecondText}.${digits.slice(0, 3)}Z`;
  if (digits.endsWith("000")) return `${cachedSecondText}.${digits.slice(0, 6)}Z`;
  return `${cachedSecondText}.${digits}Z`;
}
