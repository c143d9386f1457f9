import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type ChatMessage, MembershipChangeSchema, type RoomEvent, RoomEventSchema, RoomSettingsChangeSchema } from "../../../gen/parley/v1/chat_pb.js";
import { timestampFromPg } from "./pg-timestamp.js";

/**
 * How a room_events row becomes a RoomEvent and back. A row holds one case
 * of RoomEvent's `event` oneof: `type` is the case's field number and
 * `payload` its protobuf binary, so a new kind of event (an edit, a
 * reaction) is a new case here and in the contract, not a new table.
 */

/** The RoomEvent cases stored in room_events (messages live in chat_messages). */
export type RoomChange = Extract<RoomEvent["event"], { case: "membership" | "settings" }>;

/** Field numbers of the cases in proto/parley/v1/chat.proto (RoomEvent.event). */
const TYPE_OF = { membership: 11, settings: 12 } as const satisfies Record<RoomChange["case"], number>;

/** A room_events row as read (bigint and timestamptz as text, bytea as a Buffer). */
export interface RoomEventRow {
  room_id: string;
  seq: string;
  type: number;
  actor: string;
  payload: Uint8Array;
  created_at: string;
}

/** For `select ${ROOM_EVENT_COLUMNS} from room_events`. */
export const ROOM_EVENT_COLUMNS = "room_id, seq, type, actor, payload, created_at";

/** The row as a RoomEvent; a type this version does not know is an error, never skipped (the log would have a hole). */
export function toRoomEvent(row: RoomEventRow): RoomEvent {
  return create(RoomEventSchema, {
    room: row.room_id,
    seq: BigInt(row.seq),
    createdAt: timestampFromPg(row.created_at),
    actor: row.actor,
    event: changeOf(row),
  });
}

function changeOf(row: RoomEventRow): RoomChange {
  switch (row.type) {
    case TYPE_OF.membership:
      return { case: "membership", value: fromBinary(MembershipChangeSchema, row.payload) };
    case TYPE_OF.settings:
      return { case: "settings", value: fromBinary(RoomSettingsChangeSchema, row.payload) };
    default:
      throw new Error(`room_events row ${row.room_id}/${row.seq} has unknown type ${row.type}`);
  }
}

/** The type and payload (base64, for `decode(?, 'base64')`) that store `change`. */
export function storedChange(change: RoomChange): { readonly type: number; readonly payload: string } {
  const payload =
    change.case === "membership" ? toBinary(MembershipChangeSchema, change.value) : toBinary(RoomSettingsChangeSchema, change.value);
  return { type: TYPE_OF[change.case], payload: Buffer.from(payload).toString("base64") };
}

/** A message as the RoomEvent that holds it (its seq, room and time are the event's). */
export function messageEvent(message: ChatMessage): RoomEvent {
  return create(RoomEventSchema, {
    room: message.room,
    seq: message.seq,
    createdAt: message.createdAt,
    actor: message.sender,
    event: { case: "message", value: message },
  });
}
