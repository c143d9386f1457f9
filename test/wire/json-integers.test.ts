import type { JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ClientFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import { findLooseIntegerString } from "../../src/wire/json-integers.js";

const history = (field: string, value: JsonValue): JsonValue => ({ requestId: "1", history: { room: "r", [field]: value } });

describe("integer fields given as JSON strings", () => {
  it.each(["0x10", "0X10", "0b1", "0o7", "1e3", " 5", "5 ", "+5", "010", "-", "1.0", "1_000", "٣"])("refuses %j in a 64-bit and a 32-bit field", (text) => {
    expect(findLooseIntegerString(ClientFrameSchema, history("cursorSeq", text))).toMatchObject({ path: "history.cursor_seq" });
    expect(findLooseIntegerString(ClientFrameSchema, history("page_size", text))).toMatchObject({ path: "history.page_size" });
  });

  it.each(["0", "5", "-5", "-0", "9223372036854775807"])("takes the decimal integer %j", (text) => {
    expect(findLooseIntegerString(ClientFrameSchema, history("cursor_seq", text))).toBeUndefined();
    expect(findLooseIntegerString(ClientFrameSchema, history("pageSize", text))).toBeUndefined();
  });

  it("leaves JSON numbers and non-integer fields alone", () => {
    expect(findLooseIntegerString(ClientFrameSchema, history("cursorSeq", 1e3))).toBeUndefined();
    expect(findLooseIntegerString(ClientFrameSchema, { requestId: "0x10", send: { room: "0x10", seq: "7" } })).toBeUndefined();
    expect(findLooseIntegerString(ClientFrameSchema, { requestId: "1", send: { seq: "0x7" } })).toMatchObject({ path: "send.seq" });
  });
});
