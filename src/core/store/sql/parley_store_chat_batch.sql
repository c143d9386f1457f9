-- parley_store_chat_batch(messages, notify_origin): stores a batch of chat
-- messages in one statement (see MessageStore.storeBatch). Kept in the
-- database so that PostgreSQL parses and plans it once per connection instead
-- of once per commit: planning the seven-part statement cost more than running
-- it (about 0.5 ms of 1 ms for a batch of five); with the plan cached a commit
-- costs PostgreSQL half as much CPU.
--
-- This file is the function's current definition: it is applied after the
-- versioned migrations whenever its checksum differs from the one recorded in
-- parley_sql_definitions (src/core/store/sql-definitions.ts). It drops and
-- creates rather than `create or replace`, so that a change of the returned
-- columns (a new ChatMessage field) is an edit of this file alone.
--
-- A cached (generic) plan is made once, from the statistics of the moment —
-- possibly an empty table, for which a sequential scan looks cheapest and then
-- grows with every stored message. Two things keep the plan right at any size:
--  - the idempotency lookup is a LATERAL probe per input row (LIMIT 1), which
--    only an index scan on (sender, client_msg_id) or a scan can serve;
--  - `enable_seqscan = off` for the function's own statements rules the scan out.
--
-- The plan is also made without knowing the batch's size: it estimates one row
-- for each step, so a join of the inserted rows back to the batch (to find each
-- row's place, "ord") would be a nested loop comparing every inserted row with
-- every batch row (61,000 uuid comparisons, 12 of 26 ms for 250 messages). So
-- each fresh message is numbered once ("numbered"), inserted from there and
-- answered from there. Its created_at is now(), the transaction's start,
-- written explicitly so that the answer and the row cannot differ.
--
-- Steps, in one statement (one atomic unit, no BEGIN/COMMIT round trips):
--  - input:    the batch, with its order (`ord`);
--  - existing: sends whose (sender, client_msg_id) is already stored — their
--              original rows are returned, nothing is written for them;
--  - fresh:    the rest, numbered per room in batch order;
--  - heads:    each room's head_seq moves up by its count of fresh messages
--              (upsert: rooms come into being on first use). Rooms are locked
--              in id order, so concurrent batches cannot deadlock, and the row
--              lock serializes writers per room, which keeps seq gapless: a
--              transaction that fails rolls its increment back;
--  - numbered: each fresh message with its seq = new head - count + position;
--  - inserted: the messages;
--  - members:  each sender's read position moves to their own last message;
--  - notified: one NOTIFY per room (a TopicAdvanced), delivered at commit.
-- A concurrent batch (another core instance) storing the same (sender,
-- client_msg_id) makes the statement fail with a unique violation; the caller
-- retries, and the retry finds the original.

drop function if exists parley_store_chat_batch(jsonb, text);

create function parley_store_chat_batch(messages jsonb, notify_origin text)
returns table (ord int, kind text, id uuid, room_id text, seq bigint, sender text, body text, client_msg_id text, created_at timestamptz)
language plpgsql
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $body$
#variable_conflict use_column
begin
  return query
  with input as (
    select * from jsonb_to_recordset(messages)
      as t(ord int, id uuid, room_id text, sender text, body text, client_msg_id text)
  ),
  existing as (
    select i.ord, m.id, m.room_id, m.seq, m.sender, m.body, m.client_msg_id, m.created_at
    from input i
    cross join lateral (
      select * from chat_messages c
      where c.sender = i.sender and c.client_msg_id = i.client_msg_id
      limit 1
    ) m
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
    select f.room_id, max(f.room_count) from fresh f group by f.room_id order by f.room_id
    on conflict (id) do update set head_seq = r.head_seq + excluded.head_seq
    returning r.id, r.head_seq
  ),
  numbered as (
    select f.ord, f.id, f.room_id, h.head_seq - f.room_count + f.position as seq, f.sender, f.body, f.client_msg_id
    from fresh f join heads h on h.id = f.room_id
  ),
  inserted as (
    insert into chat_messages as cm (id, room_id, seq, sender, body, client_msg_id, created_at)
    select n.id, n.room_id, n.seq, n.sender, n.body, n.client_msg_id, now()
    from numbered n
    returning cm.room_id, cm.seq, cm.sender
  ),
  members as (
    insert into room_members as rm (room_id, user_id, read_seq)
    select n.room_id, n.sender, max(n.seq) from inserted n group by n.room_id, n.sender order by n.room_id, n.sender
    on conflict (room_id, user_id) do update
      set read_seq = greatest(rm.read_seq, excluded.read_seq), updated_at = now()
  ),
  notified as (
    select pg_notify('parley_chat', json_build_object(
             'topic', h.id,
             'from', (h.head_seq - max(f.room_count) + 1)::text,
             'to', h.head_seq::text,
             'origin', notify_origin)::text)
    from heads h join fresh f on f.room_id = h.id
    group by h.id, h.head_seq
  )
  select n.ord, 'stored'::text, n.id, n.room_id, n.seq, n.sender, n.body, n.client_msg_id, now()
    from numbered n
  union all
  select e.ord, 'duplicate'::text, e.id, e.room_id, e.seq, e.sender, e.body, e.client_msg_id, e.created_at
    from existing e
  union all
  -- Never a row, but it makes PostgreSQL evaluate "notified" (a plain SELECT
  -- part runs only when read, and a count cannot be folded away).
  select null::int, null::text, null::uuid, null::text, null::bigint, null::text, null::text, null::text, null::timestamptz
    from (select count(*) as n from notified) c where c.n < 0;
end
$body$;
