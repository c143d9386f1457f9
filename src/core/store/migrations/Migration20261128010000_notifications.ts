import { Migration } from "@mikro-orm/migrations";

/**
 * Notification inboxes, the idempotency record of notification sends, and the
 * webhook outbox with every attempt on record.
 */
export class Migration20261128010000_notifications extends Migration {
  override up(): void {
    this.addSql(`create table "inboxes" ("user_id" text not null, "head_seq" bigint not null default 0, "created_at" timestamptz(6) not null default now(), constraint "inboxes_pkey" primary key ("user_id"));`);
    this.addSql(`create table "notifications" ("id" uuid not null, "recipient_id" text not null, "seq" bigint not null, "sender" text not null, "idempotency_key" text not null, "kind" text not null, "title" text not null, "body" text not null, "data" jsonb null, "created_at" timestamptz(6) not null default now(), "read_at" timestamptz(6) null, constraint "notifications_pkey" primary key ("id"));`);
    this.addSql(`create index "notifications_unread_index" on "notifications" ("recipient_id", "seq") where "read_at" is null;`);
    this.addSql(`alter table "notifications" add constraint "notifications_recipient_seq_unique" unique ("recipient_id", "seq");`);
    this.addSql(`alter table "notifications" add constraint "notifications_send_recipient_unique" unique ("sender", "idempotency_key", "recipient_id");`);
    this.addSql(`create table "notification_sends" ("sender" text not null, "idempotency_key" text not null, "recipients" text[] not null, "created_at" timestamptz(6) not null default now(), constraint "notification_sends_pkey" primary key ("sender", "idempotency_key"));`);
    this.addSql(`create table "webhook_deliveries" ("id" uuid not null, "notification_id" uuid not null, "status" text check ("status" in ('pending', 'delivered', 'failed', 'cancelled')) not null default 'pending', "attempts" int not null default 0, "next_attempt_at" timestamptz(6) not null, "lease_until" timestamptz(6) null, "last_error_category" text null, "created_at" timestamptz(6) not null default now(), "updated_at" timestamptz(6) not null default now(), constraint "webhook_deliveries_pkey" primary key ("id"));`);
    this.addSql(`alter table "webhook_deliveries" add constraint "webhook_deliveries_notification_id_unique" unique ("notification_id");`);
    this.addSql(`create index "webhook_deliveries_due_index" on "webhook_deliveries" ("next_attempt_at") where "status" = 'pending';`);
    this.addSql(`create table "webhook_attempts" ("id" bigserial primary key, "delivery_id" uuid not null, "attempt" int not null, "started_at" timestamptz(6) not null, "duration_ms" int not null, "status_code" int null, "outcome" text check ("outcome" in ('delivered', 'retry', 'failed')) not null, "error_category" text null, "error" text null);`);
    this.addSql(`alter table "webhook_attempts" add constraint "webhook_attempts_delivery_attempt_unique" unique ("delivery_id", "attempt");`);
    this.addSql(`alter table "notifications" add constraint "notifications_recipient_id_foreign" foreign key ("recipient_id") references "inboxes" ("user_id") on update cascade on delete cascade;`);
    this.addSql(`alter table "webhook_deliveries" add constraint "webhook_deliveries_notification_id_foreign" foreign key ("notification_id") references "notifications" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "webhook_attempts" add constraint "webhook_attempts_delivery_id_foreign" foreign key ("delivery_id") references "webhook_deliveries" ("id") on update cascade on delete cascade;`);
  }

  override down(): void {
    this.addSql(`drop table if exists "webhook_attempts" cascade;`);
    this.addSql(`drop table if exists "webhook_deliveries" cascade;`);
    this.addSql(`drop table if exists "notifications" cascade;`);
    this.addSql(`drop table if exists "notification_sends" cascade;`);
    this.addSql(`drop table if exists "inboxes" cascade;`);
  }
}
