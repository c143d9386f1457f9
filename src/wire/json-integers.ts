import { type DescField, type DescMessage, type JsonValue, ScalarType } from "@bufbuild/protobuf";
import { underSegment } from "./field-path.js";

/** An integer field given as a JSON string that is not a decimal integer. */
export interface LooseIntegerString {
  /** Dotted path of proto field names, e.g. `history.cursor_seq`. */
  readonly path: string;
  readonly reason: string;
}

/**
 * Proto3 JSON lets an integer field be a JSON string (int64 values are
 * written that way), and the string holds a decimal integer: digits with an
 * optional leading `-`, no leading zeros, as a JSON number would be
 * written. protobuf-es reads such strings with Number() and BigInt(), so it
 * also takes "0x10", "0b1", "+5" and "010" as integers; parley refuses them.
 */
const DECIMAL_INTEGER = /^-?(?:0|[1-9][0-9]*)$/;

type Check = (json: JsonValue) => LooseIntegerString | undefined;

/**
 * The first integer field in `json` (a JSON value already accepted by
 * fromJson for `schema`) whose value is a string that is not a decimal
 * integer, or undefined. Schemas without integer fields cost one lookup.
 */
export function findLooseIntegerString(schema: DescMessage, json: JsonValue): LooseIntegerString | undefined {
  return messageCheck(schema)?.(json);
}

const INTEGER_TYPES = new Set<ScalarType>([
  ScalarType.INT32,
  ScalarType.INT64,
  ScalarType.UINT32,
  ScalarType.UINT64,
  ScalarType.SINT32,
  ScalarType.SINT64,
  ScalarType.FIXED32,
  ScalarType.FIXED64,
  ScalarType.SFIXED32,
  ScalarType.SFIXED64,
]);

/** Integer wrappers are written as the bare integer in JSON. */
const INTEGER_WRAPPERS = /^google\.protobuf\.U?Int(32|64)Value$/;

// Per schema: its check, or null when no integer can appear below it.
const checks = new Map<string, Check | null>();

function messageCheck(schema: DescMessage): Check | undefined {
  const known = checks.get(schema.typeName);
  if (known !== undefined) return known ?? undefined;
  // Well-known types have their own JSON forms (Timestamp and Duration are
  // strings, Struct is free JSON); protobuf-es checks those itself.
  if (schema.typeName.startsWith("google.protobuf.")) {
    checks.set(schema.typeName, null);
    return undefined;
  }
  let built: Check | undefined;
  checks.set(schema.typeName, (json) => built?.(json));
  const byKey = new Map<string, { name: string; check: Check }>();
  for (const field of schema.fields) {
    const check = valueCheck(field);
    if (check === undefined) continue;
    // JSON may name a field by its JSON name or its proto name.
    byKey.set(field.jsonName, { name: field.name, check });
    byKey.set(field.name, { name: field.name, check });
  }
  if (byKey.size > 0) {
    built = (json) => {
      if (!isObject(json)) return undefined;
      for (const key in json) {
        const entry = byKey.get(key);
        const value = json[key];
        if (entry === undefined || value === undefined) continue;
        const found = entry.check(value);
        if (found !== undefined) return under(entry.name, found);
      }
      return undefined;
    };
  }
  checks.set(schema.typeName, built ?? null);
  return built;
}

function valueCheck(field: DescField): Check | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return INTEGER_TYPES.has(field.scalar) ? integerCheck : undefined;
    case "enum":
      return undefined;
    case "message":
      return nestedCheck(field.message);
    case "list": {
      const item = field.listKind === "scalar" ? (INTEGER_TYPES.has(field.scalar) ? integerCheck : undefined) : field.listKind === "message" ? nestedCheck(field.message) : undefined;
      if (item === undefined) return undefined;
      return (json) => {
        if (!Array.isArray(json)) return undefined;
        for (let i = 0; i < json.length; i++) {
          const element = json[i];
          const found = element === undefined ? undefined : item(element);
          if (found !== undefined) return under(`[${i}]`, found);
        }
        return undefined;
      };
    }
    case "map": {
      const keyCheck = INTEGER_TYPES.has(field.mapKey) ? integerCheck : undefined;
      const entry = field.mapKind === "scalar" ? (INTEGER_TYPES.has(field.scalar) ? integerCheck : undefined) : field.mapKind === "message" ? nestedCheck(field.message) : undefined;
      if (keyCheck === undefined && entry === undefined) return undefined;
      return (json) => {
        if (!isObject(json)) return undefined;
        for (const key in json) {
          const segment = `[${JSON.stringify(key.slice(0, 64))}]`;
          const badKey = keyCheck?.(key);
          if (badKey !== undefined) return { path: segment, reason: `map key ${badKey.reason}` };
          const value = json[key];
          const found = value === undefined ? undefined : entry?.(value);
          if (found !== undefined) return under(segment, found);
        }
        return undefined;
      };
    }
  }
}

function nestedCheck(schema: DescMessage): Check | undefined {
  if (INTEGER_WRAPPERS.test(schema.typeName)) return integerCheck;
  return messageCheck(schema);
}

function integerCheck(json: JsonValue): LooseIntegerString | undefined {
  if (typeof json !== "string" || DECIMAL_INTEGER.test(json)) return undefined;
  // The value is the client's: quote at most a little of it.
  const shown = json.length > 32 ? `${json.slice(0, 32)}…` : json;
  return { path: "", reason: `${JSON.stringify(shown)} is not a decimal integer` };
}

/** `found` seen from one level up: `segment` is a field name or an index like `[2]`. */
function under(segment: string, found: LooseIntegerString): LooseIntegerString {
  return { ...found, path: underSegment(segment, found.path) };
}

function isObject(json: JsonValue): json is { [key: string]: JsonValue } {
  return typeof json === "object" && json !== null && !Array.isArray(json);
}
