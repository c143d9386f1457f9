-- parley_store_chat_batch(messages, notify_origin, allowed_send,
-- implicit_rooms): stores a batch of chat messages (see
-- MessageStore.storeBatch), each only if its sender may send to its room.
-- Kept in the database so that PostgreSQL parses and plans it once per
-- connection instead of once per commit: planning the seven-part statement
-- cost more than running it (about 0.5 ms of 1 ms for a batch of five); with
-- the plan cached a commit costs PostgreSQL half as much CPU.
--
-- This file is the function's current definition: it is applied after the
-- versioned migrations whenever its checksum differs from the one recorded in
-- parley_sql_definitions (src/core/store/sql-definitions.ts). It drops and
-- creates rather than `create or replace`, so that a change of the returned
-- columns (a new ChatMessage field) or of the arguments is an edit of this
-- file alone; every signature it ever had is dropped.
--
-- Who may send is decided in TypeScript, by the room decision table
-- (src/core/access/permissions.ts): `allowed_send` is every standing for
-- which it allows "send", each as kind*100 + state*10 + role (rooms.kind,
-- room_members.state and .role; src/core/access/write-access.ts). A sender
-- without a room_members row, or whose room does not exist, has no standing
-- and is never allowed.
--
-- The log decides, not timing. A membership change (a ban, say) is written by
-- the room service in a transaction that first locks the room's row FOR
-- UPDATE, then bumps head_seq and writes its room_events row and the
-- room_members change. So this function's first statement locks the batch's
-- rooms FOR UPDATE, in id order (two batches cannot deadlock), and only then
-- does the main statement read memberships: in READ COMMITTED a volatile
-- plpgsql function takes a fresh snapshot for each statement, so the main
-- statement sees every change committed by whoever held a room's lock before
-- it (test/core/chat/send-access.test.ts holds a ban's transaction open and
-- checks that the sends waiting on it are refused). A send ordered after a
-- ban in the room's log is refused; one ordered before it is stored before it.
--
-- implicit_rooms (CoreOptions.implicitRooms, a development policy; false in
-- production): a room that does not exist is created on first send, PUBLIC
-- (1), created_by its first sender in batch order, who becomes its JOINED (2)
-- OWNER (4); a sender who is not a member of a PUBLIC room (no row, INVITED,
-- LEFT or KICKED) is joined as a MEMBER (2). The banned stay refused; private
-- and direct rooms get nothing implicitly. Neither writes a room_events row:
-- it is a development convenience, not a membership change anyone asked for.
-- Rooms are created only when the lock found fewer rooms than the batch
-- names, and locked right after, so the main statement still runs with every
-- room of the batch locked.
--
-- A cached (generic) plan is made once, from the statistics of the moment —
-- possibly an empty table, for which a sequential scan looks cheapest and then
-- grows with every stored message. Two things keep the plan right at any size:
--  - each lookup by key is a LATERAL probe per input row (LIMIT 1) or an
--    `= any(array)` index condition, which only an index scan or a scan can
--    serve;
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
-- Steps of the main statement (one atomic unit, no BEGIN/COMMIT round trips):
--  - input:    the batch, with its order (`ord`);
--  - existing: sends whose (sender, client_msg_id) is already stored — their
--              original rows are returned, whatever the sender's standing
--              now, and nothing is written for them;
--  - standing: each other send's room kind and sender's membership;
--  - decided:  'allowed' (its standing is in allowed_send), 'joins' (the
--              implicit policy joins the sender) or 'refused';
--  - fresh:    the sends not refused, numbered per room in batch order;
--  - heads:    each room's head_seq moves up by its count of fresh messages,
--              and its last_event_at to now. Every room here exists and is
--              locked already; the upsert is the form whose plan probes the
--              key per row. A transaction that fails rolls its increment
--              back, which keeps seq gapless;
--  - numbered: each fresh message with its seq = new head - count + position;
--  - inserted: the messages;
--  - members:  each sender's read position moves to their own last message;
--              an implicit join makes the row JOINED MEMBER;
--  - notified: one NOTIFY per room (a TopicAdvanced), delivered at commit.
-- Refused sends come back as 'refused' rows: no seq taken, nothing written,
-- the rest of the batch unaffected.
-- A concurrent batch (another core instance) storing the same (sender,
-- client_msg_id) makes the statement fail with a unique violation; the caller
-- retries, and the retry finds the original.

drop function if exists parley_store_chat_batch(jsonb, text);
drop function if exists parley_store_chat_batch(jsonb, text, int[], boolean);

create function parley_store_chat_batch(messages jsonb, notify_origin text, allowed_send int[], implicit_rooms boolean)
returns table (ord int, kind text, id uuid, room_id text, seq bigint, sender text, body text, client_msg_id text, created_at timestamptz)
language plpgsql
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $body$
#variable_conflict use_column
declare
  locked int;
  named int;
begin
  -- The rooms the batch names are counted only under the implicit policy
  -- (a subquery in a CASE branch not taken is never run).
  select count(*), case when implicit_rooms then (select count(distinct m->>'room_id') from jsonb_array_elements(messages) m) else 0 end
    into locked, named
    from (
      select 1 from rooms r
      where r.id = any (array(select m->>'room_id' from jsonb_array_elements(messages) m))
      order by r.id
      for update
    ) l;

  if implicit_rooms then
    if locked < named then
      with input as (
        select * from jsonb_to_recordset(messages) as t(ord int, room_id text, sender text, client_msg_id text)
      ),
      firsts as (
        -- Each room's first sender in batch order, not counting repeats of
        -- messages already stored (they write nothing).
        select distinct on (i.room_id) i.room_id, i.sender
        from input i
        left join lateral (
          select 1 as found from chat_messages c
          where c.sender = i.sender and c.client_msg_id = i.client_msg_id
          limit 1
        ) s on true
        -- A direct room's id ("dm:...") is never made on first use: a public
        -- room there would stand in the way of that conversation.
        where s.found is null and i.room_id not like 'dm:%'
        order by i.room_id, i.ord
      ),
      created as (
        insert into rooms as r (id, kind, created_by)
        select f.room_id, 1, f.sender from firsts f order by f.room_id
        on conflict (id) do nothing
        returning r.id, r.created_by
      )
      insert into room_members (room_id, user_id, state, role)
      select c.id, c.created_by, 2, 4 from created c;

      -- Rooms made here are ours; rooms another batch made meanwhile are now
      -- committed and visible to this statement's snapshot.
      perform 1 from rooms r
      where r.id = any (array(select m->>'room_id' from jsonb_array_elements(messages) m))
      order by r.id
      for update;
    end if;
  end if;

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
  standing as (
    select i.*, s.room_kind, s.member_state, s.code
    from input i
    left join lateral (
      select r.kind as room_kind, rm.state as member_state, r.kind * 100 + rm.state * 10 + rm.role as code
      from rooms r
      left join room_members rm on rm.room_id = r.id and rm.user_id = i.sender
      where r.id = i.room_id
      limit 1
    ) s on true
    where not exists (select 1 from existing e where e.ord = i.ord)
  ),
  decided as (
    select st.*,
           case
             when st.code = any (allowed_send) then 'allowed'
             -- The implicit policy: a public room (1), a sender neither
             -- JOINED (2) nor BANNED (5); write-access.ts joinsImplicitly.
             when implicit_rooms and st.room_kind = 1 and coalesce(st.member_state, 0) not in (2, 5) then 'joins'
             else 'refused'
           end as verdict
    from standing st
  ),
  fresh as (
    select d.*,
           row_number() over (partition by d.room_id order by d.ord) as position,
           count(*) over (partition by d.room_id) as room_count
    from decided d
    where d.verdict <> 'refused'
  ),
  heads as (
    insert into rooms as r (id, head_seq)
    select f.room_id, max(f.room_count) from fresh f group by f.room_id order by f.room_id
    on conflict (id) do update set head_seq = r.head_seq + excluded.head_seq, last_event_at = now()
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
    -- An allowed sender has a JOINED row: only its read position moves. An
    -- implicit joiner's row (if any) becomes JOINED (2) MEMBER (2).
    insert into room_members as rm (room_id, user_id, read_seq, state, role)
    select n.room_id, n.sender, max(n.seq), 2, 2 from inserted n group by n.room_id, n.sender order by n.room_id, n.sender
    on conflict (room_id, user_id) do update
      set read_seq = greatest(rm.read_seq, excluded.read_seq), updated_at = now(),
          role = case when rm.state = 2 then rm.role else excluded.role end,
          state = excluded.state
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
  select d.ord, 'refused'::text, null::uuid, d.room_id, null::bigint, d.sender, null::text, d.client_msg_id, null::timestamptz
    from decided d where d.verdict = 'refused'
  union all
  -- Never a row, but it makes PostgreSQL evaluate "notified" (a plain SELECT
  -- part runs only when read, and a count cannot be folded away).
  select null::int, null::text, null::uuid, null::text, null::bigint, null::text, null::text, null::text, null::timestamptz
    from (select count(*) as n from notified) c where c.n < 0;
end
$body$;
