/**
 * Random valid messages of any protobuf-es message type, built from its
 * descriptor: every field kind (scalars of each type, enums, messages,
 * repeated fields, maps), oneofs, optional fields set and unset, nested
 * messages down to a depth. A field added to the proto is generated from the
 * next `npm run generate` on, with nothing to change here: the conformance
 * test of the hand-written codecs relies on that.
 */
import { create, type DescEnum, type DescField, type DescMessage, type DescOneof, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import fc from "fast-check";

export interface ArbitraryMessageOptions {
  /** Nesting levels below which message fields stay unset (default 4). */
  readonly maxDepth?: number;
  /** Elements of a repeated field or entries of a map, at most (default 4). */
  readonly maxLength?: number;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Integers biased to the values codecs get wrong: zero, ±1, the extremes, then anything. */
function extremes<T>(range: fc.Arbitrary<T>, ...edges: T[]): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: fc.constantFrom(...edges), weight: 1 }, { arbitrary: range, weight: 3 });
}

const int64: fc.Arbitrary<bigint> = fc.oneof(
  { arbitrary: fc.constantFrom(0n, 1n, -1n, INT64_MIN, INT64_MAX), weight: 1 },
  { arbitrary: fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), weight: 3 },
);

/**
 * Well-formed Unicode (proto3 strings are UTF-8): any code point, often
 * astral ones (surrogate pairs in JavaScript, four bytes in UTF-8), and the
 * characters JSON escapes.
 */
const unicodeText: fc.Arbitrary<string> = fc.oneof(
  fc.constant(""),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: fc.constantFrom("a", "é", "€", "😀", "𝄞", "\u{10FFFF}", '"', "\\", "\n", "\u0000", "\u2028", "\u007f"), maxLength: 12 }),
);

/** Seconds from 0001-01-01 to 9999-12-31: the range a Timestamp has in JSON. */
const TIMESTAMP_SECONDS = fc.bigInt({ min: -62_135_596_800n, max: 253_402_300_799n });

/**
 * google.protobuf.Timestamp: mostly what a clock gives (seconds in JSON's
 * range, nanos 0–999,999,999, often round ones that JSON shortens), and
 * sometimes any int64 and int32 (valid in binary, refused by JSON).
 */
function timestampInit(): fc.Arbitrary<{ seconds: bigint; nanos: number }> {
  const seconds = fc.oneof({ arbitrary: TIMESTAMP_SECONDS, weight: 4 }, { arbitrary: int64, weight: 1 });
  const nanos = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 999_999_999 }), weight: 2 },
    { arbitrary: fc.integer({ min: 0, max: 999 }).map((n) => n * 1_000_000), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 999_999 }).map((n) => n * 1_000), weight: 1 },
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), weight: 1 },
  );
  return fc.record({ seconds, nanos });
}

/** A value of a scalar type, in protobuf-es's JavaScript representation. */
function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return unicodeText;
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 40 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
      return fc.double();
    case ScalarType.FLOAT:
      return fc.float();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return extremes(fc.bigInt({ min: 0n, max: UINT64_MAX }), 0n, 1n, UINT64_MAX);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return extremes(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), 0, 1, -1, -(2 ** 31), 2 ** 31 - 1);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return extremes(fc.integer({ min: 0, max: 2 ** 32 - 1 }), 0, 1, 2 ** 32 - 1);
  }
}

function enumValue(descEnum: DescEnum): fc.Arbitrary<number> {
  return fc.constantFrom(...descEnum.values.map((value) => value.number));
}

/** A message field's value as an init object, or undefined past the depth. */
function messageInit(desc: DescMessage, depth: number, options: Required<ArbitraryMessageOptions>): fc.Arbitrary<unknown> {
  if (desc.typeName === "google.protobuf.Timestamp") return timestampInit();
  if (depth >= options.maxDepth) return fc.constant(undefined);
  return initOf(desc, depth + 1, options);
}

/** A value for one field, as it goes into an init object (undefined: unset). */
function fieldValue(field: DescField, depth: number, options: Required<ArbitraryMessageOptions>): fc.Arbitrary<unknown> {
  const list = { maxLength: depth >= options.maxDepth ? 0 : options.maxLength };
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field.scalar);
    case "enum":
      return enumValue(field.enum);
    case "message":
      return messageInit(field.message, depth, options);
    case "list":
      switch (field.listKind) {
        case "scalar":
          return fc.array(scalar(field.scalar), list);
        case "enum":
          return fc.array(enumValue(field.enum), list);
        case "message":
          return fc.array(messageInit(field.message, depth, options).filter((value) => value !== undefined), list);
      }
      break;
    case "map": {
      // protobuf-es keys a map by the key's text (a JavaScript object).
      const key = scalar(field.mapKey).map(String);
      const value =
        field.mapKind === "scalar" ? scalar(field.scalar) : field.mapKind === "enum" ? enumValue(field.enum) : messageInit(field.message, depth, options).filter((v) => v !== undefined);
      return fc.array(fc.tuple(key, value), list).map((entries) => Object.fromEntries(entries));
    }
  }
}

/** A member that is set or not: explicit presence (optional, messages) unset, implicit left at its zero value. */
function memberValue(member: DescField | DescOneof, depth: number, options: Required<ArbitraryMessageOptions>): fc.Arbitrary<unknown> {
  if (member.kind === "oneof") {
    return fc.oneof(
      fc.constant({ case: undefined }),
      ...member.fields.map((field) => fieldValue(field, depth, options).map((value) => (value === undefined ? { case: undefined } : { case: field.localName, value }))),
    );
  }
  return fc.option(fieldValue(member, depth, options), { nil: undefined, freq: 4 });
}

function initOf(desc: DescMessage, depth: number, options: Required<ArbitraryMessageOptions>): fc.Arbitrary<Record<string, unknown>> {
  const members = desc.members.map((member) => memberValue(member, depth, options));
  return fc.tuple(...members).map((values) => {
    const init: Record<string, unknown> = {};
    desc.members.forEach((member, index) => {
      const value = values[index];
      if (value !== undefined) init[member.localName] = value;
    });
    return init;
  });
}

/** Random valid messages of `desc`'s type (made with `create`, so every field has its JavaScript shape). */
export function arbitraryMessage<D extends DescMessage>(desc: D, options: ArbitraryMessageOptions = {}): fc.Arbitrary<MessageShape<D>> {
  const resolved = { maxDepth: options.maxDepth ?? 4, maxLength: options.maxLength ?? 4 };
  return initOf(desc, 0, resolved).map((init) => create(desc, init as never));
}
