import { create } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import { type ChatMessage, ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import { timestampFromPg } from "../db/pg-timestamp.js";

/** The NOTIFY channel that tells other core instances a room moved. */
export const CHAT_CHANNEL = "parley_chat";

/** One send, validated and authenticated, ready to be stored. */
export interface NewMessage {
  /** Pre-generated id, used if the message is new. */
  readonly id: string;
  readonly room: string;
  readonly sender: string;
  readonly body: string;
  readonly clientMsgId: string;
}

/** What storing one NewMessage came to. */
export type StoredOutcome =
  | { readonly kind: "stored"; readonly message: ChatMessage }
  | { readonly kind: "duplicate"; readonly message: ChatMessage };

interface MessageRow {
  ord?: number;
  kind?: "stored" | "duplicate";
  id: string;
  room_id: string;
  seq: string;
  sender: string;
  body: string;
  client_msg_id: string;
  created_at: string;
}

/**
 * Stores a batch of messages in one statement (one round trip), inside the
 * caller's transaction:
 *  - input:    the batch, with its order (`ord`);
 *  - existing: sends whose (sender, client_msg_id) is already stored — their
 *              original rows are returned, nothing is written for them;
 *  - fresh:    the rest, numbered per room in batch order;
 *  - heads:    each room's head_seq moves up by its count of fresh messages
 *              (upsert: rooms come into being on first use). Rooms are
 *              locked in id order, so concurrent batches cannot deadlock, and
 *              the row lock serializes writers per room, which keeps seq
 *              gapless: a transaction that fails rolls its increment back;
 *  - inserted: the messages, seq = new head - count + position;
 *  - members:  each sender's read position moves to their own last message;
 *  - notified: one NOTIFY per room (a TopicAdvanced), delivered by PostgreSQL at commit.
 * A concurrent batch (another core instance) storing the same
 * (sender, client_msg_id) makes this statement fail with a unique violation;
 * the caller retries the transaction, which then finds the original.
 */
const STORE_BATCH_SQL = `
with input as (
  select * from jsonb_to_recordset(?::jsonb)
    as t(ord int, id uuid, room_id text, sender text, body text, client_msg_id text)
),
existing as (
  select i.ord, m.id, m.room_id, m.seq, m.sender, m.body, m.client_msg_id, m.created_at
  from input i
  join chat_messages m on m.sender = i.sender and m.client_msg_id = i.client_msg_id
),
fresh as (
  select i.*,
         row_number() over (partition by i.room_id order by i.ord) as position,
         count(*) over (partition by i.room_id) as room_count
  from input i
  where not exists (select 1 from existing e where e.ord = i.ord)
),
heads as (
  insert into rooms as r (id, head_seq)
  select room_id, max(room_count) from fresh group by room_id order by room_id
  on conflict (id) do update set head_seq = r.head_seq + excluded.head_seq
  returning r.id, r.head_seq
),
inserted as (
  insert into chat_messages (id, room_id, seq, sender, body, client_msg_id)
  select f.id, f.room_id, h.head_seq - f.room_count + f.position, f.sender, f.body, f.client_msg_id
  from fresh f join heads h on h.id = f.room_id
  returning id, room_id, seq, sender, body, client_msg_id, created_at
),
members as (
  insert into room_members as rm (room_id, user_id, read_seq)
  select room_id, sender, max(seq) from inserted group by room_id, sender order by room_id, sender
  on conflict (room_id, user_id) do update
    set read_seq = greatest(rm.read_seq, excluded.read_seq), updated_at = now()
),
notified as (
  select pg_notify('${CHAT_CHANNEL}', json_build_object(
           'topic', h.id,
           'from', (h.head_seq - max(f.room_count) + 1)::text,
           'to', h.head_seq::text,
           'origin', ?::text)::text)
  from heads h join fresh f on f.room_id = h.id
  group by h.id, h.head_seq
)
select f.ord, 'stored' as kind, m.id, m.room_id, m.seq, m.sender, m.body, m.client_msg_id, m.created_at
  from inserted m join fresh f on f.id = m.id
union all
select e.ord, 'duplicate' as kind, e.id, e.room_id, e.seq, e.sender, e.body, e.client_msg_id, e.created_at
  from existing e
union all
-- Never a row, but it makes PostgreSQL evaluate \`notified\` (a plain SELECT
-- CTE runs only when read, and a count cannot be folded away).
select null, null, null, null, null, null, null, null, null
  from (select count(*) as n from notified) c where c.n < 0
`;

const MESSAGE_COLUMNS = "id, room_id, seq, sender, body, client_msg_id, created_at";

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
    const input = batch.map((m, ord) => ({ ord, id: m.id, room_id: m.room, sender: m.sender, body: m.body, client_msg_id: m.clientMsgId }));
    const rows = await em.execute<MessageRow[]>(STORE_BATCH_SQL, [JSON.stringify(input), this.origin]);
    const outcomes = new Array<StoredOutcome | undefined>(batch.length);
    for (const row of rows) {
      if (row.ord === undefined || row.kind === undefined) continue;
      outcomes[row.ord] = { kind: row.kind, message: toChatMessage(row) };
    }
    return outcomes.map((outcome, ord) => {
      if (outcome === undefined) throw new Error(`batch entry ${ord} has no outcome`);
      return outcome;
    });
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

function toChatMessage(row: MessageRow): ChatMessage {
  return create(ChatMessageSchema, {
    id: row.id,
    room: row.room_id,
    seq: BigInt(row.seq),
    sender: row.sender,
    body: row.body,
    clientMsgId: row.client_msg_id,
    createdAt: timestampFromPg(row.created_at),
  });
}
