import { defineEntity } from "@mikro-orm/core";
import { ChatMessageEntity, RoomEntity, RoomEventEntity, RoomMemberEntity } from "./chat-tables.js";

export { ChatMessageEntity, RoomEntity };

/**
 * The schema, as MikroORM entities. Migrations in ./migrations are the
 * deployed truth; a test checks that they and these entities agree.
 *
 * Sequence numbers are bigint; timestamps are timestamptz(6) (microseconds)
 * and are read as text so that no precision is lost on the way to
 * google.protobuf.Timestamp.
 *
 * The chat tables' entities are in chat-tables.ts, beside the mapping of a
 * chat_messages row to a ChatMessage: a new message column is one edit there.
 */

/** One per user with notifications: the head of their inbox's seq. */
const InboxEntity = defineEntity({
  name: "Inbox",
  tableName: "inboxes",
  properties: (p) => ({
    userId: p.string().columnType("text").fieldName("user_id").primary(),
    /** Highest seq assigned in this inbox. */
    headSeq: p.bigint().fieldName("head_seq").default(0),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
  }),
});

/** The idempotency record of a SendNotification: one per (sender, key), forever. */
const NotificationSendEntity = defineEntity({
  name: "NotificationSend",
  tableName: "notification_sends",
  properties: (p) => ({
    sender: p.string().columnType("text").primary(),
    idempotencyKey: p.string().columnType("text").fieldName("idempotency_key").primary(),
    /** The recipients in request order: a repeat answers in this order. */
    recipients: p.array().columnType("text[]"),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
  }),
});

const NotificationEntity = defineEntity({
  name: "NotificationRow",
  tableName: "notifications",
  uniques: [
    { name: "notifications_recipient_seq_unique", properties: ["recipient", "seq"] },
    { name: "notifications_send_recipient_unique", properties: ["sender", "idempotencyKey", "recipient"] },
  ],
  indexes: [
    {
      name: "notifications_unread_index",
      expression: 'create index "notifications_unread_index" on "notifications" ("recipient_id", "seq") where "read_at" is null',
    },
  ],
  properties: (p) => ({
    id: p.uuid().primary(),
    recipient: p.manyToOne(InboxEntity).fieldName("recipient_id").deleteRule("cascade"),
    seq: p.bigint(),
    sender: p.string().columnType("text"),
    idempotencyKey: p.string().columnType("text").fieldName("idempotency_key"),
    kind: p.string().columnType("text"),
    title: p.string().columnType("text"),
    body: p.string().columnType("text"),
    data: p.json().nullable(),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
    readAt: p.datetime(6).fieldName("read_at").nullable(),
  }),
});

/** The webhook outbox: one row per notification to deliver by webhook. */
const WebhookDeliveryEntity = defineEntity({
  name: "WebhookDelivery",
  tableName: "webhook_deliveries",
  indexes: [
    {
      name: "webhook_deliveries_due_index",
      expression: 'create index "webhook_deliveries_due_index" on "webhook_deliveries" ("next_attempt_at") where "status" = \'pending\'',
    },
  ],
  properties: (p) => ({
    /** Also the `delivery_id` the receiver sees; stable across retries. */
    id: p.uuid().primary(),
    notification: p.oneToOne(NotificationEntity).fieldName("notification_id").owner().unique().deleteRule("cascade"),
    /** pending → delivered | failed | cancelled (read live or acknowledged first). */
    status: p.enum(["pending", "delivered", "failed", "cancelled"]).default("pending"),
    attempts: p.integer().default(0),
    nextAttemptAt: p.datetime(6).fieldName("next_attempt_at"),
    /** While set and in the future, one dispatcher owns the delivery. */
    leaseUntil: p.datetime(6).fieldName("lease_until").nullable(),
    lastErrorCategory: p.string().columnType("text").fieldName("last_error_category").nullable(),
    /** When the current retry window opened: made, or re-driven after failing. */
    retryFrom: p.datetime(6).fieldName("retry_from").defaultRaw("now()"),
    /** Attempts made before the current retry window. */
    retryBase: p.integer().fieldName("retry_base").default(0),
    createdAt: p.datetime(6).fieldName("created_at").defaultRaw("now()"),
    updatedAt: p.datetime(6).fieldName("updated_at").defaultRaw("now()"),
  }),
});

/** Every webhook attempt, with its outcome ('in_flight' from its claim until then). */
const WebhookAttemptEntity = defineEntity({
  name: "WebhookAttempt",
  tableName: "webhook_attempts",
  uniques: [{ name: "webhook_attempts_delivery_attempt_unique", properties: ["delivery", "attempt"] }],
  properties: (p) => ({
    id: p.bigint().primary().autoincrement(),
    delivery: p.manyToOne(WebhookDeliveryEntity).fieldName("delivery_id").deleteRule("cascade"),
    attempt: p.integer(),
    startedAt: p.datetime(6).fieldName("started_at"),
    durationMs: p.integer().fieldName("duration_ms"),
    statusCode: p.integer().fieldName("status_code").nullable(),
    outcome: p.enum(["in_flight", "delivered", "retry", "failed"]),
    errorCategory: p.string().columnType("text").fieldName("error_category").nullable(),
    error: p.string().columnType("text").nullable(),
  }),
});

export const ENTITIES = [
  RoomEntity,
  RoomMemberEntity,
  RoomEventEntity,
  ChatMessageEntity,
  InboxEntity,
  NotificationSendEntity,
  NotificationEntity,
  WebhookDeliveryEntity,
  WebhookAttemptEntity,
];
