import { create, toJsonString } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import { SendAckSchema, type ServerFrame, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { encodeServerFrame } from "../../../src/wire/frames/frames.js";
import { hotServerFrameJson } from "../../../src/wire/frames/server-frame-json.js";
import { CHAT_MESSAGE_FIELDS, chatMessage, fieldsOf, int64, text } from "../../support/chat-arbitraries.js";

const requestId = fc.oneof(fc.constant(""), text);

const hotFrame = fc.oneof(
  fc.record({ requestId, message: chatMessage }).map(({ requestId, message }) => create(ServerFrameSchema, { requestId, kind: { case: "message", value: message } })),
  fc
    .record({ requestId, seq: fc.oneof(fc.constant(0n), int64), message: fc.option(chatMessage, { nil: undefined }), duplicate: fc.boolean() })
    .map(({ requestId, ...ack }) => create(ServerFrameSchema, { requestId, kind: { case: "sendAck", value: ack } })),
);

/** toJsonString's answer: its text, or undefined where it throws. */
function reference(frame: ServerFrame): string | undefined {
  try {
    return toJsonString(ServerFrameSchema, frame);
  } catch {
    return undefined;
  }
}

describe("the hand-written server frame JSON", () => {
  it("covers every field of the types it writes (a new field must be added to it)", () => {
    expect(fieldsOf(SendAckSchema)).toEqual([
      [1, "seq"],
      [2, "message"],
      [3, "duplicate"],
    ]);
    expect(fieldsOf(ChatMessageSchema)).toEqual(CHAT_MESSAGE_FIELDS);
    expect(fieldsOf(ServerFrameSchema).slice(0, 1)).toEqual([[1, "request_id"]]);
  });

  it("writes message and send_ack frames exactly as toJsonString does, and leaves what toJsonString refuses to it", () => {
    fc.assert(
      fc.property(hotFrame, (frame) => {
        expect(hotServerFrameJson(frame)).toBe(reference(frame));
      }),
      { numRuns: 3000 },
    );
  });

  it("formats timestamps as protobuf-es does, also for consecutive messages of one second", () => {
    const at = (seconds: bigint, nanos: number) =>
      create(ServerFrameSchema, { kind: { case: "message", value: create(ChatMessageSchema, { id: "m", createdAt: { seconds, nanos } }) } });
    for (const [seconds, nanos] of [
      [1_764_380_000n, 0],
      [1_764_380_000n, 120_000_000],
      [1_764_380_000n, 123_456_000],
      [1_764_380_000n, 123_456_789],
      [1_764_380_001n, 5],
      [-62_135_596_800n, 0],
      [253_402_300_799n, 999_999_999],
    ] as const) {
      expect(hotServerFrameJson(at(seconds, nanos))).toBe(toJsonString(ServerFrameSchema, at(seconds, nanos)));
    }
    expect(hotServerFrameJson(at(253_402_300_800n, 0))).toBeUndefined();
    expect(hotServerFrameJson(at(0n, -1))).toBeUndefined();
  });

  it("is used by encodeServerFrame, which still answers an unencodable frame with SERIALIZATION", () => {
    const message = create(ChatMessageSchema, { id: "m", body: "é \u2028 \"quoted\"", createdAt: { seconds: 1n, nanos: 1_000_000 } });
    const frame = create(ServerFrameSchema, { requestId: "r", kind: { case: "sendAck", value: { seq: 3n, message } } });
    expect(encodeServerFrame(frame, "json")).toBe(toJsonString(ServerFrameSchema, frame));
    const bad = create(ServerFrameSchema, { kind: { case: "message", value: create(ChatMessageSchema, { createdAt: { seconds: 0n, nanos: -5 } }) } });
    expect(() => encodeServerFrame(bad, "json")).toThrow(/cannot encode server frame/);
  });

  it("leaves other kinds of frames to toJsonString", () => {
    expect(hotServerFrameJson(create(ServerFrameSchema, { requestId: "r", kind: { case: "pong", value: {} } }))).toBeUndefined();
  });
});
