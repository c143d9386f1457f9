import type { DescEnum, DescField, DescMessage } from "@bufbuild/protobuf";
import { validationError } from "./errors/parley-error.js";
import { underSegment } from "./field-path.js";

/** An enum field holding a number its enum does not define. */
export interface UndefinedEnumValue {
  /** Dotted path of proto field names, e.g. `history.direction`, `items[2].kind`. */
  readonly path: string;
  readonly value: number;
  readonly enumName: string;
}

/** Looks below one value (a message, list, map or enum number) of a known type; the path found is relative to it. */
type Check = (value: unknown) => UndefinedEnumValue | undefined;

/**
 * Proto3 enums are open: protobuf-es decodes `direction: 7` (binary or
 * JSON) and keeps the 7, which the code after it would read as the
 * default. A request that says 7 means something parley does not know, so
 * it is refused rather than guessed at.
 *
 * Throws VALIDATION naming the field for the first enum field (at any depth:
 * nested messages, oneofs, repeated and map fields) that holds a number its
 * enum does not define.
 */
export function checkEnums(schema: DescMessage, message: object): void {
  const found = findUndefinedEnum(schema, message);
  if (found !== undefined) throw validationError(found.path, describeUndefinedEnum(found));
}

/** The reason for an undefined enum value, without the field. */
export function describeUndefinedEnum(found: UndefinedEnumValue): string {
  return `${found.value} is not a defined value of ${found.enumName}`;
}

/** The first enum field of `message` holding an undefined number, or undefined. */
export function findUndefinedEnum(schema: DescMessage, message: object): UndefinedEnumValue | undefined {
  return messageCheck(schema)?.(message);
}

/**
 * Whether messages of `schema` can hold an enum at all. A caller on a hot
 * path asks once and skips the walk for schemas that cannot (SendMessageRequest).
 */
export function canHoldEnums(schema: DescMessage): boolean {
  return messageCheck(schema) !== undefined;
}

// Per schema: its check, or null when no path below it reaches an enum.
// Built once, so a message without enums costs one map lookup.
const checks = new Map<string, Check | null>();

/**
 * Struct, Value and ListValue fields are plain JSON values in protobuf-es
 * (Value's NullValue arrives as `null`), the wrappers unboxed scalars:
 * neither can carry an enum number.
 */
const JSON_SHAPED = /^google\.protobuf\.(Struct|Value|ListValue|(Double|Float|Int64|UInt64|Int32|UInt32|Bool|String|Bytes)Value)$/;

function messageCheck(schema: DescMessage): Check | undefined {
  const known = checks.get(schema.typeName);
  if (known !== undefined) return known ?? undefined;
  if (JSON_SHAPED.test(schema.typeName)) {
    checks.set(schema.typeName, null);
    return undefined;
  }
  // A recursive schema meets itself while its check is being built: the
  // placeholder calls the finished check (only ever called after this returns).
  checks.set(schema.typeName, (value) => built?.(value));
  const parts: Check[] = [];
  for (const member of schema.members) {
    if (member.kind === "oneof") {
      const cases = new Map<string, { name: string; check: Check }>();
      for (const field of member.fields) {
        const check = valueCheck(field);
        if (check !== undefined) cases.set(field.localName, { name: field.name, check });
      }
      if (cases.size === 0) continue;
      const key = member.localName;
      parts.push((message) => {
        const selected = (message as Record<string, { case?: string; value?: unknown } | undefined>)[key];
        const chosen = selected?.case === undefined ? undefined : cases.get(selected.case);
        const found = chosen?.check(selected?.value);
        return found === undefined || chosen === undefined ? undefined : under(chosen.name, found);
      });
    } else {
      const check = valueCheck(member);
      if (check === undefined) continue;
      const key = member.localName;
      const name = member.name;
      parts.push((message) => {
        const found = check((message as Record<string, unknown>)[key]);
        return found === undefined ? undefined : under(name, found);
      });
    }
  }
  const built = parts.length === 0 ? undefined : firstOf(parts);
  checks.set(schema.typeName, built ?? null);
  return built;
}

function firstOf(parts: readonly Check[]): Check {
  const [only] = parts;
  if (parts.length === 1 && only !== undefined) return only;
  return (message) => {
    for (const part of parts) {
      const found = part(message);
      if (found !== undefined) return found;
    }
    return undefined;
  };
}

/** The check for a field's value, or undefined when the field cannot hold an enum. */
function valueCheck(field: DescField): Check | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return undefined;
    case "enum":
      return enumCheck(field.enum);
    case "message":
      return objectCheck(field.message);
    case "list": {
      const item = field.listKind === "enum" ? enumCheck(field.enum) : field.listKind === "message" ? objectCheck(field.message) : undefined;
      if (item === undefined) return undefined;
      return (list) => {
        if (!Array.isArray(list)) return undefined;
        for (let i = 0; i < list.length; i++) {
          const found = item(list[i]);
          if (found !== undefined) return under(`[${i}]`, found);
        }
        return undefined;
      };
    }
    case "map": {
      const entry = field.mapKind === "enum" ? enumCheck(field.enum) : field.mapKind === "message" ? objectCheck(field.message) : undefined;
      if (entry === undefined) return undefined;
      return (map) => {
        if (!isObject(map)) return undefined;
        for (const [mapKey, value] of Object.entries(map)) {
          const found = entry(value);
          // The key is the client's text: bound it before it goes into a message.
          if (found !== undefined) return under(`[${JSON.stringify(mapKey.slice(0, 64))}]`, found);
        }
        return undefined;
      };
    }
  }
}

function objectCheck(schema: DescMessage): Check | undefined {
  const check = messageCheck(schema);
  if (check === undefined) return undefined;
  return (value) => (isObject(value) ? check(value) : undefined);
}

function enumCheck(desc: DescEnum): Check {
  const defined = new Set(desc.values.map((value) => value.number));
  return (value) => (typeof value === "number" && !defined.has(value) ? { path: "", value, enumName: desc.typeName } : undefined);
}

/** `found` seen from one level up: `segment` is a field name or an index like `[2]`. */
function under(segment: string, found: UndefinedEnumValue): UndefinedEnumValue {
  return { ...found, path: underSegment(segment, found.path) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}
