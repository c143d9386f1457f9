// The room frames (room operations, room_events, the pushed room_event, the
// revocation's unsubscribed): decoded against the schema like every other
// frame, with their enums (kind, role, states) and optional fields (an
// update's name, topic and kind) checked, in both formats.
import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { RoomEventSchema } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ClientFrameSchema, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { BanRequestSchema } from "../../../gen/parley/v1/room_service_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
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

/** One valid frame of every room request, as a client would write it. */
const ROOM_REQUESTS: ReadonlyArray<readonly [string, string]> = [
  ["createRoom", '{"kind":"ROOM_KIND_PRIVATE","room":"team-1","name":"Team","topic":"t","members":["bob","carol"]}'],
  ["getRoom", '{"room":"team-1"}'],
  ["updateRoom", '{"room":"team-1","topic":"new"}'],
  ["invite", '{"room":"team-1","user":"bob"}'],
  ["join", '{"room":"team-1"}'],
  ["leave", '{"room":"team-1"}'],
  ["kick", '{"room":"team-1","user":"bob","reason":"spam"}'],
  ["ban", '{"room":"team-1","user":"bob"}'],
  ["unban", '{"room":"team-1","user":"bob"}'],
  ["setRole", '{"room":"team-1","user":"bob","role":"ROOM_ROLE_ADMIN"}'],
  ["listMembers", '{"room":"team-1","states":["MEMBERSHIP_STATE_JOINED",1],"pageSize":20,"afterUser":"alice"}'],
  ["listMyRooms", '{"pageSize":10,"pageToken":"abc"}'],
  ["roomEvents", '{"room":"team-1","direction":"LIST_DIRECTION_BACKWARD","pageSize":5}'],
];

describe("room request frames", () => {
  it.each(ROOM_REQUESTS)("%s decodes from JSON (either field naming) and binary to the same frame", (kind, value) => {
    const text = `{"requestId":"q-1","${kind}":${value}}`;
    const frame = decodeClientFrame(text, "json");
    expect(frame.request.case).toBe(kind);
    const snake = kind.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    const protoNames = toJsonString(ClientFrameSchema, frame, { useProtoFieldName: true });
    expect(protoNames).toContain(`"${snake}"`);
    expect(decodeClientFrame(protoNames, "json")).toEqual(frame);
    expect(decodeClientFrame(toBinary(ClientFrameSchema, frame), "binary")).toEqual(frame);
  });

  it("keeps an update's presence: a field left out is not changed, one given empty is", () => {
    const frame = decodeClientFrame('{"requestId":"u-1","updateRoom":{"room":"r","topic":""}}', "json");
    if (frame.request.case !== "updateRoom") throw new Error("not an update_room");
    expect(frame.request.value.name).toBeUndefined();
    expect(frame.request.value.topic).toBe("");
    expect(frame.request.value.kind).toBeUndefined();
    const again = decodeClientFrame(toBinary(ClientFrameSchema, frame), "binary");
    expect(again.request.case === "updateRoom" && again.request.value.topic).toBe("");
    expect(again.request.case === "updateRoom" && again.request.value.name).toBeUndefined();
  });

  it("refuses enum numbers outside RoomKind, RoomRole and MembershipState, naming the field in the frame", () => {
    for (const [text, field] of [
      ['{"requestId":"e-1","createRoom":{"kind":9}}', "create_room.kind"],
      ['{"requestId":"e-1","updateRoom":{"room":"r","kind":4}}', "update_room.kind"],
      ['{"requestId":"e-1","setRole":{"room":"r","user":"bob","role":5}}', "set_role.role"],
      ['{"requestId":"e-1","listMembers":{"room":"r","states":[2,6]}}', "list_members.states"],
      ['{"requestId":"e-1","roomEvents":{"room":"r","direction":3}}', "room_events.direction"],
    ] as const) {
      const error = decodeError(text);
      expect(error.category, text).toBe(ErrorCategory.VALIDATION);
      expect(error.field, text).toMatch(new RegExp(`^${field.replace(".", "\\.")}`));
      expect(error.requestId, text).toBe("e-1");
    }
    const bytes = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId: "e-2", request: { case: "setRole", value: { room: "r", user: "bob", role: 77 as unknown as RoomRole } } }));
    const binary = decodeError(bytes, "binary");
    expect(binary.field).toBe("set_role.role");
    expect(binary.requestId).toBe("e-2");
  });

  it("refuses unknown fields, names given by the server (a member's state), and wrong types", () => {
    for (const [text, field] of [
      ['{"requestId":"x-1","kick":{"room":"r","user":"bob","actor":"mallory"}}', "kick.actor"],
      ['{"requestId":"x-1","join":{"room":"r","user":"mallory"}}', "join.user"],
      ['{"requestId":"x-1","invite":{"room":"r","user":"bob","state":"MEMBERSHIP_STATE_JOINED"}}', "invite.state"],
      ['{"requestId":"x-1","createRoom":{"kind":"ROOM_KIND_PUBLIC","members":"bob"}}', "create_room.members"],
      ['{"requestId":"x-1","listMyRooms":{"pageSize":"0x10"}}', "list_my_rooms.page_size"],
      ['{"requestId":"x-1","roomEvents":{"room":"r","cursorSeq":"1e3"}}', "room_events.cursor_seq"],
    ] as const) {
      const error = decodeError(text);
      expect(error.category, text).toBe(ErrorCategory.VALIDATION);
      expect(error.field, text).toBe(field);
      expect(error.requestId, text).toBe("x-1");
    }
  });

  it("refuses a binary room frame with an unknown nested field, naming it by number", () => {
    const inner = toBinary(BanRequestSchema, create(BanRequestSchema, { room: "r", user: "bob" }));
    const field = ClientFrameSchema.fields.find((f) => f.localName === "ban")?.number ?? 0;
    // The ban request with field 9 (a varint) appended inside it.
    const nested = new BinaryWriter().tag(9, WireType.Varint).uint32(1).finish();
    const withUnknown = new BinaryWriter().tag(1, WireType.LengthDelimited).string("b-1").tag(field, WireType.LengthDelimited).bytes(new Uint8Array([...inner, ...nested])).finish();
    const error = decodeError(withUnknown, "binary");
    expect(error.field).toBe("ban.#9");
    expect(error.requestId).toBe("b-1");
  });
});

describe("room server frames", () => {
  const event = create(RoomEventSchema, {
    room: "team-1",
    seq: 42n,
    createdAt: timestampFromMs(Date.UTC(2026, 2, 14, 9, 27, 31, 202)),
    actor: "alice",
    event: { case: "membership", value: { user: "bob", state: MembershipState.KICKED, previousState: MembershipState.JOINED, previousRole: RoomRole.MEMBER, reason: "spam" } },
  });

  it("a pushed room_event encodes as canonical JSON and as binary, and round-trips", () => {
    const frame = create(ServerFrameSchema, { kind: { case: "roomEvent", value: event } });
    const text = encodeServerFrame(frame, "json") as string;
    expect(text).toBe(
      '{"roomEvent":{"room":"team-1","seq":"42","createdAt":"2026-03-14T09:27:31.202Z","actor":"alice","membership":{"user":"bob","state":"MEMBERSHIP_STATE_KICKED","previousState":"MEMBERSHIP_STATE_JOINED","previousRole":"ROOM_ROLE_MEMBER","reason":"spam"}}}',
    );
    expect(fromJsonString(ServerFrameSchema, text)).toEqual(frame);
    expect(fromBinary(ServerFrameSchema, encodeServerFrame(frame, "binary") as Uint8Array)).toEqual(frame);
  });

  it("the end of a revoked follow: unsubscribed carries the reason", () => {
    const frame = create(ServerFrameSchema, {
      requestId: "s-1",
      kind: { case: "unsubscribed", value: { room: "team-1", reason: { category: ErrorCategory.PERMISSION_DENIED, message: 'no longer allowed to read room "team-1": kicked (seq 42)' } } },
    });
    expect(encodeServerFrame(frame, "json")).toBe(
      '{"requestId":"s-1","unsubscribed":{"room":"team-1","reason":{"category":"ERROR_CATEGORY_PERMISSION_DENIED","message":"no longer allowed to read room \\"team-1\\": kicked (seq 42)"}}}',
    );
    // A client's own unsubscribe is answered without one.
    expect(encodeServerFrame(create(ServerFrameSchema, { requestId: "s-2", kind: { case: "unsubscribed", value: { room: "team-1" } } }), "json")).toBe('{"requestId":"s-2","unsubscribed":{"room":"team-1"}}');
  });

  it("answers carry RoomService's responses as they are (list_my_rooms with unread counts)", () => {
    const frame = create(ServerFrameSchema, {
      requestId: "m-1",
      kind: { case: "listMyRooms", value: { rooms: [{ id: "team-1", kind: RoomKind.PRIVATE, name: "Team", headSeq: 44n, myState: MembershipState.JOINED, myRole: RoomRole.OWNER, myReadSeq: 40n, unreadCount: 3n }], nextPageToken: "n" } },
    });
    const text = encodeServerFrame(frame, "json") as string;
    expect(text).toBe(
      '{"requestId":"m-1","listMyRooms":{"rooms":[{"id":"team-1","kind":"ROOM_KIND_PRIVATE","name":"Team","headSeq":"44","myState":"MEMBERSHIP_STATE_JOINED","myRole":"ROOM_ROLE_OWNER","myReadSeq":"40","unreadCount":"3"}],"nextPageToken":"n"}}',
    );
    expect(fromJsonString(ServerFrameSchema, text)).toEqual(frame);
  });
});
