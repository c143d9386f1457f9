import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * The protobuf wire format for the hand-written decoders' fast path. It
 * reads only what it expects — fields numbered 1–15, each once, strings of
 * valid UTF-8 — and throws GIVE_UP at anything else, so that fromBinary
 * decodes (or rejects) the whole message instead.
 */

/** Thrown inside the fast path to hand the message to fromBinary. */
export const GIVE_UP = new Error("not on the fast path");

export class WireCursor {
  pos = 0;
  /** The last varint read, as its low and high 32 bits (unsigned). */
  lo = 0;
  hi = 0;

  constructor(
    private readonly bytes: Buffer,
    public end: number,
  ) {}

  /** A tag of a field numbered 1–15 (one byte). */
  tag(): number {
    if (this.pos >= this.end) throw GIVE_UP;
    const tag = this.bytes[this.pos++] ?? 0;
    if (tag >= 0x80 || tag < 8) throw GIVE_UP;
    return tag;
  }

  /** Reads a varint into `lo` and `hi`. */
  #varint(): void {
    let lo = 0;
    let hi = 0;
    let byte = 0x80;
    for (let shift = 0; shift < 28 && byte >= 0x80; shift += 7) {
      byte = this.#byte();
      lo |= (byte & 0x7f) << shift;
    }
    if (byte >= 0x80) {
      byte = this.#byte();
      lo |= (byte & 0x0f) << 28;
      hi = (byte & 0x7f) >> 4;
      for (let shift = 3; shift <= 31 && byte >= 0x80; shift += 7) {
        byte = this.#byte();
        hi |= (byte & 0x7f) << shift;
      }
      // More than ten bytes.
      if (byte >= 0x80) throw GIVE_UP;
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  #byte(): number {
    if (this.pos >= this.end) throw GIVE_UP;
    return this.bytes[this.pos++] ?? 0;
  }

  /** int64: the two's complement of the 64 bits. */
  int64(): bigint {
    this.#varint();
    if (this.hi === 0) return BigInt(this.lo);
    // Below 2^53 a double holds it exactly.
    if (this.hi < 0x200000) return BigInt(this.hi * 0x1_0000_0000 + this.lo);
    return BigInt.asIntN(64, (BigInt(this.hi) << 32n) | BigInt(this.lo));
  }

  /** int32: the low 32 bits, signed (a negative one is sign-extended to ten bytes). */
  int32(): number {
    this.#varint();
    return this.lo | 0;
  }

  bool(): boolean {
    this.#varint();
    return this.lo !== 0 || this.hi !== 0;
  }

  /** The length of a length-delimited field, checked against the end. */
  length(): number {
    this.#varint();
    if (this.hi !== 0 || this.lo > this.end - this.pos) throw GIVE_UP;
    return this.lo;
  }

  string(): string {
    const length = this.length();
    const start = this.pos;
    this.pos += length;
    // TextDecoder (fromBinary's) drops a leading byte order mark; Buffer keeps it.
    if (length >= 3 && this.bytes[start] === 0xef && this.bytes[start + 1] === 0xbb && this.bytes[start + 2] === 0xbf) throw GIVE_UP;
    if (length === 0) return "";
    const text = this.bytes.toString("utf8", start, this.pos);
    // fromBinary refuses invalid UTF-8 (proto3 strings are verified), which
    // Buffer replaces with U+FFFD: leave any U+FFFD, meant or not, to it.
    if (text.includes("\ufffd")) throw GIVE_UP;
    return text;
  }

  /** Runs `read` over the next length-delimited field's bytes. */
  nested<T>(read: (cursor: WireCursor) => T): T {
    const length = this.length();
    const outerEnd = this.end;
    this.end = this.pos + length;
    const value = read(this);
    if (this.pos !== this.end) throw GIVE_UP;
    this.end = outerEnd;
    return value;
  }
}

// Tags (field number << 3 | wire type) of the fields read here.
export const VARINT = 0;
export const LENGTH_DELIMITED = 2;
export const tagOf = (fieldNo: number, wireType: number) => (fieldNo << 3) | wireType;

/** A field seen twice would be merged (messages) or overwritten by fromBinary: leave both to it. */
export function once(seen: number, fieldNo: number): number {
  const bit = 1 << fieldNo;
  if ((seen & bit) !== 0) throw GIVE_UP;
  return seen | bit;
}

/** Timestamp: seconds = 1 (int64), nanos = 2 (int32). */
export function readTimestamp(cursor: WireCursor): Timestamp {
  const timestamp: Timestamp = { $typeName: "google.protobuf.Timestamp", seconds: 0n, nanos: 0 };
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.tag();
    seen = once(seen, tag >> 3);
    if (tag === tagOf(1, VARINT)) timestamp.seconds = cursor.int64();
    else if (tag === tagOf(2, VARINT)) timestamp.nanos = cursor.int32();
    else throw GIVE_UP;
  }
  return timestamp;
}

/** A hand-written decoder: the fast path alone, and with fromBinary behind it. */
export interface FastDecoder<D extends DescMessage> {
  /** The message, exactly fromBinary's; fromBinary's errors are the ones thrown. */
  readonly decode: (bytes: Uint8Array) => MessageShape<D>;
  /** The fast path alone: undefined where it gives up (tests check that it does not on the usual traffic). */
  readonly decodeFast: (bytes: Uint8Array) => MessageShape<D> | undefined;
}

/** Wraps a reader of `schema`'s fields into its decoder (bound once: no look-up per call). */
export function fastDecoder<D extends DescMessage>(schema: D, read: (cursor: WireCursor) => MessageShape<D>): FastDecoder<D> {
  const decodeFast = (bytes: Uint8Array): MessageShape<D> | undefined => {
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    try {
      return read(new WireCursor(buffer, buffer.length));
    } catch (error) {
      if (error !== GIVE_UP) throw error;
      return undefined;
    }
  };
  return { decodeFast, decode: (bytes) => decodeFast(bytes) ?? fromBinary(schema, bytes) };
}
