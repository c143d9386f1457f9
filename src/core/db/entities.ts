import { defineEntity } from "@mikro-orm/core";

/**
 * The schema, as MikroORM entities. Migrations in ./migrations are the
 * deployed truth; a test checks that they and these entities agree.
 *
 * Sequence numbers are bigint; timestamps are timestamptz(6) (microseconds)
 * and are read as text so that no precision is lost on the way to
 * google.protobuf.Timestamp.
 */

export const RoomEntity = defineEntity({
  name: "Room",
  tableName: "rooms",
  properties: (p) => ({
    /** The room id, as chosen by the first sender. */
    id: p.string().columnType("text").primary(),
    /** Highest seq assigned in this room; the next message gets head_seq + 1. */
    headSeq: p.bigint().fieldName("head_seq").default(0),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
  }),
});

export const RoomMemberEntity = defineEntity({
  name: "RoomMember",
  tableName: "room_members",
  properties: (p) => ({
    room: p.manyToOne(RoomEntity).fieldName("room_id").primary().deleteRule("cascade"),
    userId: p.string().columnType("text").fieldName("user_id").primary(),
    /** Highest seq this member has read; never moves backwards. */
    readSeq: p.bigint().fieldName("read_seq").default(0),
    updatedAt: p.datetime(6).fieldName("updated_at").defaultRaw("now()"),
  }),
});

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

export const ENTITIES = [RoomEntity, RoomMemberEntity, ChatMessageEntity];
