import { create } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import { type Room, RoomSchema } from "../../../gen/parley/v1/room_service_pb.js";
import { MembershipState, type RoomKind, type RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ROOM_ID, validationError } from "../../wire/index.js";
import { toChatMessage } from "../store/chat-tables.js";
import { decide } from "../access/permissions.js";
import { timestampFromPg } from "../store/pg-timestamp.js";

/**
 * Rooms as one user sees them (GetRoom, ListMyRooms): the room, the user's
 * standing, the joined members, the unread count and the newest message, in
 * one query per page.
 *
 * Unread counts count messages only: the head minus the read position is
 * every event after it, so the room_events after it (few: membership and
 * settings changes) are taken away, which costs an index range of those
 * rather than a count of messages.
 */
const SUMMARY_SELECT = `
  select r.id, r.kind, r.name, r.topic, r.created_by, r.created_at::text as created_at, r.head_seq, r.last_event_at::text as last_event_at,
         coalesce(m.state, 0) as my_state, coalesce(m.role, 0) as my_role, coalesce(m.read_seq, 0) as my_read_seq,
         (select count(*) from room_members j where j.room_id = r.id and j.state = ${MembershipState.JOINED}) as member_count,
         (select count(*) from room_events e where e.room_id = r.id and e.seq > coalesce(m.read_seq, 0)) as events_unread,
         lm.id as lm_id, lm.seq as lm_seq, lm.sender as lm_sender, lm.body as lm_body, lm.client_msg_id as lm_client_msg_id, lm.created_at::text as lm_created_at
  from rooms r
  left join room_members m on m.room_id = r.id and m.user_id = ?
  left join lateral (
    select c.id, c.seq, c.sender, c.body, c.client_msg_id, c.created_at from chat_messages c
    where c.room_id = r.id order by c.seq desc limit 1
  ) lm on true`;

interface SummaryRow {
  id: string;
  /** Stored enum values are not checked here: the decision table refuses unknown ones. */
  kind: RoomKind;
  name: string;
  topic: string;
  created_by: string;
  created_at: string;
  head_seq: string;
  last_event_at: string;
  my_state: MembershipState;
  my_role: RoomRole;
  my_read_seq: string;
  member_count: string;
  events_unread: string;
  lm_id: string | null;
  lm_seq: string | null;
  lm_sender: string | null;
  lm_body: string | null;
  lm_client_msg_id: string | null;
  lm_created_at: string | null;
}

/** `room` as `user` sees it; undefined when it does not exist. */
export async function roomSummary(em: EntityManager, user: string, room: string): Promise<Room | undefined> {
  const rows = await em.execute<SummaryRow[]>(`${SUMMARY_SELECT} where r.id = ?`, [user, room]);
  return rows[0] && toRoom(rows[0]);
}

/**
 * One page of the rooms `user` has joined or is invited to, the most
 * recently active first, and the token of the next page (empty at the end).
 */
export async function myRooms(em: EntityManager, user: string, pageToken: string, limit: number): Promise<{ rooms: Room[]; nextPageToken: string }> {
  const after = parsePageToken(pageToken);
  const rows = await em.execute<SummaryRow[]>(
    `${SUMMARY_SELECT}
     where m.state in (${MembershipState.INVITED}, ${MembershipState.JOINED})
       ${after ? "and (r.last_event_at, r.id) < (?::timestamptz, ?)" : ""}
     order by r.last_event_at desc, r.id desc
     limit ?`,
    after ? [user, after.at, after.id, limit + 1] : [user, limit + 1],
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    rooms: page.map(toRoom),
    nextPageToken: rows.length > limit && last ? Buffer.from(JSON.stringify([last.last_event_at, last.id])).toString("base64url") : "",
  };
}

/** A page token is the (last_event_at, id) of the previous page's last room. */
function parsePageToken(token: string): { at: string; id: string } | undefined {
  if (token === "") return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === "string" && typeof parsed[1] === "string" && ROOM_ID.test(parsed[1])) {
      timestampFromPg(parsed[0]);
      return { at: parsed[0], id: parsed[1] };
    }
  } catch {
    // Falls through to the refusal.
  }
  throw validationError("page_token", "is not a token this service gave");
}

function toRoom(row: SummaryRow): Room {
  const headSeq = BigInt(row.head_seq);
  const readSeq = BigInt(row.my_read_seq);
  const unread = headSeq - readSeq - BigInt(row.events_unread);
  // Someone who may not read the room (invited to a private one, a former
  // member answered by CreateRoom) learns of it, never what is said in it.
  const readable = decide(row.kind, row.my_state === MembershipState.UNSPECIFIED ? undefined : { state: row.my_state, role: row.my_role }, "read").allowed;
  return create(RoomSchema, {
    id: row.id,
    kind: row.kind,
    name: row.name,
    topic: row.topic,
    createdBy: row.created_by,
    createdAt: timestampFromPg(row.created_at),
    headSeq,
    memberCount: BigInt(row.member_count),
    myState: row.my_state,
    myRole: row.my_role,
    myReadSeq: readSeq,
    unreadCount: readable && unread > 0n ? unread : 0n,
    lastMessage:
      !readable || row.lm_id === null
        ? undefined
        : toChatMessage({
            id: row.lm_id,
            room_id: row.id,
            seq: row.lm_seq ?? "0",
            sender: row.lm_sender ?? "",
            body: row.lm_body ?? "",
            client_msg_id: row.lm_client_msg_id ?? "",
            created_at: row.lm_created_at ?? row.created_at,
          }),
  });
}
