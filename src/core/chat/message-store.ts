import type { EntityManager } from "@mikro-orm/postgresql";
import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { decide, type Membership } from "../access/permissions.js";
import { joinsImplicitly, SEND_STANDINGS } from "../access/write-access.js";
import { boundQuery } from "../store/bound-query.js";
import { inputRow, MESSAGE_COLUMNS, type MessageRow, type NewMessage, standingFromRow, toChatMessage } from "../store/chat-tables.js";

export type { NewMessage };

/** The NOTIFY channel that tells other core instances a room moved (parley_store_chat_batch notifies on it). */
export const CHAT_CHANNEL = "parley_chat";

/** What storing one NewMessage came to. */
export type StoredOutcome =
  | { readonly kind: "stored"; readonly message: ChatMessage }
  | { readonly kind: "duplicate"; readonly message: ChatMessage }
  /** The sender may not send to the room (or it does not exist): nothing was written. */
  | { readonly kind: "refused" };

/** Which rooms a write may create or join by itself. */
export interface RoomPolicy {
  /**
   * Rooms on first use (development): a send or a read position in a room
   * that does not exist creates it as a public room owned by the writer,
   * and a writer who may join a public room is joined to it, without room
   * events. False in production: such writes are refused.
   */
  readonly implicitRooms: boolean;
}

/**
 * Stores a batch of messages in one statement (one round trip, atomic by
 * itself, the batch bound as a parameter): parley_store_chat_batch, defined
 * in src/core/store/sql/parley_store_chat_batch.sql, which explains its
 * steps and why it lives in the database (a plan made once per connection).
 */
const STORE_BATCH_SQL = "select * from parley_store_chat_batch(?::jsonb, ?, ?::int[], ?)";

/** SEND_STANDINGS as an array literal, bound as text once rather than an array per call (knex would spread an array into a list). */
const SEND_STANDINGS_LITERAL = `{${SEND_STANDINGS.join(",")}}`;

/** SQL of chat messages. Every method runs on the caller's unit of work. */
export class MessageStore {
  constructor(
    /** Identifies this core instance in NOTIFY payloads. */
    readonly origin: string,
    readonly policy: RoomPolicy,
  ) {}

  /**
   * Stores `batch` (no two entries with the same sender and client_msg_id)
   * and returns one outcome per entry, in batch order. Each entry is stored
   * only if its sender may send to its room (SEND_STANDINGS, the policy).
   */
  async storeBatch(em: EntityManager, batch: readonly NewMessage[]): Promise<StoredOutcome[]> {
    const input = batch.map(inputRow);
    const rows = await boundQuery<MessageRow>(em, STORE_BATCH_SQL, [JSON.stringify(input), this.origin, SEND_STANDINGS_LITERAL, this.policy.implicitRooms]);
    const outcomes = new Array<StoredOutcome | undefined>(batch.length);
    for (const row of rows) {
      if (row.ord === undefined || row.kind === undefined) continue;
      outcomes[row.ord] = row.kind === "refused" ? REFUSED : { kind: row.kind, message: toChatMessage(row) };
    }
    // A loop, not map: map skips the holes of a sparse array, and a missing outcome must throw.
    for (let ord = 0; ord < outcomes.length; ord++) {
      if (outcomes[ord] === undefined) throw new Error(`batch entry ${ord} has no outcome`);
    }
    return outcomes as StoredOutcome[];
  }

  /** Messages with seq > afterSeq, ascending, at most `limit`. */
  async readAfter(em: EntityManager, room: string, afterSeq: bigint, limit: number): Promise<ChatMessage[]> {
    const rows = await em.execute<MessageRow[]>(
      `select ${MESSAGE_COLUMNS} from chat_messages where room_id = ? and seq > ? order by seq limit ?`,
      [room, afterSeq.toString(), limit],
    );
    return rows.map(toChatMessage);
  }

  /** Messages with seq in [from, to], ascending. */
  async readRange(em: EntityManager, room: string, from: bigint, to: bigint): Promise<ChatMessage[]> {
    const rows = await em.execute<MessageRow[]>(
      `select ${MESSAGE_COLUMNS} from chat_messages where room_id = ? and seq between ? and ? order by seq`,
      [room, from.toString(), to.toString()],
    );
    return rows.map(toChatMessage);
  }

  /** Messages with seq < beforeSeq (or the newest when beforeSeq is 0), descending. */
  async readBefore(em: EntityManager, room: string, beforeSeq: bigint, limit: number): Promise<ChatMessage[]> {
    const bound = beforeSeq === 0n ? "" : "and seq < ?";
    const params = beforeSeq === 0n ? [room, limit] : [room, beforeSeq.toString(), limit];
    const rows = await em.execute<MessageRow[]>(
      `select ${MESSAGE_COLUMNS} from chat_messages where room_id = ? ${bound} order by seq desc limit ?`,
      params,
    );
    return rows.map(toChatMessage);
  }

  /** The room's head seq; 0 when the room does not exist yet. */
  async headSeq(em: EntityManager, room: string): Promise<bigint> {
    const rows = await em.execute<{ head_seq: string }[]>(`select head_seq from rooms where id = ?`, [room]);
    return BigInt(rows[0]?.head_seq ?? "0");
  }

  /**
   * Moves `user`'s read position in `room` up to `seq` (never down), if the
   * table lets them ("mark_read": a joined member), deciding on their
   * member row locked in the caller's transaction: a ban committed first is
   * seen, one committed later waits. Returns the position and head, or
   * undefined when refused, having written nothing. Under the implicit
   * policy a missing room is created (public, `user` its owner) and a user
   * who may join a public room is joined.
   */
  async markRead(em: EntityManager, room: string, user: string, seq: bigint): Promise<{ readSeq: bigint; headSeq: bigint } | undefined> {
    if (this.policy.implicitRooms) await this.#createOnFirstUse(em, room, user);
    const found = await em.execute<{ kind: number; head_seq: string; state: number | null; role: number | null }[]>(
      `select r.kind, r.head_seq, m.state, m.role
       from rooms r
       left join lateral (select state, role from room_members where room_id = r.id and user_id = ? for update) m on true
       where r.id = ?`,
      [user, room],
    );
    const row = found[0];
    if (row === undefined) return undefined;
    const standing = standingFromRow(row.kind, row.state, row.role);
    const kind = standing.kind;
    let membership: Membership | undefined = standing.membership;
    if (this.policy.implicitRooms && joinsImplicitly(kind, membership)) {
      membership = { state: MembershipState.JOINED, role: RoomRole.MEMBER };
      await em.execute(
        `insert into room_members as rm (room_id, user_id, state, role) values (?, ?, ?, ?)
         on conflict (room_id, user_id) do update set state = excluded.state, role = excluded.role, updated_at = now()`,
        [room, user, membership.state, membership.role],
      );
    }
    if (!decide(kind, membership, "mark_read").allowed) return undefined;
    const moved = await em.execute<{ read_seq: string }[]>(
      `update room_members set read_seq = greatest(read_seq, ?), updated_at = now() where room_id = ? and user_id = ? returning read_seq`,
      [seq.toString(), room, user],
    );
    const position = moved[0];
    if (position === undefined) throw new Error("markRead updated no row");
    return { readSeq: BigInt(position.read_seq), headSeq: BigInt(row.head_seq) };
  }

  /** The implicit policy's room creation: public, `user` its joined owner; nothing if it exists. */
  async #createOnFirstUse(em: EntityManager, room: string, user: string): Promise<void> {
    // Direct rooms' ids are kept for direct rooms (as in parley_store_chat_batch).
    if (room.startsWith("dm:")) return;
    await em.execute(
      `with created as (
         insert into rooms (id, kind, created_by) values (?, ?, ?)
         on conflict (id) do nothing
         returning id
       )
       insert into room_members (room_id, user_id, state, role)
       select id, ?, ?, ? from created`,
      [room, RoomKind.PUBLIC, user, user, MembershipState.JOINED, RoomRole.OWNER],
    );
  }
}

const REFUSED: StoredOutcome = { kind: "refused" };
