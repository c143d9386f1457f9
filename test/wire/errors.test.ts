import { Metadata, status as Status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { CloseCode } from "../../gen/parley/v1/frames_pb.js";
import { ALL_CATEGORIES, categoryFromName, categoryName, ErrorCategory, isRetryableCategory } from "../../src/wire/errors/category.js";
import { classifyDatabaseError, fromDatabaseError } from "../../src/core/store/database-errors.js";
import { categoryForGrpcCode, fromGrpcError, grpcCodeForCategory, toGrpcStatus } from "../../src/runtime/grpc/status.js";
import { ParleyError, validationError } from "../../src/wire/errors/parley-error.js";
import { closeCodeForCategory, closeMeaning, errorFrame, httpStatusForCategory, shouldReconnect } from "../../src/wire/errors/websocket.js";
import { encodeServerFrame } from "../../src/wire/frames/frames.js";

const ALL_GRPC_CODES = Object.values(Status).filter((v): v is Status => typeof v === "number");

describe("retry_after", () => {
  it("is whole milliseconds, never negative: a clock difference (a fraction) still makes an error frame both formats can write", () => {
    const error = new ParleyError(ErrorCategory.RATE_LIMITED, "slow down", { retryAfterMs: 1234.5678901 });
    expect(error.retryAfterMs).toBe(1235);
    expect(new ParleyError(ErrorCategory.RATE_LIMITED, "now", { retryAfterMs: -3.5 }).retryAfterMs).toBe(0);
    const frame = errorFrame("r1", error);
    expect(JSON.parse(encodeServerFrame(frame, "json") as string)).toMatchObject({ error: { retryAfter: "1.235s" } });
    expect(encodeServerFrame(frame, "binary")).toBeInstanceOf(Uint8Array);
  });
});

describe("category → gRPC status → category", () => {
  it.each(ALL_CATEGORIES.map((c) => [categoryName(c), c] as const))("%s survives the trip through status details", (_name, category) => {
    const original = new ParleyError(category, `failure of kind ${categoryName(category)}`, {
      field: category === ErrorCategory.VALIDATION ? "send.body" : undefined,
      retryAfterMs: category === ErrorCategory.RATE_LIMITED ? 1500 : undefined,
    });
    const status = toGrpcStatus(original, "4bf92f3577b34da6a3ce929d0e0e4736");
    expect(status.code).toBe(grpcCodeForCategory(category));
    expect(status.code).not.toBe(Status.OK);

    // What a grpc-js client sees: a ServiceError with code, details and trailers.
    const received = fromGrpcError({ code: status.code, details: status.details, metadata: status.metadata });
    expect(received.category).toBe(category);
    expect(received.message).toBe(original.message);
    expect(received.field).toBe(original.field);
    expect(received.retryable).toBe(isRetryableCategory(category));
    expect(received.retryAfterMs).toBe(original.retryAfterMs);
    expect(received.context.remote_trace_id).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it("reads grpc-js's refusal of an oversized message as the caller's VALIDATION, not RATE_LIMITED", () => {
    for (const details of ["Received message larger than max (4194400 vs 4194304)", "Sent message larger than max (10 vs. 5)"]) {
      const error = fromGrpcError({ code: Status.RESOURCE_EXHAUSTED, details, metadata: new Metadata() });
      expect(error.category).toBe(ErrorCategory.VALIDATION);
      expect(error.retryable).toBe(false);
    }
    expect(fromGrpcError({ code: Status.RESOURCE_EXHAUSTED, details: "quota", metadata: new Metadata() }).category).toBe(ErrorCategory.RATE_LIMITED);
  });

  it("reads the loss of the HTTP/2 session under a call (grpc-js's bare INTERNAL) as UNAVAILABLE and retryable, not as a give-up", () => {
    for (const details of ["Received RST_STREAM with code 2 triggered by internal client error: Session closed with error code 2", "Received RST_STREAM with code 7 (Refused stream)", "Connection dropped: GOAWAY", "read ECONNRESET"]) {
      const error = fromGrpcError({ code: Status.INTERNAL, details, metadata: new Metadata() });
      expect({ category: error.category, retryable: error.retryable }, details).toEqual({ category: ErrorCategory.UNAVAILABLE, retryable: true });
    }
    // A server's own INTERNAL stays INTERNAL.
    expect(fromGrpcError({ code: Status.INTERNAL, details: "null pointer in handler", metadata: new Metadata() }).category).toBe(ErrorCategory.INTERNAL);
  });

  it("maps a bare status code of every kind to a category (statuses without parley details)", () => {
    for (const code of ALL_GRPC_CODES) {
      const category = categoryForGrpcCode(code);
      expect(ALL_CATEGORIES).toContain(category);
      const error = fromGrpcError({ code, details: "from elsewhere", metadata: new Metadata() });
      expect(error.category).toBe(category);
      expect(error.message).toBe("from elsewhere");
    }
  });

  it("maps each category's own status code back to the category when details are lost", () => {
    const distinctCodes = new Set(ALL_CATEGORIES.map(grpcCodeForCategory));
    for (const category of ALL_CATEGORIES) {
      const code = grpcCodeForCategory(category);
      // Categories sharing a code (SERIALIZATION and INTERNAL, DELIVERY's UNKNOWN)
      // need the detail; every other code maps straight back.
      if ([ErrorCategory.SERIALIZATION, ErrorCategory.DELIVERY].includes(category)) continue;
      expect(categoryForGrpcCode(code)).toBe(category);
    }
    expect(distinctCodes.size).toBeGreaterThanOrEqual(ALL_CATEGORIES.length - 2);
  });

  it("falls back to the code when the details trailer is corrupt", () => {
    const metadata = new Metadata();
    metadata.set("grpc-status-details-bin", Buffer.from([0xff, 0xff, 0xff]));
    expect(fromGrpcError({ code: Status.UNAVAILABLE, details: "down", metadata }).category).toBe(ErrorCategory.UNAVAILABLE);
  });

  it("wraps anything that is not a gRPC error as INTERNAL, keeping the cause", () => {
    const cause = new TypeError("x is undefined");
    const error = fromGrpcError(cause);
    expect(error.category).toBe(ErrorCategory.INTERNAL);
    expect(error.cause).toBe(cause);
  });
});

describe("ParleyError", () => {
  it("never carries UNSPECIFIED", () => {
    expect(new ParleyError(ErrorCategory.UNSPECIFIED, "?").category).toBe(ErrorCategory.INTERNAL);
  });

  it("from() passes ParleyErrors through and wraps the rest", () => {
    const original = validationError("room", "is required");
    expect(ParleyError.from(original)).toBe(original);
    expect(ParleyError.from("boom").category).toBe(ErrorCategory.INTERNAL);
    expect(ParleyError.from(new Error("x"), ErrorCategory.UNAVAILABLE).category).toBe(ErrorCategory.UNAVAILABLE);
  });

  it("retryability is data: the table decides, one error may override", () => {
    expect(ALL_CATEGORIES.filter(isRetryableCategory).map(categoryName).sort()).toEqual(
      ["DELIVERY", "PERSISTENCE", "RATE_LIMITED", "TIMEOUT", "UNAVAILABLE"].sort(),
    );
    expect(new ParleyError(ErrorCategory.PERSISTENCE, "constraint", { retryable: false }).retryable).toBe(false);
  });

  it("names round-trip", () => {
    for (const category of ALL_CATEGORIES) {
      expect(categoryFromName(categoryName(category))).toBe(category);
      expect(categoryFromName(`ERROR_CATEGORY_${categoryName(category)}`)).toBe(category);
    }
    expect(categoryFromName("NOPE")).toBeUndefined();
    expect(categoryFromName("UNSPECIFIED")).toBeUndefined();
  });
});

describe("database error → category", () => {
  const pgError = (code: string, message = "pg failure") => Object.assign(new Error(message), { code });

  it.each([
    ["40001", ErrorCategory.PERSISTENCE, true],
    ["40P01", ErrorCategory.PERSISTENCE, true],
    ["08006", ErrorCategory.UNAVAILABLE, true],
    ["57P01", ErrorCategory.UNAVAILABLE, true],
    ["53300", ErrorCategory.UNAVAILABLE, true],
    ["57014", ErrorCategory.TIMEOUT, false],
    ["23505", ErrorCategory.PERSISTENCE, false],
    ["22001", ErrorCategory.VALIDATION, false],
    ["42P01", ErrorCategory.PERSISTENCE, false],
    ["ECONNREFUSED", ErrorCategory.UNAVAILABLE, true],
    ["ECONNRESET", ErrorCategory.UNAVAILABLE, true],
  ] as const)("SQLSTATE/code %s → %s (transient %s)", (code, category, transient) => {
    expect(classifyDatabaseError(pgError(code))).toMatchObject({ category, transient, code });
  });

  it("reads the code through wrapping layers (MikroORM wraps pg errors)", () => {
    const wrapped = new Error("outer", { cause: new Error("middle", { cause: pgError("40P01") }) });
    expect(classifyDatabaseError(wrapped)).toMatchObject({ category: ErrorCategory.PERSISTENCE, transient: true });
    const sqlState = Object.assign(new Error("driver"), { sqlState: "08003", code: "whatever" });
    expect(classifyDatabaseError(sqlState).category).toBe(ErrorCategory.UNAVAILABLE);
  });

  it("recognises a dropped connection reported by message only", () => {
    expect(classifyDatabaseError(new Error("Connection terminated unexpectedly"))).toMatchObject({
      category: ErrorCategory.UNAVAILABLE,
      transient: true,
    });
  });

  it("treats anything unknown as a non-transient PERSISTENCE error", () => {
    expect(classifyDatabaseError(new Error("strange"))).toMatchObject({ category: ErrorCategory.PERSISTENCE, transient: false });
    const error = fromDatabaseError(pgError("23505", "insert into secrets values ('alice-data') - duplicate key value"));
    expect(error.category).toBe(ErrorCategory.PERSISTENCE);
    // The driver's text quotes SQL and values: it stays in the cause, never in the message.
    expect(error.message).toBe("database: the transaction was rolled back (SQLSTATE 23505)");
    expect(error.message).not.toContain("alice-data");
  });
});

describe("category → WebSocket", () => {
  it("every category has an error frame, a close code and an upgrade status", () => {
    const closeCodes = Object.values(CloseCode).filter((v): v is CloseCode => typeof v === "number");
    for (const category of ALL_CATEGORIES) {
      const frame = errorFrame("req-1", new ParleyError(category, "nope"));
      expect(frame.requestId).toBe("req-1");
      expect(frame.kind.case).toBe("error");
      expect(frame.kind.value).toMatchObject({ category, message: "nope" });
      const close = closeCodeForCategory(category);
      expect(closeCodes).toContain(close);
      expect(close).not.toBe(CloseCode.UNSPECIFIED);
      const http = httpStatusForCategory(category);
      expect(http).toBeGreaterThanOrEqual(400);
      expect(http).toBeLessThan(600);
    }
    expect(httpStatusForCategory(ErrorCategory.UNAUTHENTICATED)).toBe(401);
    expect(httpStatusForCategory(ErrorCategory.ROUTING)).toBe(404);
    expect(httpStatusForCategory(ErrorCategory.VALIDATION)).toBe(400);
  });

  it("splits close codes into reconnect and terminal ranges", () => {
    expect(shouldReconnect(CloseCode.SLOW_CONSUMER)).toBe(true);
    expect(shouldReconnect(CloseCode.HEARTBEAT_TIMEOUT)).toBe(true);
    expect(shouldReconnect(CloseCode.RATE_LIMITED)).toBe(true);
    expect(shouldReconnect(CloseCode.GOING_AWAY)).toBe(true);
    expect(shouldReconnect(CloseCode.INTERNAL_ERROR)).toBe(true);
    expect(shouldReconnect(CloseCode.UNAUTHENTICATED)).toBe(false);
    expect(shouldReconnect(CloseCode.PERMISSION_DENIED)).toBe(false);
    expect(shouldReconnect(CloseCode.TOO_MANY_ERRORS)).toBe(false);
    expect(shouldReconnect(CloseCode.MESSAGE_TOO_BIG)).toBe(false);
    expect(shouldReconnect(CloseCode.NORMAL)).toBe(false);
    expect(shouldReconnect(CloseCode.INVALID_PAYLOAD)).toBe(false);
  });

  it("gives every CloseCode a category and a reconnect decision that agrees with its range", () => {
    const closeCodes = Object.values(CloseCode).filter((v): v is CloseCode => typeof v === "number");
    expect(closeCodes).toContain(CloseCode.INVALID_PAYLOAD);
    expect(CloseCode.INVALID_PAYLOAD).toBe(1007);
    for (const code of closeCodes) {
      const meaning = closeMeaning(code);
      const number: number = code;
      expect(ALL_CATEGORIES).toContain(meaning.category);
      expect(typeof meaning.reconnect).toBe("boolean");
      expect(shouldReconnect(code)).toBe(meaning.reconnect);
      if (number >= 4000 && number <= 4499) expect(meaning.reconnect).toBe(true);
      if (number >= 4500 && number <= 4999) expect(meaning.reconnect).toBe(false);
    }
    expect(closeMeaning(CloseCode.INVALID_PAYLOAD)).toEqual({ category: ErrorCategory.VALIDATION, reconnect: false });
    expect(closeMeaning(CloseCode.MESSAGE_TOO_BIG).category).toBe(ErrorCategory.VALIDATION);
  });

  it("reads back the category each close code was chosen for", () => {
    for (const category of [ErrorCategory.UNAUTHENTICATED, ErrorCategory.PERMISSION_DENIED, ErrorCategory.RATE_LIMITED, ErrorCategory.TIMEOUT, ErrorCategory.DELIVERY, ErrorCategory.UNAVAILABLE, ErrorCategory.INTERNAL, ErrorCategory.VALIDATION]) {
      expect(closeMeaning(closeCodeForCategory(category)).category).toBe(category);
    }
  });

  it("reads standard codes parley does not send, and unknown ones by their range", () => {
    expect(closeMeaning(1006)).toEqual({ category: ErrorCategory.UNAVAILABLE, reconnect: true });
    expect(closeMeaning(1012).reconnect).toBe(true);
    expect(closeMeaning(1013).reconnect).toBe(true);
    expect(closeMeaning(1002)).toEqual({ category: ErrorCategory.VALIDATION, reconnect: false });
    expect(closeMeaning(1003).category).toBe(ErrorCategory.VALIDATION);
    expect(closeMeaning(4321).reconnect).toBe(true);
    expect(closeMeaning(4777).reconnect).toBe(false);
    expect(closeMeaning(1005).reconnect).toBe(false);
    expect(closeMeaning(3000).reconnect).toBe(false);
  });
});
