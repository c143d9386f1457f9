import { create, toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import { ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { encodeServerFrame } from "../../../src/wire/frames/frames.js";
import { hotServerFrameJson } from "../../../src/wire/frames/server-frame-json.js";

// Generated frames of every kind are compared with toJsonString in
// test/wire/codecs/conformance.test.ts; here, the edges of timestamps.

describe("the hand-written server frame JSON", () => {
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
