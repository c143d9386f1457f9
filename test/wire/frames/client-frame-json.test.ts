import { fromJsonString } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClientFrameSchema, SendFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { plainSendFrame } from "../../../src/wire/frames/client-frame-json.js";
import { decodeClientFrame } from "../../../src/wire/frames/frames.js";
import { fieldsOf } from "../../support/chat-arbitraries.js";

/** fromJsonString's answer: the frame, or that it throws. */
function reference(text: string): unknown {
  try {
    return fromJsonString(ClientFrameSchema, text, { ignoreUnknownFields: false });
  } catch {
    return "throws";
  }
}

const text = fc.oneof(fc.string({ unit: "binary", maxLength: 30 }), fc.string({ unit: "grapheme", maxLength: 30 }), fc.string({ maxLength: 30 }));
/** A JSON value in the places where the plain frame has a string or a seq. */
const value = fc.oneof(
  { weight: 6, arbitrary: text },
  fc.constantFrom("0", "7", "007", "-1", "1e3", " 5", "123456789012345678", "1234567890123456789", "9223372036854775808", "\ud800", "a\udc00b"),
  fc.oneof(fc.integer(), fc.double(), fc.constant(-0), fc.constant(2 ** 53)),
  fc.constantFrom(null, true, [], {}, ["x"]),
);
const sendKey = fc.constantFrom("seq", "room", "body", "clientMsgId", "client_msg_id", "extra");
const frameKey = fc.constantFrom("requestId", "traceparent", "request_id", "ping", "unknown");

/** Members written by hand, so that keys may repeat (JSON.stringify cannot). */
function objectText(members: readonly (readonly [string, string])[]): string {
  return `{${members.map(([key, json]) => `${JSON.stringify(key)}:${json}`).join(",")}}`;
}

const sendObject = fc
  .array(fc.tuple(sendKey, value), { maxLength: 6 })
  .map((members) => objectText(members.map(([key, v]) => [key, JSON.stringify(v)] as const)));
const frameText = fc
  .tuple(fc.array(fc.tuple(frameKey, value), { maxLength: 3 }), fc.option(sendObject, { nil: undefined }), fc.boolean())
  .map(([members, send, sendFirst]) => {
    const rest = members.map(([key, v]) => [key, JSON.stringify(v)] as const);
    if (send === undefined) return objectText(rest);
    return objectText(sendFirst ? [["send", send], ...rest] : [...rest, ["send", send]]);
  });

/** Well-formed plain frames, as clients send them. */
const usualFrame = fc
  .record({
    requestId: fc.string({ minLength: 1, maxLength: 12 }),
    send: fc.record(
      { seq: fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 18n - 1n }).map(String), fc.nat()), room: fc.string(), body: fc.string({ unit: "grapheme", maxLength: 200 }), clientMsgId: fc.string() },
      { requiredKeys: ["seq", "body", "clientMsgId"] },
    ),
  })
  .map((frame) => JSON.stringify(frame));

describe("the plain send frame fast path", () => {
  it("covers every field of SendFrame (a new field must be added to it)", () => {
    expect(fieldsOf(SendFrameSchema)).toEqual([
      [1, "seq"],
      [2, "room"],
      [3, "body"],
      [4, "client_msg_id"],
    ]);
  });

  it("decodes the usual send frames itself, exactly as fromJsonString does", () => {
    fc.assert(
      fc.property(usualFrame, (frame) => {
        const plain = plainSendFrame(frame);
        expect(plain).not.toBeUndefined();
        expect(plain).toEqual(fromJsonString(ClientFrameSchema, frame));
      }),
      { numRuns: 2000 },
    );
  });

  it("takes only what fromJsonString takes the same way, and leaves the rest to it", () => {
    fc.assert(
      fc.property(fc.oneof(frameText, usualFrame), (frame) => {
        const plain = plainSendFrame(frame);
        if (plain !== undefined) expect(plain).toEqual(reference(frame));
      }),
      { numRuns: 5000 },
    );
  });

  it("leaves repeated keys, mutated text and other request kinds to fromJsonString", () => {
    expect(plainSendFrame('{"requestId":"1","send":{"body":"a","body":"b"}}')).toBeUndefined();
    expect(plainSendFrame('{"requestId":"1","requestId":"2","send":{}}')).toBeUndefined();
    expect(plainSendFrame('{"requestId":"1","send":{"body":"a"},"send":{"body":"b"}}')).toBeUndefined();
    expect(plainSendFrame('{"requ\\u0065stId":"1","requestId":"2","send":{}}')).toBeUndefined();
    expect(plainSendFrame('{"requestId":"1","send":{"body":"\\ud800"}}')).toBeUndefined();
    expect(plainSendFrame('{"requestId":"1","ping":{}}')).toBeUndefined();
    fc.assert(
      fc.property(usualFrame, fc.nat(), fc.string({ maxLength: 3 }), (frame, at, insert) => {
        const cut = at % (frame.length + 1);
        const changed = frame.slice(0, cut) + insert + frame.slice(cut + 1);
        const plain = plainSendFrame(changed);
        if (plain !== undefined) expect(plain).toEqual(reference(changed));
      }),
      { numRuns: 3000 },
    );
  });

  it("gives decodeClientFrame the same frame from text and from its UTF-8 bytes", () => {
    const frame = '{"requestId":"r","send":{"seq":"3","body":"héllo 😀","clientMsgId":"c"}}';
    expect(decodeClientFrame(Buffer.from(frame, "utf8"), "json")).toEqual(decodeClientFrame(frame, "json"));
    const withMark = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(frame, "utf8")]);
    expect(decodeClientFrame(withMark, "json")).toEqual(decodeClientFrame(frame, "json"));
  });

  it("takes a seq string only in decimal form; the fallback refuses the rest, naming send.seq", () => {
    for (const seq of ["0x10", "0X1f", "0b1", "0o7", "1e3", " 5", "5 ", "+5", "010", "-1", "1.0"]) {
      const frame = `{"requestId":"r","send":{"seq":${JSON.stringify(seq)},"room":"r","body":"b","clientMsgId":"c"}}`;
      expect(plainSendFrame(frame)).toBeUndefined();
      let field: string | undefined;
      try {
        decodeClientFrame(frame, "json");
      } catch (error) {
        field = (error as { field?: string }).field;
      }
      // "-1" is a decimal integer: refused later, by the send's own checks.
      if (seq !== "-1") expect(field).toBe("send.seq");
    }
  });
});
