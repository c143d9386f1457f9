import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import type { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ClientFrameSchema, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { decodeClientFrame, encodeServerFrame, FrameDecodeError } from "../../../src/wire/frames/frames.js";

function decodeError(data: string | Uint8Array, format: "json" | "binary" = "json"): FrameDecodeError {
  try {
    decodeClientFrame(data, format);
  } catch (error) {
    expect(error).toBeInstanceOf(FrameDecodeError);
    return error as FrameDecodeError;
  }
  throw new Error("expected the frame to be rejected");
}

const validSend = { requestId: "r-1", send: { seq: "1", room: "lobby", body: "hi", clientMsgId: "m-1" } };

describe("client frame decoding (JSON text frames)", () => {
  it("decodes a valid frame, accepting proto and JSON field names", () => {
    const frame = decodeClientFrame(JSON.stringify(validSend), "json");
    expect(frame.requestId).toBe("r-1");
    expect(frame.request.case).toBe("send");
    const snake = decodeClientFrame('{"request_id":"r-2","send":{"seq":2,"client_msg_id":"m"}}', "json");
    expect(snake.request.case === "send" && snake.request.value.clientMsgId).toBe("m");
  });

  it("rejects text that is not JSON", () => {
    const error = decodeError("{not json");
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.message).toMatch(/not valid JSON/);
    expect(error.requestId).toBe("");
  });

  it("rejects an unknown top-level field, naming it and echoing the request id", () => {
    const error = decodeError(JSON.stringify({ ...validSend, sneaky: true }));
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("sneaky");
    expect(error.message).toMatch(/unknown field/);
    expect(error.requestId).toBe("r-1");
  });

  it("rejects an unknown nested field with its dotted path", () => {
    const error = decodeError(JSON.stringify({ requestId: "r-9", send: { ...validSend.send, sender: "mallory" } }));
    expect(error.field).toBe("send.sender");
    expect(error.requestId).toBe("r-9");
  });

  it("rejects a wrong type, naming the field", () => {
    expect(decodeError(JSON.stringify({ requestId: "r", send: { seq: "abc" } })).field).toBe("send.seq");
    expect(decodeError(JSON.stringify({ requestId: "r", send: { body: 42 } })).field).toBe("send.body");
    expect(decodeError(JSON.stringify({ requestId: "r", send: "text" })).field).toBe("send");
    expect(decodeError(JSON.stringify({ requestId: "r", history: { direction: "SIDEWAYS" } })).field).toBe("history.direction");
  });

  it("rejects a frame that is not an object", () => {
    expect(decodeError("[1,2]").category).toBe(ErrorCategory.VALIDATION);
    expect(decodeError("null").category).toBe(ErrorCategory.VALIDATION);
    expect(decodeError('"x"').category).toBe(ErrorCategory.VALIDATION);
  });

  it("requires a request id and exactly one request kind", () => {
    expect(decodeError(JSON.stringify({ send: validSend.send })).field).toBe("request_id");
    expect(decodeError(JSON.stringify({ requestId: "has space", ping: {} })).field).toBe("request_id");
    const noKind = decodeError(JSON.stringify({ requestId: "r-3" }));
    expect(noKind.field).toBe("request");
    expect(noKind.requestId).toBe("r-3");
    expect(decodeError(JSON.stringify({ requestId: "r-4", ping: {}, send: validSend.send })).requestId).toBe("r-4");
  });
});

describe("client frame decoding (binary frames)", () => {
  it("decodes a valid protobuf frame", () => {
    const bytes = toBinary(ClientFrameSchema, fromJsonString(ClientFrameSchema, JSON.stringify(validSend)));
    const frame = decodeClientFrame(bytes, "binary");
    expect(frame.request.case === "send" && frame.request.value.seq).toBe(1n);
  });

  it("rejects garbage, reading the request id when it can", () => {
    const valid = toBinary(ClientFrameSchema, fromJsonString(ClientFrameSchema, JSON.stringify(validSend)));
    const truncated = valid.slice(0, valid.length - 3);
    const error = decodeError(truncated, "binary");
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.requestId).toBe("r-1");
    expect(decodeError(new Uint8Array([0xff, 0xff, 0xff, 0xff]), "binary").requestId).toBe("");
  });

  it("rejects unknown fields in binary frames too", () => {
    const valid = toBinary(ClientFrameSchema, fromJsonString(ClientFrameSchema, '{"requestId":"r-5","ping":{}}'));
    // field 99, varint 1
    const withUnknown = new Uint8Array([...valid, 0x98, 0x06, 0x01]);
    const error = decodeError(withUnknown, "binary");
    expect(error.field).toBe("#99");
    expect(error.requestId).toBe("r-5");
  });
});

describe("timestamps on the wire", () => {
  const createdAt = { seconds: 1795883400n, nanos: 123_456_789 };
  const frame = create(ServerFrameSchema, {
    requestId: "r-1",
    kind: {
      case: "sendAck",
      value: {
        seq: 7n,
        message: create(ChatMessageSchema, { id: "id", room: "lobby", seq: 42n, sender: "u", body: "b", clientMsgId: "c", createdAt }),
      },
    },
  });

  it("is RFC 3339 text with nanoseconds in JSON frames and round-trips exactly", () => {
    const text = encodeServerFrame(frame, "json") as string;
    expect(text).toContain('"createdAt":"2026-11-28T16:30:00.123456789Z"');
    const back = fromJsonString(ServerFrameSchema, text);
    expect(back).toEqual(frame);
  });

  it("is a google.protobuf.Timestamp in binary frames and round-trips exactly", () => {
    const bytes = encodeServerFrame(frame, "binary") as Uint8Array;
    const back = fromBinary(ServerFrameSchema, bytes);
    expect(back.kind.case === "sendAck" && back.kind.value.message?.createdAt).toEqual(create(ChatMessageSchema, { createdAt }).createdAt);
  });

  it("accepts a zone offset and keeps microseconds", () => {
    const json = '{"requestId":"r","sendAck":{"message":{"createdAt":"2026-11-28T18:30:00.123456+02:00"}}}';
    const parsed = fromJsonString(ServerFrameSchema, json);
    const ts = parsed.kind.case === "sendAck" ? parsed.kind.value.message?.createdAt : undefined;
    expect(ts?.nanos).toBe(123_456_000);
    expect(ts && timestampDate(ts).toISOString()).toBe("2026-11-28T16:30:00.123Z");
    expect(toJsonString(ServerFrameSchema, parsed)).toContain('"2026-11-28T16:30:00.123456Z"');
  });
});

describe("values the schema's types take but parley does not", () => {
  it("refuses an enum number outside its enum, in JSON and binary frames, naming the field and the request", () => {
    const json = decodeError('{"requestId":"h-1","history":{"room":"lobby","direction":7}}');
    expect(json.category).toBe(ErrorCategory.VALIDATION);
    expect(json.field).toBe("history.direction");
    expect(json.requestId).toBe("h-1");
    const bytes = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId: "h-2", request: { case: "listNotifications", value: { direction: 3 as unknown as ListDirection } } }));
    const binary = decodeError(bytes, "binary");
    expect(binary.field).toBe("list_notifications.direction");
    expect(binary.requestId).toBe("h-2");
    expect(binary.message).toMatch(/3 is not a defined value/);
  });

  it("refuses integer strings that are not decimal (hex, exponent, sign, spaces, leading zeros)", () => {
    for (const [text, field] of [
      ['{"requestId":"i-1","history":{"room":"lobby","cursorSeq":"0x10"}}', "history.cursor_seq"],
      ['{"requestId":"i-1","history":{"room":"lobby","page_size":"+5"}}', "history.page_size"],
      ['{"requestId":"i-1","send":{"seq":"010","room":"lobby","body":"hi","clientMsgId":"m"}}', "send.seq"],
      ['{"requestId":"i-1","send":{"seq":"0b1","room":"lobby","body":"hi","clientMsgId":"m"}}', "send.seq"],
    ] as const) {
      const error = decodeError(text);
      expect(error.category).toBe(ErrorCategory.VALIDATION);
      expect(error.field).toBe(field);
      expect(error.requestId).toBe("i-1");
    }
    const fine = decodeClientFrame('{"requestId":"i-2","history":{"room":"lobby","cursorSeq":"-0","pageSize":"10"}}', "json");
    expect(fine.request.case === "history" && fine.request.value.pageSize).toBe(10);
  });
});
