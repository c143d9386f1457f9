import { validationError } from "./errors/parley-error.js";

/** Room ids: what `/ws/chat/{room}` and every `room` field accept. */
export const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** Idempotency keys (client_msg_id, idempotency_key). */
export const IDEMPOTENCY_KEY = /^[A-Za-z0-9_.:-]{1,128}$/;
export const MAX_BODY_CODE_POINTS = 4096;
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
/** Most items in one SendBatches request (and answers in one response). */
export const MAX_BATCH_ITEMS = 512;
/** Room settings and membership reasons (RoomService). */
export const MAX_ROOM_NAME_CODE_POINTS = 128;
export const MAX_ROOM_TOPIC_CODE_POINTS = 1024;
export const MAX_REASON_CODE_POINTS = 512;
/** A direct conversation's users besides its creator. */
export const MAX_DIRECT_OTHERS = 15;

export function checkRoom(room: string, field = "room"): string {
  if (room === "") throw validationError(field, "is required");
  if (!ROOM_ID.test(room)) {
    throw validationError(field, "must be 1-128 characters: letters, digits, _ . : - (starting with a letter or digit)");
  }
  return room;
}

export function checkIdempotencyKey(key: string, field: string): string {
  if (key === "") throw validationError(field, "is required");
  if (!IDEMPOTENCY_KEY.test(key)) throw validationError(field, "must be 1-128 characters: letters, digits, _ . : -");
  return key;
}

/** Text fields: a code-point limit, and no NUL (PostgreSQL text cannot hold it). */
export function checkText(text: string, field: string, options: { required: boolean; maxCodePoints: number }): string {
  if (text === "") {
    if (options.required) throw validationError(field, "is required");
    return text;
  }
  if (text.includes("\u0000")) throw validationError(field, "must not contain NUL characters");
  // Cheap bound first: UTF-16 length is at least the code-point count.
  if (text.length > options.maxCodePoints && countCodePoints(text) > options.maxCodePoints) {
    throw validationError(field, `must be at most ${options.maxCodePoints} characters`);
  }
  return text;
}

export function checkBody(body: string, field = "body"): string {
  return checkText(body, field, { required: true, maxCodePoints: MAX_BODY_CODE_POINTS });
}

export function checkSeq(seq: bigint, field: string): bigint {
  if (seq < 0n) throw validationError(field, "must not be negative");
  return seq;
}

/** 0 means the default; anything outside 1..MAX is refused rather than clamped. */
export function checkPageSize(pageSize: number, field = "page_size"): number {
  if (pageSize === 0) return DEFAULT_PAGE_SIZE;
  if (pageSize < 0 || pageSize > MAX_PAGE_SIZE) throw validationError(field, `must be between 1 and ${MAX_PAGE_SIZE} (0 for ${DEFAULT_PAGE_SIZE})`);
  return pageSize;
}

/** Unicode code points (what the limits count), not UTF-16 units or graphemes. */
function countCodePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}
