import type { EntityManager } from "@mikro-orm/postgresql";
import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import { boundQuery } from "../store/bound-query.js";
import { inputRow, MESSAGE_COLUMNS, type MessageRow, type NewMessage, toChatMessage } from "../store/chat-tables.js";

export type { NewMessage };

/** The NOTIFY channel that tells other core instances a room moved (parley_store_chat_batch notifies on it). */
export const CHAT_CHANNEL = "parley_chat";

/** What storing one NewMessage came to. */
export type StoredOutcome =
  | { readonly kind: "stored"; readonly message: ChatMessage }
  | { readonly kind: "duplicate"; readonly message: ChatMessage };

/**
 * Stores a batch of messages in one statement (one round trip, atomic by
 * itself, the batch bound as a parameter): parley_store_chat_batch, defined
 * in src/core/store/sql/parley_store_chat_batch.sql, which explains its
 * steps and why it lives in the database (a plan made once per connection).
 */
const STORE_BATCH_SQL = "select * from parley_store_chat_batch(?::jsonb, ?)";

/** SQL of chat messages. Every method runs on the caller's unit of work. */
export class MessageStore {
  constructor(
    /** Identifies this core instance in NOTIFY payloads. */
    readonly origin: string,
  ) {}

  /**
   * Stores `batch` (no two entries with the same sender and client_msg_id)
   * and returns one outcome per entry, in batch order.
   */
  async storeBatch(em: EntityManager, batch: readonly NewMessage[]): Promise<StoredOutcome[]> {
    const input = batch.map(inputRow);
    const rows = await boundQuery<MessageRow>(em, STORE_BATCH_SQL, [JSON.stringify(input), this.origin]);
    const outcomes = new Array<StoredOutcome | undefined>(batch.length);
    for (const row of rows) {
      if (row.ord === undefined || row.kind === undefined) continue;
      outcomes[row.ord] = { kind: row.kind, message: toChatMessage(row) };
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
   * Moves `user`'s read position in `room` up to `seq` (never down), creating
   * the room and the membership on first use. Returns the position and head.
   */
  async markRead(em: EntityManager, room: string, user: string, seq: bigint): Promise<{ readSeq: bigint; headSeq: bigint }> {
    const rows = await em.execute<{ read_seq: string; head_seq: string }[]>(
      `with room as (
         insert into rooms as r (id) values (?)
         on conflict (id) do update set head_seq = r.head_seq
         returning r.head_seq
       )
       insert into room_members as rm (room_id, user_id, read_seq)
       values (?, ?, ?)
       on conflict (room_id, user_id) do update
         set read_seq = greatest(rm.read_seq, excluded.read_seq), updated_at = now()
       returning rm.read_seq, (select head_seq from room) as head_seq`,
      [room, room, user, seq.toString()],
    );
    const row = rows[0];
    if (row === undefined) throw new Error("markRead returned no row");
    return { readSeq: BigInt(row.read_seq), headSeq: BigInt(row.head_seq) };
  }
}
