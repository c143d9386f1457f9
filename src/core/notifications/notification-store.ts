import type { JsonObject } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Notification } from "../../../gen/parley/v1/notifications_pb.js";
import { NOTIFICATION_COLUMNS, notificationFromRow, type NotificationRow } from "./notification-row.js";

/** The NOTIFY channel that tells other core instances an inbox moved. */
export const INBOX_CHANNEL = "parley_inbox";

/** One SendNotification, validated and authenticated. */
export interface NotificationSend {
  readonly sender: string;
  readonly idempotencyKey: string;
  /** Distinct user ids, in request order. */
  readonly recipients: readonly string[];
  readonly kind: string;
  readonly title: string;
  readonly body: string;
  readonly data: JsonObject | undefined;
}

export type SendOutcome =
  | { readonly kind: "stored"; readonly notifications: Notification[] }
  | { readonly kind: "duplicate"; readonly notifications: Notification[]; readonly original: StoredSend };

/** What the idempotency record remembers of the original send. */
interface StoredSend {
  readonly recipients: readonly string[];
}

interface OutcomeRow extends NotificationRow {
  ord: number;
  idx: string;
  outcome: "stored" | "duplicate";
  original_recipients: string[] | null;
}

/**
 * Stores a batch of sends in one statement, inside the caller's transaction,
 * in the same shape as chat's batch insert (the function
 * parley_store_chat_batch, in src/core/store/sql/parley_store_chat_batch.sql):
 *  - claimed:  the idempotency record (sender, key) of each new send; a send
 *              whose record exists is a repeat and writes nothing;
 *  - items:    one row per (send, recipient), numbered per recipient;
 *  - heads:    each recipient's inbox head moves up by their count (upsert,
 *              locked in user order): per-recipient seqs stay gapless;
 *  - inserted: the notifications;
 *  - outbox:   a pending webhook delivery per notification, due after the
 *              grace period (only when a webhook is configured);
 *  - notified: one NOTIFY per inbox, delivered at commit.
 */
const STORE_SENDS_SQL = `
with sends as (
  select * from jsonb_to_recordset(?::jsonb)
    as s(ord int, sender text, idempotency_key text, recipients text[], kind text, title text, body text, data jsonb)
),
claimed as (
  insert into notification_sends (sender, idempotency_key, recipients)
  select sender, idempotency_key, recipients from sends order by sender, idempotency_key
  on conflict do nothing
  returning sender, idempotency_key
),
items as (
  select s.ord, r.idx, r.recipient, gen_random_uuid() as id, s.sender, s.idempotency_key, s.kind, s.title, s.body, s.data
  from sends s
  join claimed c on c.sender = s.sender and c.idempotency_key = s.idempotency_key
  cross join lateral unnest(s.recipients) with ordinality as r(recipient, idx)
),
numbered as (
  select i.*,
         row_number() over (partition by i.recipient order by i.ord, i.idx) as position,
         count(*) over (partition by i.recipient) as inbox_count
  from items i
),
heads as (
  insert into inboxes as ib (user_id, head_seq)
  select recipient, max(inbox_count) from numbered group by recipient order by recipient
  on conflict (user_id) do update set head_seq = ib.head_seq + excluded.head_seq
  returning ib.user_id, ib.head_seq
),
inserted as (
  insert into notifications (id, recipient_id, seq, sender, idempotency_key, kind, title, body, data)
  select n.id, n.recipient, h.head_seq - n.inbox_count + n.position, n.sender, n.idempotency_key, n.kind, n.title, n.body, n.data
  from numbered n join heads h on h.user_id = n.recipient
  returning ${NOTIFICATION_COLUMNS}
),
outbox as (
  insert into webhook_deliveries (id, notification_id, next_attempt_at)
  select gen_random_uuid(), i.id, now() + make_interval(secs => ?::double precision / 1000)
  from inserted i where ?::boolean
),
notified as (
  select pg_notify('${INBOX_CHANNEL}', json_build_object(
           'topic', h.user_id,
           'from', (h.head_seq - max(n.inbox_count) + 1)::text,
           'to', h.head_seq::text,
           'origin', ?::text)::text)
  from heads h join numbered n on n.recipient = h.user_id
  group by h.user_id, h.head_seq
)
select n.ord, n.idx::text as idx, 'stored' as outcome, null::text[] as original_recipients, i.*
  from inserted i join numbered n on n.id = i.id
union all
select s.ord, array_position(ns.recipients, x.recipient_id)::text, 'duplicate', ns.recipients,
       x.id, x.recipient_id, x.seq, x.sender, x.kind, x.title, x.body, x.data, x.created_at, x.read_at
  from sends s
  join notification_sends ns on ns.sender = s.sender and ns.idempotency_key = s.idempotency_key
  left join notifications x on x.sender = s.sender and x.idempotency_key = s.idempotency_key
  where not exists (select 1 from claimed c where c.sender = s.sender and c.idempotency_key = s.idempotency_key)
union all
-- Never a row; makes PostgreSQL evaluate \`notified\` (see parley_store_chat_batch).
select null, null, null, null, null, null, null, null, null, null, null, null, null, null
  from (select count(*) as n from notified) c where c.n < 0
`;

export interface NotificationStoreOptions {
  /** This core instance, for NOTIFY payloads. */
  readonly origin: string;
  /** When set, every stored notification gets a webhook delivery due after this grace. */
  readonly webhookGraceMs: number | undefined;
}

/** SQL of notification inboxes. Every method runs on the caller's unit of work. */
export class NotificationStore {
  constructor(readonly options: NotificationStoreOptions) {}

  /** Stores `sends` (no two with the same sender and key); one outcome per send, in order. */
  async storeSends(em: EntityManager, sends: readonly NotificationSend[]): Promise<SendOutcome[]> {
    const input = sends.map((send, ord) => ({
      ord,
      sender: send.sender,
      idempotency_key: send.idempotencyKey,
      recipients: send.recipients,
      kind: send.kind,
      title: send.title,
      body: send.body,
      data: send.data ?? null,
    }));
    const webhook = this.options.webhookGraceMs !== undefined;
    const rows = await em.execute<OutcomeRow[]>(STORE_SENDS_SQL, [
      JSON.stringify(input),
      this.options.webhookGraceMs ?? 0,
      webhook,
      this.options.origin,
    ]);
    const stored = sends.map(() => ({ rows: [] as OutcomeRow[], duplicate: false, original: [] as string[] }));
    for (const row of rows) {
      const slot = stored[row.ord];
      if (slot === undefined) continue;
      slot.duplicate = row.outcome === "duplicate";
      if (row.original_recipients) slot.original = row.original_recipients;
      // A repeat whose original is not visible yet comes back with no id.
      if ((row.id as string | null) !== null) slot.rows.push(row);
    }
    return stored.map((slot): SendOutcome => {
      const notifications = slot.rows.sort((a, b) => Number(a.idx) - Number(b.idx)).map(notificationFromRow);
      return slot.duplicate
        ? { kind: "duplicate", notifications, original: { recipients: slot.original } }
        : { kind: "stored", notifications };
    });
  }

  /** Notifications of `user` with seq > afterSeq, ascending, at most `limit`. */
  async readAfter(em: EntityManager, user: string, afterSeq: bigint, limit: number, unreadOnly = false): Promise<Notification[]> {
    const rows = await em.execute<NotificationRow[]>(
      `select ${NOTIFICATION_COLUMNS} from notifications
        where recipient_id = ? and seq > ? ${unreadOnly ? "and read_at is null" : ""}
        order by seq limit ?`,
      [user, afterSeq.toString(), limit],
    );
    return rows.map(notificationFromRow);
  }

  /** Notifications of `user` with seq < beforeSeq (newest when 0), descending. */
  async readBefore(em: EntityManager, user: string, beforeSeq: bigint, limit: number, unreadOnly = false): Promise<Notification[]> {
    const bound = beforeSeq === 0n ? "" : "and seq < ?";
    const params = beforeSeq === 0n ? [user, limit] : [user, beforeSeq.toString(), limit];
    const rows = await em.execute<NotificationRow[]>(
      `select ${NOTIFICATION_COLUMNS} from notifications
        where recipient_id = ? ${bound} ${unreadOnly ? "and read_at is null" : ""}
        order by seq desc limit ?`,
      params,
    );
    return rows.map(notificationFromRow);
  }

  async readRange(em: EntityManager, user: string, from: bigint, to: bigint): Promise<Notification[]> {
    const rows = await em.execute<NotificationRow[]>(
      `select ${NOTIFICATION_COLUMNS} from notifications where recipient_id = ? and seq between ? and ? order by seq`,
      [user, from.toString(), to.toString()],
    );
    return rows.map(notificationFromRow);
  }

  /** The inbox head and unread count of `user` (0 and 0 for a user never notified). */
  async counts(em: EntityManager, user: string): Promise<{ headSeq: bigint; unreadCount: bigint }> {
    const rows = await em.execute<{ head_seq: string | null; unread: string }[]>(
      `select (select head_seq from inboxes where user_id = ?) as head_seq,
              (select count(*) from notifications where recipient_id = ? and read_at is null) as unread`,
      [user, user],
    );
    const row = rows[0];
    return { headSeq: BigInt(row?.head_seq ?? "0"), unreadCount: BigInt(row?.unread ?? "0") };
  }

  /**
   * Which of `ids` are in `user`'s inbox. Another user's notification and an
   * id that does not exist are both simply absent: the caller cannot tell
   * them apart, from the answer or from the work done.
   */
  async inInbox(em: EntityManager, user: string, ids: readonly string[]): Promise<Set<string>> {
    const rows = await em.execute<{ id: string }[]>(
      `select id from notifications where recipient_id = ? and id in (select jsonb_array_elements_text(?::jsonb)::uuid)`,
      [user, JSON.stringify(ids)],
    );
    return new Set(rows.map((row) => row.id));
  }

  /**
   * Marks `user`'s unread notifications read: those with seq <= upToSeq and
   * those in `ids`. Their pending webhook deliveries are cancelled: the user
   * has seen them. Returns how many changed.
   */
  async acknowledge(em: EntityManager, user: string, upToSeq: bigint, ids: readonly string[]): Promise<bigint> {
    const rows = await em.execute<{ acked: string }[]>(
      `with acked as (
         update notifications set read_at = now()
          where recipient_id = ? and read_at is null
            and (seq <= ? or id in (select jsonb_array_elements_text(?::jsonb)::uuid))
          returning id
       ),
       cancelled as (
         update webhook_deliveries set status = 'cancelled', updated_at = now()
          where status = 'pending' and notification_id in (select id from acked)
       )
       select count(*) as acked from acked`,
      [user, upToSeq.toString(), JSON.stringify(ids)],
    );
    return BigInt(rows[0]?.acked ?? "0");
  }

  /** Notifications delivered to a live subscriber need no webhook. */
  async cancelWebhooks(em: EntityManager, notificationIds: readonly string[]): Promise<void> {
    await em.execute(
      `update webhook_deliveries set status = 'cancelled', updated_at = now()
        where status = 'pending' and notification_id in (select jsonb_array_elements_text(?::jsonb)::uuid)`,
      [JSON.stringify(notificationIds)],
    );
  }
}
