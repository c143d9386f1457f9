/**
 * Property-based fuzzing of the WebSocket bridge: random and mutated frames
 * against one connection of a real bridge, in front of a real core and a real
 * PostgreSQL. The bridge must never crash, answer every frame exactly once
 * (with the request_id it can read, or without one when it cannot), keep the
 * connection open, and keep serving the valid frames sent in between. The
 * documented closes (1009 over max_frame_bytes, 4508 after too many invalid
 * frames in a row) are checked on connections of their own.
 */
import { create, fromBinary, fromJsonString, type JsonValue, toBinary, toJson, toJsonString } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RawData, WebSocket } from "ws";
import { ChatServiceSubscribeRequestSchema, ListMessagesRequestSchema, ListRoomEventsRequestSchema, MarkReadRequestSchema } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import {
  type ClientFrame,
  ClientFrameSchema,
  CloseCode,
  PingFrameSchema,
  SendFrameSchema,
  type ServerFrame,
  ServerFrameSchema,
  UnsubscribeFrameSchema,
} from "../../gen/parley/v1/frames_pb.js";
import { AckNotificationsRequestSchema, ListNotificationsRequestSchema, NotificationServiceSubscribeRequestSchema } from "../../gen/parley/v1/notifications_pb.js";
import {
  BanRequestSchema,
  CreateRoomRequestSchema,
  GetRoomRequestSchema,
  InviteRequestSchema,
  JoinRequestSchema,
  KickRequestSchema,
  LeaveRequestSchema,
  ListMembersRequestSchema,
  ListMyRoomsRequestSchema,
  SetRoleRequestSchema,
  UnbanRequestSchema,
  UpdateRoomRequestSchema,
} from "../../gen/parley/v1/room_service_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { type RunningBridge, startBridge } from "../../src/bridge/bridge-server.js";
import { ROOM_ID } from "../../src/wire/limits.js";
import { readBinaryRequestId } from "../../src/wire/frames/frames.js";
import { TEST_JWT_SECRET, TEST_RELAY_TOKEN, startTestCore, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { LogCapture } from "../support/logs.js";

/**
 * Frames up to 256 KiB (every fuzz frame stays under FUZZ_FRAME_CAP; the 1009
 * test goes past it). The frame rate and in-flight limits are raised out of
 * the way: this test sends ~1,200 frames/s for its whole run, and the rate
 * limit (4029) is not what it is about.
 */
const LIMITS = {
  maxFrameBytes: 256 * 1024,
  maxConsecutiveErrors: 32,
  maxInflightSends: 1024,
  maxInflightRequests: 1024,
  maxSubscriptions: 64,
  framesPerSecond: 100_000,
  frameBurst: 100_000,
} as const;
const FUZZ_FRAME_CAP = 200 * 1024;
const RUNS = 100;
const FRAMES_PER_RUN = 102;
/** A probe (ping or send) after this many fuzz frames keeps the invalid run far below 4508. */
const PROBE_EVERY = 6;
/**
 * A send whose seq reaches the top of int64 makes every later send of the
 * connection invalid, by design (seq must increase). Such frames are not sent.
 */
const SEQ_CEILING = 2n ** 62n;
/** FUZZ_SEED=<seed printed by a failure> replays that run. */
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

const REQUEST_ID = /^[\x21-\x7e]{1,64}$/;
/** Answers to a request; the other server frames are pushed (welcome, message, notification, go_away). */
const ANSWER_KINDS = new Set<string>([
  "sendAck",
  "error",
  "caughtUp",
  "unsubscribed",
  "history",
  "markRead",
  "notifications",
  "notificationsAcked",
  "pong",
  "createRoom",
  "getRoom",
  "updateRoom",
  "invite",
  "join",
  "leave",
  "kick",
  "ban",
  "unban",
  "setRole",
  "listMembers",
  "listMyRooms",
  "roomEvents",
]);

type Wire = string | Uint8Array;
type Format = "json" | "binary";

// ---- the client ---------------------------------------------------------------

interface Answer {
  readonly requestId: string;
  readonly format: Format;
  readonly frame: ServerFrame;
}

/** A real `ws` client that decodes every server frame against the schema. */
class FrameClient {
  readonly answers: Answer[] = [];
  /** Server frames that did not decode as a ServerFrame (must stay empty). */
  readonly malformed: string[] = [];
  pushes = 0;
  closed: { code: number; reason: string } | undefined;
  /** Answers by `format|request_id`, over the connection's life. */
  readonly received = new Map<string, number>();
  /** Keys answered since beginBatch(). */
  #touched = new Set<string>();
  #waiters: (() => void)[] = [];

  private constructor(private readonly socket: WebSocket) {
    socket.on("message", (data: RawData, isBinary: boolean) => {
      this.#onFrame(rawBytes(data), isBinary);
    });
    socket.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
    socket.on("error", () => {
      // The close event follows and is what the tests look at.
    });
  }

  /** Opens `/ws/chat/{room}` and waits for welcome and the route subscription's caught_up. */
  static async open(port: number, user: string, room: string): Promise<FrameClient> {
    const token = await mintToken(TEST_JWT_SECRET, user);
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws/chat/${room}?token=${token}`);
    const client = new FrameClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => {
        resolve();
      });
      socket.once("error", reject);
    });
    await client.waitUntil(() => client.answers.some((a) => a.frame.kind.case === "caughtUp" && a.requestId === ""), 10_000, "route caught_up");
    client.answers.length = 0;
    client.received.clear();
    return client;
  }

  send(data: Wire): void {
    this.socket.send(data, { binary: typeof data !== "string" });
  }

  /** Starts collecting the keys answered from now on. */
  beginBatch(): ReadonlySet<string> {
    this.#touched = new Set();
    return this.#touched;
  }

  waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== check);
        resolve();
      };
      this.#waiters.push(check);
    });
  }

  /** Sends a ping and resolves with its answer. */
  async ping(requestId: string): Promise<Answer | undefined> {
    this.send(JSON.stringify({ requestId, ping: {} }));
    await this.waitUntil(() => this.closed !== undefined || this.answers.some((a) => a.requestId === requestId), 5_000, `pong ${requestId}`);
    return this.answers.find((a) => a.requestId === requestId);
  }

  close(): void {
    this.socket.terminate();
  }

  #onFrame(bytes: Uint8Array, isBinary: boolean): void {
    let frame: ServerFrame;
    try {
      frame = isBinary ? fromBinary(ServerFrameSchema, bytes) : this.#decodeText(Buffer.from(bytes).toString("utf8"));
    } catch (error) {
      const raw = isBinary ? `0x${Buffer.from(bytes.subarray(0, 120)).toString("hex")}` : JSON.stringify(Buffer.from(bytes).toString("utf8").slice(0, 240));
      this.malformed.push(`${String(error)}: ${raw}`);
      this.#wake();
      return;
    }
    const kind = frame.kind.case;
    if (kind === undefined) {
      this.malformed.push("server frame without a kind");
    } else if (ANSWER_KINDS.has(kind)) {
      const format: Format = isBinary ? "binary" : "json";
      this.answers.push({ requestId: frame.requestId, format, frame });
      const key = `${format}|${frame.requestId}`;
      this.received.set(key, (this.received.get(key) ?? 0) + 1);
      this.#touched.add(key);
    } else {
      this.pushes++;
    }
    this.#wake();
  }

  #decodeText(text: string): ServerFrame {
    // Strict: error messages quoting client input must still be valid proto3 strings.
    return fromJsonString(ServerFrameSchema, text);
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

function rawBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

// ---- the oracle: what the bridge can read of a frame ------------------------------

interface Reading {
  readonly format: Format;
  /** The request_id the protocol says is readable ("" when it is not). */
  readonly requestId: string;
  /** The request_id the bridge answers with (always the readable one). */
  readonly answeredId: string;
  /** The seq of a frame that decodes as a send (for keeping probe seqs increasing). */
  readonly sendSeq: bigint | undefined;
  /** The request of a frame the bridge accepts (decodes, readable id, one request kind). */
  readonly request: ClientFrame["request"] | undefined;
}

/**
 * Reads a frame the way the protocol describes (docs/protocol.md §3): a text
 * frame's `requestId` (or `request_id`) when it is JSON; a binary frame's
 * field 1 when it decodes, or else the first field 1 before the bytes go bad.
 */
function readFrame(data: Wire): Reading {
  if (typeof data === "string") {
    // What the server sees: ws sends strings as UTF-8 (lone surrogates become U+FFFD).
    const text = Buffer.from(data, "utf8").toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { format: "json", requestId: "", answeredId: "", sendSeq: undefined, request: undefined };
    }
    let requestId = "";
    if (typeof json === "object" && json !== null && !Array.isArray(json)) {
      const record = json as Record<string, unknown>;
      const id = record.requestId ?? record.request_id;
      if (typeof id === "string" && REQUEST_ID.test(id)) requestId = id;
    }
    let frame: ClientFrame | undefined;
    try {
      // As the bridge reads it: fromJsonString refuses duplicated keys.
      frame = fromJsonString(ClientFrameSchema, text);
    } catch {
      // Not a frame: nothing to track.
    }
    const sendSeq = frame?.request.case === "send" ? frame.request.value.seq : undefined;
    const request = frame !== undefined && requestId !== "" && frame.request.case !== undefined ? frame.request : undefined;
    return { format: "json", requestId, answeredId: requestId, sendSeq, request };
  }
  let frame: ClientFrame;
  try {
    frame = fromBinary(ClientFrameSchema, data);
  } catch {
    const id = readBinaryRequestId(data);
    return { format: "binary", requestId: id, answeredId: id, sendSeq: undefined, request: undefined };
  }
  const requestId = REQUEST_ID.test(frame.requestId) ? frame.requestId : "";
  const unknown = hasUnknownFields(frame);
  const answeredId = requestId;
  const request = !unknown && requestId !== "" && frame.request.case !== undefined ? frame.request : undefined;
  return { format: "binary", requestId, answeredId, sendSeq: frame.request.case === "send" ? frame.request.value.seq : undefined, request };
}

function hasUnknownFields(frame: ClientFrame): boolean {
  const unknownOf = (message: object) => ((message as { $unknown?: unknown[] }).$unknown?.length ?? 0) > 0;
  return unknownOf(frame) || (frame.request.case !== undefined && unknownOf(frame.request.value));
}

// ---- generators ---------------------------------------------------------------

const requestIdArb = fc.stringMatching(/^[\x21-\x7e]{1,64}$/);
const validRoomArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("lobby", "support", "r.1", "x:y_z-0") },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,16}$/).filter((room) => !room.startsWith("fz-")) },
);
/**
 * Rooms of the room operations: apart from the rooms the fuzzer follows
 * (those never start with "fz-"), so that no operation of the fuzzer's own
 * (a leave, a room made private) ends one of its follows, which would answer
 * a subscribe a second time, with the follow's end (docs/protocol.md §3).
 */
const managedRoomArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("fz-team", "fz-ops.1", "fz-x:y") },
  { weight: 1, arbitrary: fc.stringMatching(/^fz-[A-Za-z0-9_.:-]{0,12}$/) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((text) => `fz-${text}`) },
  { weight: 1, arbitrary: fc.constant("") },
);
const userArb = fc.oneof(fc.constantFrom("fuzzer", "someone-else", "bob", ""), fc.string({ maxLength: 12 }));
const roomKindArb = fc.constantFrom(RoomKind.UNSPECIFIED, RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT, 7 as unknown as RoomKind);
const roomRoleArb = fc.constantFrom(RoomRole.UNSPECIFIED, RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER, 9 as unknown as RoomRole);
const stateArb = fc.constantFrom(MembershipState.UNSPECIFIED, MembershipState.INVITED, MembershipState.JOINED, MembershipState.LEFT, MembershipState.KICKED, MembershipState.BANNED, 6 as unknown as MembershipState);
const roomArb = fc.oneof({ weight: 6, arbitrary: validRoomArb }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }, { weight: 1, arbitrary: fc.constant("") });
const unicodeJunk = [
  "\u0000",
  "\ud800",
  "\udfff",
  "\ud83d\ude00\u200d\ud83d\udd25",
  "\u202e\u2066",
  "\u200b\ufeff",
  "\uffff\ufffe",
  "e\u0301\u0301\u0301\u0301",
  "\u{10ffff}",
  "\r\n\t\u2028\u2029",
  "\\\"'`${}<>&",
];
const textArb = fc.oneof(
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 48 }),
  fc.string({ unit: "binary", maxLength: 24 }),
  fc.constantFrom("", "x".repeat(4096), "x".repeat(4097), "\u{1f600}".repeat(4096), ...unicodeJunk),
);
const idempotencyKeyArb = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_.:-]{1,40}$/), fc.string({ maxLength: 8 }));
const int64Arb = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
const pageSizeArb = fc.oneof(fc.integer({ min: -2, max: 600 }), fc.integer());

/** Every request kind, with values valid and invalid for the semantics (all valid for the schema). */
const requestArb: fc.Arbitrary<ClientFrame["request"]> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .record({ seq: fc.bigInt({ min: 0n, max: 2n ** 53n }), room: fc.option(roomArb, { nil: "" }), body: textArb, clientMsgId: idempotencyKeyArb })
      .map((value) => ({ case: "send" as const, value: create(SendFrameSchema, value) })),
  },
  fc
    .record({ room: roomArb, afterSeq: fc.option(int64Arb, { nil: undefined }) })
    .map((value) => ({ case: "subscribe" as const, value: create(ChatServiceSubscribeRequestSchema, value) })),
  roomArb.map((room) => ({ case: "unsubscribe" as const, value: create(UnsubscribeFrameSchema, { room }) })),
  fc
    .record({ room: roomArb, direction: fc.constantFrom(ListDirection.UNSPECIFIED, ListDirection.FORWARD, ListDirection.BACKWARD, 7), cursorSeq: int64Arb, pageSize: pageSizeArb })
    .map((value) => ({ case: "history" as const, value: create(ListMessagesRequestSchema, value) })),
  fc
    .record({ room: roomArb, seq: int64Arb })
    .map((value) => ({ case: "markRead" as const, value: create(MarkReadRequestSchema, value) })),
  fc
    .record({ recipient: fc.constantFrom("", "fuzzer", "someone-else"), unreadOnly: fc.boolean(), direction: fc.constantFrom(ListDirection.FORWARD, ListDirection.BACKWARD), cursorSeq: int64Arb, pageSize: pageSizeArb })
    .map((value) => ({ case: "listNotifications" as const, value: create(ListNotificationsRequestSchema, value) })),
  fc
    .record({ upToSeq: int64Arb, ids: fc.array(fc.oneof(fc.uuid(), fc.string({ maxLength: 8 })), { maxLength: 3 }) })
    .map((value) => ({ case: "ackNotifications" as const, value: create(AckNotificationsRequestSchema, value) })),
  fc
    .record({ recipient: fc.constantFrom("", "fuzzer", "someone-else"), afterSeq: fc.option(int64Arb, { nil: undefined }) })
    .map((value) => ({ case: "subscribeNotifications" as const, value: create(NotificationServiceSubscribeRequestSchema, value) })),
  fc.constant({ case: "ping" as const, value: create(PingFrameSchema) }),
  { weight: 3, arbitrary: roomRequestArb() },
);

/** The room operations, with values valid and invalid for the semantics (all valid for the schema). */
function roomRequestArb(): fc.Arbitrary<ClientFrame["request"]> {
  const reasonArb = fc.oneof(fc.constant(""), textArb, fc.constant("r".repeat(513)));
  return fc.oneof(
    fc
      .record({ kind: roomKindArb, room: fc.oneof(managedRoomArb, fc.constant("")), name: fc.oneof(fc.constant(""), textArb), topic: fc.oneof(fc.constant(""), textArb), members: fc.array(userArb, { maxLength: 3 }) })
      .map((value) => ({ case: "createRoom" as const, value: create(CreateRoomRequestSchema, value) })),
    managedRoomArb.map((room) => ({ case: "getRoom" as const, value: create(GetRoomRequestSchema, { room }) })),
    fc
      .record({ room: managedRoomArb, name: fc.option(textArb, { nil: undefined }), topic: fc.option(textArb, { nil: undefined }), kind: fc.option(roomKindArb, { nil: undefined }) })
      .map((value) => ({ case: "updateRoom" as const, value: create(UpdateRoomRequestSchema, value) })),
    fc.record({ room: managedRoomArb, user: userArb }).map((value) => ({ case: "invite" as const, value: create(InviteRequestSchema, value) })),
    managedRoomArb.map((room) => ({ case: "join" as const, value: create(JoinRequestSchema, { room }) })),
    managedRoomArb.map((room) => ({ case: "leave" as const, value: create(LeaveRequestSchema, { room }) })),
    fc.record({ room: managedRoomArb, user: userArb, reason: reasonArb }).map((value) => ({ case: "kick" as const, value: create(KickRequestSchema, value) })),
    fc.record({ room: managedRoomArb, user: userArb, reason: reasonArb }).map((value) => ({ case: "ban" as const, value: create(BanRequestSchema, value) })),
    fc.record({ room: managedRoomArb, user: userArb }).map((value) => ({ case: "unban" as const, value: create(UnbanRequestSchema, value) })),
    fc.record({ room: managedRoomArb, user: userArb, role: roomRoleArb }).map((value) => ({ case: "setRole" as const, value: create(SetRoleRequestSchema, value) })),
    fc
      .record({ room: managedRoomArb, states: fc.array(stateArb, { maxLength: 3 }), pageSize: pageSizeArb, afterUser: fc.oneof(fc.constant(""), userArb) })
      .map((value) => ({ case: "listMembers" as const, value: create(ListMembersRequestSchema, value) })),
    fc.record({ pageSize: pageSizeArb, pageToken: fc.oneof(fc.constant(""), fc.string({ maxLength: 24 })) }).map((value) => ({ case: "listMyRooms" as const, value: create(ListMyRoomsRequestSchema, value) })),
    fc
      .record({ room: fc.oneof(roomArb, managedRoomArb), direction: fc.constantFrom(ListDirection.UNSPECIFIED, ListDirection.FORWARD, ListDirection.BACKWARD, 7), cursorSeq: int64Arb, pageSize: pageSizeArb })
      .map((value) => ({ case: "roomEvents" as const, value: create(ListRoomEventsRequestSchema, value) })),
  );
}

const clientFrameArb: fc.Arbitrary<ClientFrame> = fc
  .record({ requestId: requestIdArb, traceparent: fc.oneof(fc.constant(""), fc.string({ maxLength: 60 })), request: requestArb })
  .map((init) => create(ClientFrameSchema, init));

type Encoding = "json" | "json-proto-names" | "binary";
const encodingArb = fc.constantFrom<Encoding>("json", "json-proto-names", "binary");

function encode(frame: ClientFrame, encoding: Encoding): Wire {
  if (encoding === "binary") return toBinary(ClientFrameSchema, frame);
  return toJsonString(ClientFrameSchema, frame, { useProtoFieldName: encoding === "json-proto-names" });
}

interface FuzzFrame {
  readonly kind: string;
  readonly data: Wire;
  /** A send that should be stored: re-encoded with the connection's next seq when it is sent. */
  readonly withSeq?: (seq: bigint) => Wire;
}

const validFrameArb: fc.Arbitrary<FuzzFrame> = fc.tuple(clientFrameArb, encodingArb, fc.boolean()).map(([frame, encoding, inOrder]) => {
  const kind = `valid-${encoding}`;
  const request = frame.request;
  if (!inOrder || request.case !== "send") return { kind, data: encode(frame, encoding) };
  const withSeq = (seq: bigint) => encode(create(ClientFrameSchema, { ...frame, request: { case: "send", value: { ...request.value, seq } } }), encoding);
  return { kind: `${kind}-in-order`, data: withSeq(1n), withSeq };
});

// -- binary mutations

const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const KNOWN_FIELD_NUMBERS = new Set(ClientFrameSchema.fields.map((field) => field.number));
const unknownFieldNoArb = fc.oneof(fc.integer({ min: 3, max: 9 }), fc.integer({ min: 32, max: 2 ** 29 - 1 })).filter((n) => !KNOWN_FIELD_NUMBERS.has(n));

/** One unknown field of any wire type, with a value. */
const unknownFieldBytesArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(unknownFieldNoArb, fc.constantFrom(WireType.Varint, WireType.LengthDelimited, WireType.Bit32, WireType.Bit64), fc.uint8Array({ maxLength: 16 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
  .map(([no, wireType, bytes, big]) => {
    const writer = new BinaryWriter().tag(no, wireType);
    if (wireType === WireType.Varint) writer.uint64(big);
    else if (wireType === WireType.LengthDelimited) writer.bytes(bytes);
    else if (wireType === WireType.Bit32) writer.fixed32(Number(big & 0xffffffffn));
    else writer.fixed64(big);
    return writer.finish();
  });

/** Re-encodes the frame with `extra` appended inside its request message (a nested unknown field). */
function withNestedBytes(frame: ClientFrame, extra: Uint8Array): Uint8Array {
  const request = frame.request;
  if (request.case === undefined) return concat(toBinary(ClientFrameSchema, frame), extra);
  const field = ClientFrameSchema.fields.find((f) => f.localName === request.case);
  if (field?.fieldKind !== "message") return concat(toBinary(ClientFrameSchema, frame), extra);
  const inner = toBinary(field.message, request.value);
  const writer = new BinaryWriter().tag(1, WireType.LengthDelimited).string(frame.requestId);
  return writer.tag(field.number, WireType.LengthDelimited).bytes(concat(inner, extra)).finish();
}

const binaryMutationArb: fc.Arbitrary<FuzzFrame> = fc.oneof(
  fc
    .tuple(clientFrameArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }))
    .map(([frame, flips]) => {
      const bytes = toBinary(ClientFrameSchema, frame);
      for (const [at, mask] of flips) if (bytes.length > 0) bytes[at % bytes.length] = (bytes[at % bytes.length] ?? 0) ^ mask;
      return { kind: "binary-flip", data: bytes };
    }),
  fc.tuple(clientFrameArb, fc.nat()).map(([frame, at]) => {
    const bytes = toBinary(ClientFrameSchema, frame);
    return { kind: "binary-truncate", data: bytes.slice(0, at % (bytes.length + 1)) };
  }),
  fc.tuple(clientFrameArb, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([frame, at, junk]) => {
    const bytes = toBinary(ClientFrameSchema, frame);
    const cut = at % (bytes.length + 1);
    return { kind: "binary-insert", data: concat(bytes.slice(0, cut), junk, bytes.slice(cut)) };
  }),
  fc.tuple(clientFrameArb, unknownFieldBytesArb).map(([frame, extra]) => ({ kind: "binary-unknown-field", data: concat(toBinary(ClientFrameSchema, frame), extra) })),
  fc.tuple(clientFrameArb, unknownFieldBytesArb).map(([frame, extra]) => ({ kind: "binary-nested-unknown", data: withNestedBytes(frame, extra) })),
  fc.tuple(clientFrameArb, fc.oneof(requestIdArb, fc.string({ maxLength: 80 }))).map(([frame, id]) => ({
    kind: "binary-duplicate-id",
    data: concat(toBinary(ClientFrameSchema, frame), new BinaryWriter().tag(1, WireType.LengthDelimited).string(id).finish()),
  })),
  fc.tuple(clientFrameArb, fc.constantFrom(10, 13, 14), fc.integer({ min: 1, max: 4 })).map(([frame, fieldNo, innerField]) => ({
    // A maximal (10-byte) or over-long (11-byte) varint inside a request message.
    kind: "binary-huge-varint",
    data: concat(
      toBinary(ClientFrameSchema, frame),
      new BinaryWriter()
        .tag(fieldNo, WireType.LengthDelimited)
        .bytes(concat(new BinaryWriter().tag(innerField, WireType.Varint).finish(), new Uint8Array([...Array<number>(innerField === 4 ? 10 : 9).fill(0xff), 0x01])))
        .finish(),
    ),
  })),
  fc.tuple(requestIdArb, fc.integer({ min: 100, max: 20_000 })).map(([id, depth]) => ({
    // Nested groups of an unknown field: the decoder must give up, not overflow the stack.
    kind: "binary-deep-groups",
    data: concat(new BinaryWriter().tag(1, WireType.LengthDelimited).string(id).finish(), new Uint8Array(depth).fill(0x1b)),
  })),
  fc.tuple(clientFrameArb, fc.constantFrom(WireType.Varint, WireType.Bit32, WireType.Bit64, WireType.StartGroup)).map(([frame, wireType]) => ({
    // request_id with the wrong wire type.
    kind: "binary-wrong-wire-type",
    data: concat(new BinaryWriter().tag(1, wireType).finish(), new Uint8Array(8).fill(1), toBinary(ClientFrameSchema, frame)),
  })),
);

// -- JSON mutations

type Json = JsonValue;
type JsonPath = readonly (string | number)[];

/** Every path to a value inside `json` (objects and arrays), the root excluded. */
function pathsOf(json: Json, prefix: JsonPath = []): JsonPath[] {
  const out: JsonPath[] = [];
  if (Array.isArray(json)) {
    json.forEach((value, index) => {
      out.push([...prefix, index], ...pathsOf(value, [...prefix, index]));
    });
  } else if (typeof json === "object" && json !== null) {
    for (const [key, value] of Object.entries(json)) out.push([...prefix, key], ...pathsOf(value, [...prefix, key]));
  }
  return out;
}

function objectPathsOf(json: Json): JsonPath[] {
  return [[], ...pathsOf(json)].filter((path) => {
    const value = valueAt(json, path);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  });
}

function valueAt(json: Json, path: JsonPath): Json | undefined {
  let current: Json | undefined = json;
  for (const step of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = Array.isArray(current) ? current[Number(step)] : current[String(step)];
  }
  return current;
}

/** A copy of `json` with the value at `path` replaced (or deleted when `value` is undefined). */
function setAt(json: Json, path: JsonPath, value: Json | undefined): Json {
  const [step, ...rest] = path;
  if (step === undefined) return value ?? null;
  if (Array.isArray(json)) {
    const copy = [...json];
    const index = Number(step);
    if (rest.length === 0 && value === undefined) copy.splice(index, 1);
    else copy[index] = setAt(copy[index] ?? null, rest, value);
    return copy;
  }
  if (typeof json !== "object" || json === null) return json;
  const key = String(step);
  if (rest.length === 0 && value === undefined) return Object.fromEntries(Object.entries(json).filter(([k]) => k !== key));
  return { ...json, [key]: setAt(json[key] ?? null, rest, value) };
}

/** JSON text with `[key, value]` written a second time in the object at `path` (duplicated key). */
function stringifyWithDuplicate(json: Json, path: JsonPath, key: string, value: Json, before: boolean): string {
  const write = (node: Json, at: JsonPath): string => {
    if (Array.isArray(node)) return `[${node.map((v, i) => write(v, [...at, i])).join(",")}]`;
    if (typeof node !== "object" || node === null) return JSON.stringify(node);
    const entries = Object.entries(node).map(([k, v]) => `${JSON.stringify(k)}:${write(v, [...at, k])}`);
    if (at.length === path.length && at.every((step, i) => step === path[i])) {
      const duplicate = `${JSON.stringify(key)}:${JSON.stringify(value)}`;
      if (before) entries.unshift(duplicate);
      else entries.push(duplicate);
    }
    return `{${entries.join(",")}}`;
  };
  return write(json, []);
}

const hugeNumberArb: fc.Arbitrary<Json> = fc.constantFrom<Json>(
  1e308,
  -1e308,
  2 ** 64,
  2 ** 63,
  2 ** 53 + 2,
  -(2 ** 63),
  4294967296,
  2147483648,
  -2147483649,
  1.5,
  -0,
  1e-7,
  "18446744073709551616",
  "9223372036854775808",
  "-9223372036854775809",
  "9223372036854775807",
  "1e5",
  "0x10",
  " 1",
  "+1",
  "NaN",
  "Infinity",
  "99999999999999999999999999999999999999",
);
const junkValueArb: fc.Arbitrary<Json> = fc.oneof(
  hugeNumberArb,
  fc.constantFrom<Json>(null, true, false, "", [], {}, [1, "a"], { a: 1 }, "LIST_DIRECTION_SIDEWAYS", "ERROR_CATEGORY_VALIDATION", 0),
  fc.constantFrom(...unicodeJunk),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
);
const unknownKeyArb = fc.oneof(
  fc.constantFrom("sender", "__proto__", "constructor", "toString", "hasOwnProperty", "$typeName", "$unknown", "seq ", "Seq", "request", "request_id\u0000", "🙂"),
  fc.string({ maxLength: 10 }),
);

/** A valid frame as JSON (either field naming) and what to do to it. */
const jsonBaseArb = fc
  .tuple(clientFrameArb, fc.boolean())
  .map(([frame, protoNames]) => toJson(ClientFrameSchema, frame, { useProtoFieldName: protoNames }));

const jsonMutationArb: fc.Arbitrary<FuzzFrame> = fc.oneof(
  fc.tuple(jsonBaseArb, fc.nat()).map(([json, pick]) => {
    const paths = pathsOf(json);
    const path = paths[pick % Math.max(1, paths.length)];
    return { kind: "json-delete-field", data: JSON.stringify(path === undefined ? json : setAt(json, path, undefined)) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), junkValueArb).map(([json, pick, junk]) => {
    const paths = pathsOf(json);
    const path = paths[pick % Math.max(1, paths.length)] ?? ["requestId"];
    return { kind: "json-wrong-type", data: JSON.stringify(setAt(json, path, junk)) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), hugeNumberArb).map(([json, pick, huge]) => {
    // Numbers where numbers (or int64 strings) belong.
    const paths = pathsOf(json).filter((p) => {
      const value = valueAt(json, p);
      return typeof value === "number" || (typeof value === "string" && /^-?\d+$/.test(value));
    });
    const path = paths[pick % Math.max(1, paths.length)] ?? ["send", "seq"];
    return { kind: "json-huge-number", data: JSON.stringify(setAt(json, path, huge)) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), unknownKeyArb, junkValueArb).map(([json, pick, key, value]) => {
    const objects = objectPathsOf(json);
    const path = objects[pick % objects.length] ?? [];
    // __proto__ and friends must be real keys of the text, not prototype changes here.
    return { kind: "json-unknown-field", data: stringifyWithDuplicate(json, path, key, value, false) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), fc.integer({ min: 10, max: 25_000 }), fc.boolean()).map(([json, pick, depth, arrays]) => {
    const paths = pathsOf(json);
    const path = paths[pick % Math.max(1, paths.length)] ?? ["ping"];
    const marker = "\u0001DEEP\u0001";
    const nested = arrays ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    return { kind: "json-deep-nesting", data: JSON.stringify(setAt(json, path, marker)).replace(JSON.stringify(marker), nested) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), fc.constantFrom(...unicodeJunk), fc.nat()).map(([json, pick, junk, at]) => {
    const paths = pathsOf(json).filter((p) => typeof valueAt(json, p) === "string");
    const path = paths[pick % Math.max(1, paths.length)] ?? ["requestId"];
    const value = valueAt(json, path);
    const text = typeof value === "string" ? value : "";
    const cut = at % (text.length + 1);
    return { kind: "json-unicode-junk", data: JSON.stringify(setAt(json, path, text.slice(0, cut) + junk + text.slice(cut))) };
  }),
  fc.tuple(jsonBaseArb, fc.nat(), fc.nat(), junkValueArb, fc.boolean()).map(([json, pickObject, pickKey, value, before]) => {
    const objects = objectPathsOf(json);
    const path = objects[pickObject % objects.length] ?? [];
    const target = valueAt(json, path);
    const keys = typeof target === "object" && target !== null && !Array.isArray(target) ? Object.keys(target) : [];
    const key = keys[pickKey % Math.max(1, keys.length)] ?? "requestId";
    return { kind: "json-duplicate-key", data: stringifyWithDuplicate(json, path, key, value, before) };
  }),
  fc.tuple(jsonBaseArb, fc.array(fc.tuple(fc.nat(), fc.string({ unit: "binary", minLength: 1, maxLength: 2 })), { minLength: 1, maxLength: 3 })).map(([json, edits]) => {
    let text = JSON.stringify(json);
    for (const [at, replacement] of edits) {
      const i = at % Math.max(1, text.length);
      text = text.slice(0, i) + replacement + text.slice(i + 1);
    }
    return { kind: "json-char-flip", data: text };
  }),
  fc.tuple(jsonBaseArb, fc.nat()).map(([json, at]) => {
    const text = JSON.stringify(json);
    return { kind: "json-truncate", data: text.slice(0, at % (text.length + 1)) };
  }),
  jsonBaseArb.map((json) => {
    // Both spellings of one field at once.
    const record = typeof json === "object" && json !== null && !Array.isArray(json) ? json : {};
    const id = record.requestId ?? record.request_id ?? "x";
    return { kind: "json-both-names", data: JSON.stringify({ ...record, requestId: id, request_id: id }) };
  }),
);

const randomFrameArb: fc.Arbitrary<FuzzFrame> = fc.oneof(
  fc.uint8Array({ maxLength: 512 }).map((data) => ({ kind: "random-bytes", data })),
  fc.oneof(fc.string({ unit: "binary", maxLength: 256 }), fc.string({ maxLength: 64 }), fc.string({ unit: "grapheme", maxLength: 64 })).map((data) => ({ kind: "random-text", data })),
  fc.jsonValue({ maxDepth: 4 }).map((value) => ({ kind: "random-json", data: JSON.stringify(value) })),
  fc
    .tuple(fc.oneof(requestIdArb, fc.string({ maxLength: 70 })), fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }))
    .map(([requestId, rest]) => ({ kind: "random-json-with-id", data: JSON.stringify({ requestId, ...rest }) })),
);

/** Counterexamples print as one short line per frame. */
function described(frame: FuzzFrame): FuzzFrame {
  return Object.assign(frame, { [fc.toStringMethod]: () => `${frame.kind} ${describeData(frame.data)}` });
}

function describeData(data: Wire): string {
  return typeof data === "string"
    ? `${Buffer.byteLength(data)}B ${JSON.stringify(data.length > 160 ? `${data.slice(0, 160)}…` : data)}`
    : `${data.length}B 0x${Buffer.from(data.subarray(0, 80)).toString("hex")}${data.length > 80 ? "…" : ""}`;
}

const fuzzFrameArb: fc.Arbitrary<FuzzFrame> = fc
  .oneof(
    { weight: 2, arbitrary: randomFrameArb },
    { weight: 2, arbitrary: validFrameArb },
    { weight: 3, arbitrary: binaryMutationArb },
    { weight: 3, arbitrary: jsonMutationArb },
  )
  .map(described);

/** Frames that must be refused (pure garbage): nothing in them decodes as a request. */
const garbageArb: fc.Arbitrary<Wire> = fc.oneof(
  fc.uint8Array({ maxLength: 256 }).filter((bytes) => {
    try {
      const frame = fromBinary(ClientFrameSchema, bytes);
      return !REQUEST_ID.test(frame.requestId) || frame.request.case === undefined;
    } catch {
      return true;
    }
  }),
  fc.string({ unit: "binary", maxLength: 128 }).map((text) => `\u0001${text}`),
  fc.jsonValue({ maxDepth: 3 }).filter((value) => typeof value !== "object" || value === null || Array.isArray(value)).map((value) => JSON.stringify(value)),
  requestIdArb.map((requestId) => JSON.stringify({ requestId })),
);

// ---- the batches -------------------------------------------------------------

interface Probe {
  readonly requestId: string;
  readonly kind: "ping" | "send";
  readonly seq: bigint;
  readonly body: string;
}

/**
 * What the answers must add up to, by `format|request_id`: at least `min`
 * and at most `max` answers. They are equal except for KNOWN BUG 2.
 */
class Expectations {
  readonly min = new Map<string, number>();
  readonly max = new Map<string, number>();

  add(key: string, min: number, max: number): void {
    this.min.set(key, (this.min.get(key) ?? 0) + min);
    this.max.set(key, (this.max.get(key) ?? 0) + max);
  }

  /** Every key of `keys` has had its minimum number of answers. */
  met(keys: Iterable<string>, received: ReadonlyMap<string, number>): boolean {
    for (const key of keys) if ((received.get(key) ?? 0) < (this.min.get(key) ?? 0)) return false;
    return true;
  }

  /** The keys of `keys` whose answers are out of bounds, with [min, received, max]. */
  violations(keys: Iterable<string>, received: ReadonlyMap<string, number>): Record<string, [number, number, number]> {
    const out: Record<string, [number, number, number]> = {};
    for (const key of keys) {
      const count = received.get(key) ?? 0;
      const min = this.min.get(key) ?? 0;
      const max = this.max.get(key) ?? 0;
      if (count < min || count > max) out[key] = [min, count, max];
    }
    return out;
  }
}

interface Batch {
  readonly frames: { readonly data: Wire; readonly reading: Reading; readonly kind: string; toString(): string }[];
  readonly probes: Probe[];
  /** The `format|request_id` keys this batch expects answers for. */
  readonly keys: Set<string>;
}

interface Totals {
  fuzzFrames: number;
  unreadable: number;
  knownBugEchoes: number;
  supersededSubscribes: number;
  skippedPoisonSends: number;
  probes: number;
  /** send_acks, probes included. */
  stored: number;
  byKind: Map<string, number>;
  categories: Map<string, number>;
  /** Answers by their kind (sendAck, error, createRoom, ...). */
  answerKinds: Map<string, number>;
  lastSeq: bigint;
  nextProbe: number;
}

/** What a subscription request follows (a room or the inbox), if the bridge would start one. */
function followTarget(request: ClientFrame["request"] | undefined, user: string): string | undefined {
  if (request?.case === "subscribe" && ROOM_ID.test(request.value.room)) return `room:${request.value.room}`;
  if (request?.case === "subscribeNotifications" && (request.value.recipient === "" || request.value.recipient === user)) return "inbox";
  return undefined;
}

/** What a request stops following, if anything: a new subscription to the same target, or unsubscribe. */
function endsFollow(request: ClientFrame["request"] | undefined, user: string): string | undefined {
  if (request?.case === "unsubscribe" && ROOM_ID.test(request.value.room)) return `room:${request.value.room}`;
  return followTarget(request, user);
}

function planBatch(fuzz: readonly FuzzFrame[], totals: Totals, expectations: Expectations, user: string): Batch {
  const frames: Batch["frames"][number][] = [];
  const probes: Probe[] = [];
  const planned: { key: string; superseded: boolean }[] = [];
  /** Subscriptions of this batch not yet answered for sure, by target. */
  const following = new Map<string, number[]>();
  let sinceProbe = 0;
  const plan = (data: Wire, reading: Reading, kind: string) => {
    const ends = endsFollow(reading.request, user);
    if (ends !== undefined) {
      // The earlier subscription is cut short: it is still answered, with `unsubscribed`.
      following.delete(ends);
    }
    const target = followTarget(reading.request, user);
    if (target !== undefined) following.set(target, [...(following.get(target) ?? []), planned.length]);
    planned.push({ key: `${reading.format}|${reading.answeredId}`, superseded: false });
    frames.push({ data, reading, kind, toString: () => `${kind} ${describeData(data)}` });
  };
  for (const frame of fuzz) {
    const size = typeof frame.data === "string" ? Buffer.byteLength(frame.data) : frame.data.length;
    if (size > FUZZ_FRAME_CAP) throw new Error(`generator ${frame.kind} made a ${size}-byte frame`);
    const data = frame.withSeq?.(++totals.lastSeq) ?? frame.data;
    const reading = readFrame(data);
    if (reading.sendSeq !== undefined && reading.sendSeq > SEQ_CEILING) {
      totals.skippedPoisonSends++;
      continue;
    }
    if (reading.sendSeq !== undefined && reading.sendSeq > totals.lastSeq) totals.lastSeq = reading.sendSeq;
    plan(data, reading, frame.kind);
    totals.fuzzFrames++;
    totals.byKind.set(frame.kind, (totals.byKind.get(frame.kind) ?? 0) + 1);
    if (reading.requestId === "") totals.unreadable++;
    if (reading.answeredId !== reading.requestId) totals.knownBugEchoes++;
    if (++sinceProbe === PROBE_EVERY) {
      sinceProbe = 0;
      const n = totals.nextProbe++;
      const probe: Probe =
        n % 2 === 0
          ? { requestId: `probe~${n}`, kind: "ping", seq: 0n, body: "" }
          : { requestId: `probe~${n}`, kind: "send", seq: ++totals.lastSeq, body: `probe ${n} ✓` };
      const request: ClientFrame["request"] =
        probe.kind === "ping"
          ? { case: "ping", value: create(PingFrameSchema) }
          : { case: "send", value: create(SendFrameSchema, { seq: probe.seq, body: probe.body, clientMsgId: `probe-${process.pid}-${n}` }) };
      const data = encode(create(ClientFrameSchema, { requestId: probe.requestId, request }), n % 4 < 2 ? "json" : "binary");
      plan(data, readFrame(data), "probe");
      probes.push(probe);
      totals.probes++;
    }
  }
  const keys = new Set<string>();
  for (const { key, superseded } of planned) {
    expectations.add(key, superseded ? 0 : 1, 1);
    keys.add(key);
    if (superseded) totals.supersededSubscribes++;
  }
  return { frames, probes, keys };
}

// ---- the tests ---------------------------------------------------------------

describe("bridge fuzzing (real bridge, core and PostgreSQL)", () => {
  let db: TestDatabase;
  let core: TestCore;
  let bridge: RunningBridge;
  const bridgeLogs = new LogCapture("warn");

  beforeAll(async () => {
    db = await createTestDatabase();
    core = await startTestCore(db);
    bridge = await startBridge({
      httpAddress: "127.0.0.1:0",
      coreAddress: core.core.address,
      relayToken: TEST_RELAY_TOKEN,
      logger: bridgeLogs.logger,
      limits: LIMITS,
    });
  });

  afterAll(async () => {
    await bridge.stop(1_000);
    await core.stop();
    await db.drop();
  });

  it(`answers each of ${RUNS * FRAMES_PER_RUN} random and mutated frames exactly once on one connection, which stays open and keeps serving`, async () => {
    const user = "fuzzer";
    const client = await FrameClient.open(bridge.port, user, `fuzz-${process.pid}`);
    const expectations = new Expectations();
    const totals: Totals = {
      fuzzFrames: 0,
      unreadable: 0,
      knownBugEchoes: 0,
      supersededSubscribes: 0,
      skippedPoisonSends: 0,
      probes: 0,
      stored: 0,
      byKind: new Map(),
      categories: new Map(),
      answerKinds: new Map(),
      lastSeq: 0n,
      nextProbe: 0,
    };
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fuzzFrameArb, { minLength: FRAMES_PER_RUN, maxLength: FRAMES_PER_RUN }), async (fuzz) => {
          const batch = planBatch(fuzz, totals, expectations, user);
          const touched = client.beginBatch();
          const start = client.answers.length;
          for (const frame of batch.frames) client.send(frame.data);
          await client
            .waitUntil(() => client.closed !== undefined || expectations.met(batch.keys, client.received), 20_000, "the answers of the batch")
            .catch(() => undefined);

          expect(client.closed, "the connection stays open").toBeUndefined();
          expect(client.malformed, "every server frame decodes").toEqual([]);
          // One answer per frame, by (format, request_id); unexpected keys have a max of 0.
          const violations = expectations.violations(new Set([...batch.keys, ...touched]), client.received);
          const culprits = batch.frames.filter((f) => `${f.reading.format}|${f.reading.answeredId}` in violations).map((f) => String(f));
          expect({ violations, culprits }, "[min, received, max] answers, and the frames concerned").toEqual({ violations: {}, culprits: [] });

          const answers = client.answers.slice(start);
          for (const probe of batch.probes) {
            const answer = answers.find((a) => a.requestId === probe.requestId);
            if (probe.kind === "ping") {
              expect(answer?.frame.kind.case, `${probe.requestId} is answered with pong`).toBe("pong");
            } else {
              const kind = answer?.frame.kind;
              expect(kind?.case === "error" ? kind.value.message : kind?.case, `${probe.requestId} is stored`).toBe("sendAck");
              if (kind?.case === "sendAck") {
                expect(kind.value.seq).toBe(probe.seq);
                expect(kind.value.message?.body).toBe(probe.body);
                expect(kind.value.duplicate).toBe(false);
              }
            }
          }
          for (const answer of answers) {
            const answerKind = answer.frame.kind.case ?? "none";
            totals.answerKinds.set(answerKind, (totals.answerKinds.get(answerKind) ?? 0) + 1);
            if (answer.frame.kind.case === "sendAck") totals.stored++;
            if (answer.frame.kind.case === "error") {
              const name = ErrorCategory[answer.frame.kind.value.category];
              totals.categories.set(name, (totals.categories.get(name) ?? 0) + 1);
            }
          }
        }),
        { numRuns: RUNS, endOnFailure: true, seed: SEED },
      );

      // Still alive and serving after everything.
      const pong = await client.ping("final-ping");
      expect(pong?.frame.kind.case).toBe("pong");
      expect(client.closed).toBeUndefined();
      expectations.add("json|final-ping", 1, 1);
      // No late extra answers either (one arriving after its batch was checked).
      const allKeys = new Set([...expectations.max.keys(), ...client.received.keys()]);
      expect(expectations.violations(allKeys, client.received)).toEqual({});
      const health = await fetch(`http://127.0.0.1:${bridge.port}/healthz`);
      expect(health.status).toBe(200);

      expect(totals.fuzzFrames + totals.skippedPoisonSends).toBe(RUNS * FRAMES_PER_RUN);
      expect(totals.fuzzFrames).toBeGreaterThanOrEqual(10_000);
      // Answers without request_id: exactly the frames whose request_id could not be read.
      const withoutId = (client.received.get("json|") ?? 0) + (client.received.get("binary|") ?? 0);
      expect(withoutId).toBe(totals.unreadable);
      expect(totals.knownBugEchoes).toBe(0);
      // Bad input is the client's fault: never INTERNAL or SERIALIZATION.
      expect(totals.categories.get("INTERNAL") ?? 0).toBe(0);
      expect(totals.categories.get("SERIALIZATION") ?? 0).toBe(0);
      expect(totals.categories.get("UNSPECIFIED") ?? 0).toBe(0);
      expect(bridgeLogs.lines.filter((line) => line.level === "error" || line.level === "fatal")).toEqual([]);
      // The room operations reached core and some were carried out, not only refused.
      for (const kind of ["createRoom", "getRoom", "listMyRooms", "roomEvents"]) expect(totals.answerKinds.get(kind) ?? 0, kind).toBeGreaterThan(0);
      const unansweredSuperseded = [...expectations.max].reduce((sum, [key, max]) => sum + max - (client.received.get(key) ?? 0), 0);
      console.info(
        "bridge fuzz:",
        JSON.stringify({
          fuzzFrames: totals.fuzzFrames,
          probes: totals.probes,
          stored: totals.stored,
          answers: client.answers.length,
          pushes: client.pushes,
          unreadable: totals.unreadable,
          answeredWithoutId: withoutId,
          unansweredSubscribes: unansweredSuperseded,
          skippedPoisonSends: totals.skippedPoisonSends,
          categories: Object.fromEntries(totals.categories),
          answerKinds: Object.fromEntries([...totals.answerKinds].sort()),
          byKind: Object.fromEntries([...totals.byKind].sort()),
        }),
      );
    } finally {
      client.close();
    }
  }, 55_000);

  it("closes with 4508 after max_consecutive_errors invalid frames in a row, and not before", async () => {
    const max = LIMITS.maxConsecutiveErrors;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(garbageArb, { minLength: 2 * max - 1, maxLength: 2 * max - 1 }), async (garbage) => {
        const client = await FrameClient.open(bridge.port, "garbage", `garbage-${process.pid}-${run++}`);
        try {
          // One short of the limit, then a valid frame: the run of errors is over.
          for (const data of garbage.slice(0, max - 1)) client.send(data);
          const pong = await client.ping("reset");
          expect(pong?.frame.kind.case).toBe("pong");
          expect(client.answers.filter((a) => a.frame.kind.case === "error")).toHaveLength(max - 1);
          // Then a full run: the last one closes the connection.
          for (const data of garbage.slice(max - 1)) client.send(data);
          await client.waitUntil(() => client.closed !== undefined, 5_000, "close 4508");
          expect(client.closed?.code).toBe(CloseCode.TOO_MANY_ERRORS);
          const errors = client.answers.filter((a) => a.frame.kind.case === "error");
          expect(errors).toHaveLength(2 * max - 1);
          for (const error of errors) expect(error.frame.kind.case === "error" && error.frame.kind.value.category).toBe(ErrorCategory.VALIDATION);
        } finally {
          client.close();
        }
      }),
      { numRuns: 4, endOnFailure: true },
    );
  });

  it("does not count requests core refuses towards 4508: each is answered VALIDATION and the connection stays open", async () => {
    // The run of invalid frames is judged as frames arrive; a request the bridge
    // forwarded and core refused later (here a page size out of range) is not garbage.
    const max = LIMITS.maxConsecutiveErrors;
    const client = await FrameClient.open(bridge.port, "pager", `pager-${process.pid}`);
    try {
      const ids = Array.from({ length: 2 * max }, (_, i) => `bad-page-${i}`);
      for (const requestId of ids) client.send(JSON.stringify({ requestId, history: { room: "lobby", pageSize: -1 } }));
      await client.waitUntil(() => client.closed !== undefined || ids.every((id) => client.answers.some((a) => a.requestId === id)), 10_000, "every answer");
      expect(client.closed).toBeUndefined();
      for (const id of ids) {
        const answer = client.answers.find((a) => a.requestId === id)?.frame.kind;
        expect(answer?.case === "error" && answer.value.category).toBe(ErrorCategory.VALIDATION);
        expect(answer?.case === "error" && answer.value.field).toBe("history.page_size");
      }
      expect((await client.ping("still-open"))?.frame.kind.case).toBe("pong");
    } finally {
      client.close();
    }
  });

  it("closes with 1009 on a frame over max_frame_bytes, and answers one of exactly max_frame_bytes", async () => {
    const max = LIMITS.maxFrameBytes;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 8192 }), fc.boolean(), async (over, binary) => {
        const client = await FrameClient.open(bridge.port, "big", `big-${process.pid}-${run++}`);
        try {
          const head = `{"requestId":"at-limit","ping":{}}`;
          client.send(head + " ".repeat(max - head.length));
          const pong = await client.ping("after-limit");
          expect(client.answers.map((a) => a.frame.kind.case)).toEqual(["pong", "pong"]);
          expect(pong?.requestId).toBe("after-limit");
          client.send(binary ? new Uint8Array(max + over) : " ".repeat(max + over));
          await client.waitUntil(() => client.closed !== undefined, 5_000, "close 1009");
          expect(client.closed?.code).toBe(CloseCode.MESSAGE_TOO_BIG);
          expect(client.answers).toHaveLength(2);
        } finally {
          client.close();
        }
      }),
      { numRuns: 3, endOnFailure: true },
    );
  });

  // Regressions of bugs this fuzzing found.
  it("answers a subscribe that an unsubscribe of the same room cuts short", async () => {
    const client = await FrameClient.open(bridge.port, "known-bug", `known-bug-2-${process.pid}`);
    try {
      client.send(JSON.stringify({ requestId: "sub", subscribe: { room: "cut-short", afterSeq: "0" } }));
      client.send(JSON.stringify({ requestId: "unsub", unsubscribe: { room: "cut-short" } }));
      await client.waitUntil(() => client.answers.some((a) => a.requestId === "unsub"), 5_000, "unsubscribed");
      // caught_up or error: either way, an answer.
      await client.waitUntil(() => client.answers.some((a) => a.requestId === "sub"), 2_000, "an answer to the subscribe");
    } finally {
      client.close();
    }
  });

  it("answers a frame whose bad value holds a lone surrogate with an error frame a protobuf client can decode", async () => {
    const client = await FrameClient.open(bridge.port, "known-bug", `known-bug-4-${process.pid}`);
    try {
      client.send(JSON.stringify({ requestId: "lone", send: { seq: "1\udfff", body: "b", clientMsgId: "lone" } }));
      await client.waitUntil(() => client.answers.length > 0, 5_000, "an answer");

    } finally {
      client.close();
    }
  });

  it("refuses a text frame with a duplicated key instead of keeping the last value", async () => {
    const client = await FrameClient.open(bridge.port, "known-bug", `known-bug-3-${process.pid}`);
    try {
      client.send(`{"requestId":"dup","send":{"seq":"1","body":"first","body":"second","clientMsgId":"dup-${process.pid}"}}`);
      await client.waitUntil(() => client.answers.length > 0, 5_000, "an answer");
      const kind = client.answers[0]?.frame.kind;
      expect(kind?.case === "error" ? kind.value.category : kind?.case).toBe(ErrorCategory.VALIDATION);
    } finally {
      client.close();
    }
  });

  it("answers a binary frame with an unreadable request_id and an unknown field without a request_id", async () => {
    const client = await FrameClient.open(bridge.port, "known-bug", `known-bug-${process.pid}`);
    try {
      const frame = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId: "has a space", request: { case: "ping", value: {} } }));
      client.send(concat(frame, new BinaryWriter().tag(99, WireType.Varint).uint32(1).finish()));
      await client.waitUntil(() => client.answers.length > 0, 5_000, "an answer");
      expect(client.answers[0]?.requestId).toBe("");
    } finally {
      client.close();
    }
  });
});

