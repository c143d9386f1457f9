-- The room log: a room's membership and settings changes, stored beside its
-- messages and numbered in the same sequence (rooms.head_seq). A room's log
-- is chat_messages and room_events together, merged by seq, with no gap.
--
-- "type" is the field number of the RoomEvent case the row holds (11
-- membership, 12 settings; proto/parley/v1/chat.proto) and "payload" is
-- that case's protobuf binary: a new kind of event is a new case, not a new
-- table. "actor" is the user who made the change.
create table "room_events" (
  "room_id" text not null,
  "seq" bigint not null,
  "type" smallint not null,
  "actor" text not null,
  "payload" bytea not null,
  "created_at" timestamptz(6) not null default now(),
  constraint "room_events_pkey" primary key ("room_id", "seq")
);
alter table "room_events" add constraint "room_events_room_id_foreign" foreign key ("room_id") references "rooms" ("id") on update cascade on delete cascade;

-- When the room's log last grew: ListMyRooms orders by it. For existing
-- rooms, their newest message (or their creation).
alter table "rooms" add column "last_event_at" timestamptz(6) not null default now();
update "rooms" as r set "last_event_at" = coalesce((select max(m."created_at") from "chat_messages" m where m."room_id" = r."id"), r."created_at");

-- A user's rooms (ListMyRooms, the quota on rooms per user); and a creator's
-- rooms (the quota on rooms a user creates).
create index "room_members_user_id_index" on "room_members" ("user_id");
create index "rooms_created_by_index" on "rooms" ("created_by");
