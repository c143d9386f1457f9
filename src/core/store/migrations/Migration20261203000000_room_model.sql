-- The room model: a kind, a name, a topic and a creator per room; a
-- membership state and a role per member. Numbers are the values of the
-- RoomKind, MembershipState and RoomRole enums of proto/parley/v1/rooms.proto.
--
-- What existing data becomes: every room was readable and writable by any
-- user, so it becomes a PUBLIC room (1), which anyone may still read and
-- join. Its members are every user with a read position in it and every
-- user who sent to it, JOINED (2) as MEMBER (2); its first sender becomes
-- its creator and OWNER (4), so that every room has someone who can manage
-- it. Nothing is lost: no row is removed.
alter table "rooms" add column "kind" smallint not null default 1;
alter table "rooms" add column "name" text not null default '';
alter table "rooms" add column "topic" text not null default '';
alter table "rooms" add column "created_by" text not null default '';
alter table "room_members" add column "state" smallint not null default 2;
alter table "room_members" add column "role" smallint not null default 2;

insert into "room_members" ("room_id", "user_id")
  select distinct "room_id", "sender" from "chat_messages"
  on conflict ("room_id", "user_id") do nothing;

update "rooms" as r set "created_by" = f."sender"
  from (select distinct on ("room_id") "room_id", "sender" from "chat_messages" order by "room_id", "seq") as f
  where f."room_id" = r."id";

update "room_members" as m set "role" = 4
  from "rooms" as r
  where r."id" = m."room_id" and r."created_by" <> '' and m."user_id" = r."created_by";
