import { create } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";

// PostgreSQL's text form of timestamptz: "2026-11-28 16:30:00.123456+00",
// offsets may be "+05:30" or "-03:30:15"; the fraction has up to 6 digits.
const PG_TIMESTAMPTZ = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2}){0,2})$/;

/**
 * Parses a timestamptz as PostgreSQL prints it into a protobuf Timestamp,
 * keeping the microseconds that a JavaScript Date would drop.
 */
export function timestampFromPg(text: string): Timestamp {
  const match = PG_TIMESTAMPTZ.exec(text);
  if (match === null) throw new Error(`not a PostgreSQL timestamptz: ${JSON.stringify(text)}`);
  const [, date = "", time = "", fraction = "", offset = "Z"] = match;
  const offsetSeconds = parseOffset(offset);
  const wholeSeconds = Date.parse(`${date}T${time}Z`) / 1000 - offsetSeconds;
  return create(TimestampSchema, {
    seconds: BigInt(wholeSeconds),
    nanos: Number(fraction.padEnd(9, "0")),
  });
}

function parseOffset(offset: string): number {
  if (offset === "Z") return 0;
  const sign = offset.startsWith("-") ? -1 : 1;
  const digits = offset.slice(1).replaceAll(":", "");
  const hours = Number(digits.slice(0, 2));
  const minutes = Number(digits.slice(2, 4) || "0");
  const seconds = Number(digits.slice(4, 6) || "0");
  return sign * (hours * 3600 + minutes * 60 + seconds);
}
