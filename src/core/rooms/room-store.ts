import type { EntityManager } from "@mikro-orm/postgresql";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { boundQuery } from "../store/bound-query.js";
import { type RoomChange, storedChange } from "../store/room-event-rows.js";
import { CHAT_CHANNEL } from "../chat/message-store.js";
import type { Membership } from "../access/permissions.js";

/** A rooms row as the room service reads it. */
export interface RoomRecord {
  readonly id: string;
  readonly kind: RoomKind;
  readonly name: string;
  readonly topic: string;
  readonly createdBy: string;
  readonly createdAt: string;
  readonly headSeq: bigint;
}

/** A room_members row. */
export interface MemberRecord extends Membership {
  readonly user: string;
  readonly readSeq: bigint;
  readonly updatedAt: string;
}

interface RoomRow {
  id: string;
  /** Stored enum values are not checked here: the decision table refuses unknown ones. */
  kind: RoomKind;
  name: string;
  topic: string;
  created_by: string;
  created_at: string;
  head_seq: string;
}

interface MemberRow {
  user_id: string;
  state: MembershipState;
  role: RoomRole;
  read_seq: string;
  updated_at: string;
}

const ROOM_COLUMNS = "id, kind, name, topic, created_by, created_at::text, head_seq";
const MEMBER_COLUMNS = "user_id, state, role, read_seq, updated_at::text";

const toRoom = (row: RoomRow): RoomRecord => ({
  id: row.id,
  kind: row.kind,
  name: row.name,
  topic: row.topic,
  createdBy: row.created_by,
  createdAt: row.created_at,
  headSeq: BigInt(row.head_seq),
});

const toMember = (row: MemberRow): MemberRecord => ({
  user: row.user_id,
  state: row.state,
  role: row.role,
  readSeq: BigInt(row.read_seq),
  updatedAt: row.updated_at,
});

/**
 * SQL of rooms and their members, for the room service. Every method runs on
 * the caller's unit of work; a change of membership runs after `lockRoom`,
 * whose row lock serializes it with the room's sends and other changes, so
 * that the log's order is the order in which they took effect.
 */
export class RoomStore {
  constructor(
    /** Identifies this core instance in NOTIFY payloads. */
    readonly origin: string,
  ) {}

  /** The room, locked until the transaction ends; undefined when it does not exist. */
  async lockRoom(em: EntityManager, room: string): Promise<RoomRecord | undefined> {
    const rows = await em.execute<RoomRow[]>(`select ${ROOM_COLUMNS} from rooms where id = ? for update`, [room]);
    return rows[0] && toRoom(rows[0]);
  }

  async readRoom(em: EntityManager, room: string): Promise<RoomRecord | undefined> {
    const rows = await em.execute<RoomRow[]>(`select ${ROOM_COLUMNS} from rooms where id = ?`, [room]);
    return rows[0] && toRoom(rows[0]);
  }

  /** Creates the room at head 0; false when a room with this id exists. */
  async insertRoom(em: EntityManager, room: { id: string; kind: RoomKind; name: string; topic: string; createdBy: string }): Promise<boolean> {
    const rows = await em.execute<{ id: string }[]>(
      `insert into rooms (id, kind, name, topic, created_by) values (?, ?, ?, ?, ?) on conflict (id) do nothing returning id`,
      [room.id, room.kind, room.name, room.topic, room.createdBy],
    );
    return rows.length === 1;
  }

  async updateSettings(em: EntityManager, room: string, settings: { kind: RoomKind; name: string; topic: string }): Promise<void> {
    await em.execute(`update rooms set kind = ?, name = ?, topic = ? where id = ?`, [settings.kind, settings.name, settings.topic, room]);
  }

  async member(em: EntityManager, room: string, user: string): Promise<MemberRecord | undefined> {
    const rows = await em.execute<MemberRow[]>(`select ${MEMBER_COLUMNS} from room_members where room_id = ? and user_id = ?`, [room, user]);
    return rows[0] && toMember(rows[0]);
  }

  /** Sets a user's state and role in the room, keeping their read position. */
  async setMembership(em: EntityManager, room: string, user: string, membership: { state: MembershipState; role: RoomRole }): Promise<MemberRecord> {
    const rows = await em.execute<MemberRow[]>(
      `insert into room_members as rm (room_id, user_id, state, role) values (?, ?, ?, ?)
       on conflict (room_id, user_id) do update set state = excluded.state, role = excluded.role, updated_at = now()
       returning ${MEMBER_COLUMNS}`,
      [room, user, membership.state, membership.role],
    );
    const row = rows[0];
    if (row === undefined) throw new Error("setMembership returned no row");
    return toMember(row);
  }

  /**
   * Appends one event to the room's log: the next seq (head_seq + 1, under
   * the row lock taken by lockRoom), the row, and the NOTIFY that tells
   * other core instances the room moved, delivered at commit.
   */
  async appendEvent(em: EntityManager, room: string, actor: string, change: RoomChange): Promise<{ seq: bigint; createdAt: string }> {
    const { type, payload } = storedChange(change);
    const rows = await boundQuery<{ seq: string; created_at: string }>(
      em,
      `with head as (
         update rooms set head_seq = head_seq + 1, last_event_at = now() where id = ? returning id, head_seq
       ),
       inserted as (
         insert into room_events (room_id, seq, type, actor, payload)
         select id, head_seq, ?, ?, decode(?, 'base64') from head
         returning seq, created_at
       ),
       notified as (
         select pg_notify(?, json_build_object('topic', id, 'from', head_seq::text, 'to', head_seq::text, 'origin', ?::text)::text) from head
       )
       select i.seq, i.created_at::text, (select count(*) from notified) as notified from inserted i`,
      [room, type, actor, payload, CHAT_CHANNEL, this.origin],
    );
    const row = rows[0];
    if (row === undefined) throw new Error(`appendEvent: room ${room} does not exist`);
    return { seq: BigInt(row.seq), createdAt: row.created_at };
  }

  /** Members in one of `states` (INVITED and JOINED count toward quotas). */
  async countMembers(em: EntityManager, room: string, states: readonly MembershipState[]): Promise<number> {
    const rows = await em.execute<{ n: string }[]>(`select count(*) as n from room_members where room_id = ? and state = any(?::smallint[])`, [room, `{${states.join(",")}}`]);
    return Number(rows[0]?.n ?? 0);
  }

  /** Joined owners of the room. */
  async countOwners(em: EntityManager, room: string): Promise<number> {
    const rows = await em.execute<{ n: string }[]>(`select count(*) as n from room_members where room_id = ? and state = ? and role = ?`, [room, MembershipState.JOINED, RoomRole.OWNER]);
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Rooms `user` has joined that count toward their quota: every joined room
   * but the direct rooms someone else opened with them (which a stranger
   * could otherwise open by the thousand to use the quota up).
   */
  async countJoinedRoomsOf(em: EntityManager, user: string): Promise<number> {
    const rows = await em.execute<{ n: string }[]>(
      `select count(*) as n from room_members m join rooms r on r.id = m.room_id
       where m.user_id = ? and m.state = ? and not (r.kind = ? and r.created_by <> m.user_id)`,
      [user, MembershipState.JOINED, RoomKind.DIRECT],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Invitations `user` holds, across rooms. */
  async countInvitationsOf(em: EntityManager, user: string): Promise<number> {
    const rows = await em.execute<{ n: string }[]>(`select count(*) as n from room_members where user_id = ? and state = ?`, [user, MembershipState.INVITED]);
    return Number(rows[0]?.n ?? 0);
  }

  async countRoomsCreatedBy(em: EntityManager, user: string): Promise<number> {
    const rows = await em.execute<{ n: string }[]>(`select count(*) as n from rooms where created_by = ?`, [user]);
    return Number(rows[0]?.n ?? 0);
  }

  /** Members in `states`, by user id after `afterUser`, at most `limit`. */
  async listMembers(em: EntityManager, room: string, states: readonly MembershipState[], afterUser: string, limit: number): Promise<MemberRecord[]> {
    const rows = await em.execute<MemberRow[]>(
      `select ${MEMBER_COLUMNS} from room_members where room_id = ? and state = any(?::smallint[]) and user_id > ? order by user_id limit ?`,
      [room, `{${states.join(",")}}`, afterUser, limit],
    );
    return rows.map(toMember);
  }
}
