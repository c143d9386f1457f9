import { WireType } from "@bufbuild/protobuf/wire";

/**
 * The protobuf wire format for the hand-written encoders, which size a
 * message first and then write it into one buffer. Field numbers are below
 * 16 (one-byte tags); proto3 zero values are not written.
 */

/** Bytes of an unsigned 32-bit varint. */
export function varint32Size(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}

/** int64 varints are the two's complement as unsigned 64 bits: negatives take 10 bytes. */
function varint64Size(value: bigint): number {
  let rest = BigInt.asUintN(64, value);
  let size = 1;
  while (rest >= 0x80n) {
    rest >>= 7n;
    size++;
  }
  return size;
}

/** A proto3 int64 (or int32: negatives are sign-extended to 64 bits) field's bytes: none when zero. */
export function int64FieldSize(value: bigint): number {
  return value === 0n ? 0 : 1 + varint64Size(value);
}

/** Writes an int64 field (nothing when zero); returns the next position. */
export function writeInt64Field(out: Buffer, at: number, fieldNo: number, value: bigint): number {
  return value === 0n ? at : writeVarint64(out, writeTag(out, at, fieldNo, WireType.Varint), value);
}

/** A proto3 string field's bytes: none when empty. */
export function stringFieldSize(value: string | undefined): number {
  if (value === undefined || value === "") return 0;
  const length = Buffer.byteLength(value, "utf8");
  return 1 + varint32Size(length) + length;
}

/** Writes a one-byte tag; returns the next position. */
export function writeTag(out: Buffer, at: number, fieldNo: number, wireType: WireType): number {
  out[at] = (fieldNo << 3) | wireType;
  return at + 1;
}

/** Writes an unsigned 32-bit varint; returns the next position. */
export function writeVarint32(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at++] = value;
  return at;
}

function writeVarint64(out: Buffer, at: number, value: bigint): number {
  let rest = BigInt.asUintN(64, value);
  while (rest >= 0x80n) {
    out[at++] = Number(rest & 0x7fn) | 0x80;
    rest >>= 7n;
  }
  out[at++] = Number(rest);
  return at;
}

/** Writes a string field (nothing when empty); returns the next position. */
export function writeStringField(out: Buffer, at: number, fieldNo: number, value: string | undefined): number {
  if (value === undefined || value === "") return at;
  at = writeTag(out, at, fieldNo, WireType.LengthDelimited);
  at = writeVarint32(out, at, Buffer.byteLength(value, "utf8"));
  return at + out.write(value, at, "utf8");
}
