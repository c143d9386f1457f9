import { Migration } from "@mikro-orm/migrations";

/** Rooms, membership with read positions, and chat messages. */
export class Migration20261128000000_chat extends Migration {
  override up(): void {
    this.addSql(`create table "rooms" ("id" text not null, "head_seq" bigint not null default 0, "created_at" timestamptz(6) not null default now(), constraint "rooms_pkey" primary key ("id"));`);
    this.addSql(`create table "chat_messages" ("id" uuid not null, "room_id" text not null, "seq" bigint not null, "sender" text not null, "body" text not null, "client_msg_id" text not null, "created_at" timestamptz(6) not null default now(), constraint "chat_messages_pkey" primary key ("id"));`);
    this.addSql(`alter table "chat_messages" add constraint "chat_messages_room_seq_unique" unique ("room_id", "seq");`);
    this.addSql(`alter table "chat_messages" add constraint "chat_messages_sender_client_msg_id_unique" unique ("sender", "client_msg_id");`);
    this.addSql(`create table "room_members" ("room_id" text not null, "user_id" text not null, "read_seq" bigint not null default 0, "updated_at" timestamptz(6) not null default now(), constraint "room_members_pkey" primary key ("room_id", "user_id"));`);
    this.addSql(`alter table "chat_messages" add constraint "chat_messages_room_id_foreign" foreign key ("room_id") references "rooms" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "room_members" add constraint "room_members_room_id_foreign" foreign key ("room_id") references "rooms" ("id") on update cascade on delete cascade;`);
  }

  override down(): void {
    this.addSql(`drop table if exists "room_members" cascade;`);
    this.addSql(`drop table if exists "chat_messages" cascade;`);
    this.addSql(`drop table if exists "rooms" cascade;`);
  }
}
