-- The room model: a kind, a name, a topic and a creator per room; a
-- membership state and a role per member. Numbers are the values of the
-- RoomKind, MembershipState and RoomRole enums of proto/parley/v1/rooms.proto.
--
-- What existing data becomes: every room was readable and writable by any
-- user, so it becomes a PUBLIC room (1), which anyone may still read and
-- join. Its members are every user with a read position in it and every
-- user who sent to it, JOINED (2) as MEMBER (2), a sender's read position at
-- least their last message (as the store keeps it). Its first sender, or in
-- a room without messages its first reader, becomes its creator and OWNER
-- (4), so that every room has someone who can manage it. Nothing is lost:
-- no row is removed.
--
-- The column defaults keep today's behaviour for rooms that the store still
-- creates on first send, until the room service creates rooms: public, its
-- users joined members.
alter table "rooms" add column "kind" smallint not null default 1;
alter table "rooms" add column "name" text not null default '';
alter table "rooms" add column "topic" text not null default '';
alter table "rooms" add column "created_by" text not null default '';
alter table "room_members" add column "state" smallint not null default 2;
alter table "room_members" add column "role" smallint not null default 2;

insert into "room_members" ("room_id", "user_id", "read_seq")
  select "room_id", "sender", max("seq") from "chat_messages" group by "room_id", "sender"
  on conflict ("room_id", "user_id") do update set "read_seq" = greatest("room_members"."read_seq", excluded."read_seq");

update "rooms" as r set "created_by" = f."sender"
  from (select distinct on ("room_id") "room_id", "sender" from "chat_messages" order by "room_id", "seq") as f
  where f."room_id" = r."id";

update "rooms" as r set "created_by" = f."user_id"
  from (select distinct on ("room_id") "room_id", "user_id" from "room_members" order by "room_id", "updated_at", "user_id") as f
  where f."room_id" = r."id" and r."created_by" = '';

update "room_members" as m set "role" = 4
  from "rooms" as r
  where r."id" = m."room_id" and r."created_by" <> '' and m."user_id" = r."created_by";
