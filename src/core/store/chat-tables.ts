import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import type { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { defineEntity } from "@mikro-orm/core";
import { timestampFromPg } from "./pg-timestamp.js";

/**
 * The chat tables, and how a chat_messages row becomes a ChatMessage — in
 * one place, so that a field added to ChatMessage is one edit of this file
 * on the store's side (besides its migration and
 * sql/parley_store_chat_batch.sql; see docs/adding-a-field.md). Three things
 * catch a step forgotten: toChatMessage builds a ChatMessage literal, which
 * does not compile without every field; test/core/store/chat-tables.test.ts
 * compares chat_messages' columns and the function's result with
 * CHAT_MESSAGE_COLUMNS; the schema test compares the entities with the
 * migrated database.
 */

export const RoomEntity = defineEntity({
  name: "Room",
  tableName: "rooms",
  indexes: [{ name: "rooms_created_by_index", properties: ["createdBy"] }],
  properties: (p) => ({
    /** The room id, as chosen by the first sender. */
    id: p.string().columnType("text").primary(),
    /** Highest seq assigned in this room; the next message gets head_seq + 1. */
    headSeq: p.bigint().fieldName("head_seq").default(0),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
    /** A RoomKind value (rooms.proto); rooms from before the room model are public. */
    kind: p.smallint().default(1),
    name: p.string().columnType("text").default(""),
    topic: p.string().columnType("text").default(""),
    /** The user who created the room (for older rooms, its first sender). */
    createdBy: p.string().columnType("text").fieldName("created_by").default(""),
    /** When the room's log last grew (ListMyRooms orders by it). */
    lastEventAt: p.datetime(6).fieldName("last_event_at").defaultRaw("now()"),
  }),
});

export const RoomMemberEntity = defineEntity({
  name: "RoomMember",
  tableName: "room_members",
  indexes: [{ name: "room_members_user_id_index", properties: ["userId"] }],
  properties: (p) => ({
    room: p.manyToOne(RoomEntity).fieldName("room_id").primary().deleteRule("cascade"),
    userId: p.string().columnType("text").fieldName("user_id").primary(),
    /** Highest seq this member has read; never moves backwards. */
    readSeq: p.bigint().fieldName("read_seq").default(0),
    updatedAt: p.datetime(6).fieldName("updated_at").defaultRaw("now()"),
    /** A MembershipState value (rooms.proto). */
    state: p.smallint().default(2),
    /** A RoomRole value (rooms.proto); it counts while the state is JOINED. */
    role: p.smallint().default(2),
  }),
});

/**
 * room_events: the room log's entries that are not messages, numbered in the
 * room's one sequence. `type` is the RoomEvent case's field number, `payload`
 * that case's protobuf binary (room-events.ts reads and writes them).
 */
export const RoomEventEntity = defineEntity({
  name: "RoomEventRow",
  tableName: "room_events",
  properties: (p) => ({
    room: p.manyToOne(RoomEntity).fieldName("room_id").primary().deleteRule("cascade"),
    seq: p.bigint().primary(),
    type: p.smallint(),
    actor: p.string().columnType("text"),
    payload: p.blob().columnType("bytea"),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
  }),
});

/**
 * A room's kind and a member's standing as their smallint columns hold them.
 * A number no enum value has (a newer writer, a corrupt row) is kept as it
 * is, not mapped to a known value: the decision table refuses it.
 */
export function standingFromRow(kind: number, state: number | null, role: number | null): { kind: RoomKind; membership: { state: MembershipState; role: RoomRole } | undefined } {
  /* eslint-disable @typescript-eslint/no-unsafe-enum-assignment -- the columns hold enum numbers; unknown ones are decided (refused), not checked here */
  return { kind, membership: state === null ? undefined : { state, role: role ?? 0 } };
  /* eslint-enable @typescript-eslint/no-unsafe-enum-assignment */
}

/** chat_messages; a column added here is added to CHAT_MESSAGE_COLUMNS and toChatMessage below too. */
export const ChatMessageEntity = defineEntity({
  name: "ChatMessageRow",
  tableName: "chat_messages",
  uniques: [
    { name: "chat_messages_room_seq_unique", properties: ["room", "seq"] },
    { name: "chat_messages_sender_client_msg_id_unique", properties: ["sender", "clientMsgId"] },
  ],
  properties: (p) => ({
    id: p.uuid().primary(),
    room: p.manyToOne(RoomEntity).fieldName("room_id").deleteRule("cascade"),
    seq: p.bigint(),
    sender: p.string().columnType("text"),
    body: p.string().columnType("text"),
    clientMsgId: p.string().columnType("text").fieldName("client_msg_id"),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
  }),
});

/** One send, validated and authenticated, ready to be stored. */
export interface NewMessage {
  /** Pre-generated id, used if the message is new. */
  readonly id: string;
  readonly room: string;
  readonly sender: string;
  readonly body: string;
  readonly clientMsgId: string;
}

/** A NewMessage as parley_store_chat_batch reads it (its `input` recordset), with its place in the batch. */
export function inputRow(message: NewMessage, ord: number): Record<string, string | number> {
  return { ord, id: message.id, room_id: message.room, sender: message.sender, body: message.body, client_msg_id: message.clientMsgId };
}

/**
 * A chat_messages row as read (bigint and timestamptz as text), and as
 * parley_store_chat_batch returns it (a 'refused' row holds only ord, kind,
 * room_id, sender and client_msg_id).
 */
export interface MessageRow {
  ord?: number;
  kind?: "stored" | "duplicate" | "refused";
  id: string;
  room_id: string;
  seq: string;
  sender: string;
  body: string;
  client_msg_id: string;
  created_at: string;
}

/** The columns toChatMessage reads, in the order of ChatMessage's fields. */
export const CHAT_MESSAGE_COLUMNS = ["id", "room_id", "seq", "sender", "body", "client_msg_id", "created_at"] as const satisfies readonly (keyof MessageRow)[];

/** For `select ${MESSAGE_COLUMNS} from chat_messages`. */
export const MESSAGE_COLUMNS = CHAT_MESSAGE_COLUMNS.join(", ");

/**
 * The row as a ChatMessage: a literal (every field written here, as the
 * hand-written decoders do), not `create()`, which would look the schema up
 * for each of the hundreds of rows a page or a batch has.
 */
export function toChatMessage(row: MessageRow): ChatMessage {
  return {
    $typeName: "parley.v1.ChatMessage",
    id: row.id,
    room: row.room_id,
    seq: BigInt(row.seq),
    sender: row.sender,
    body: row.body,
    clientMsgId: row.client_msg_id,
    createdAt: timestampFromPg(row.created_at),
  };
}
