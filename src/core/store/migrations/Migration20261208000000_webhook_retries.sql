-- A delivery's current retry window: it opened (when the delivery was made,
-- or when a failed one was re-driven) at "retry_from", after "retry_base"
-- attempts. The retry budget — attempts and horizon — counts from there.
alter table "webhook_deliveries" add column "retry_from" timestamptz(6) not null default now();
alter table "webhook_deliveries" add column "retry_base" int not null default 0;
update "webhook_deliveries" set "retry_from" = "created_at";

-- An attempt is recorded when it is claimed ('in_flight'), before the
-- request goes out, then given its outcome: one that a crash interrupts
-- still shows.
alter table "webhook_attempts" drop constraint "webhook_attempts_outcome_check";
alter table "webhook_attempts" add constraint "webhook_attempts_outcome_check" check ("outcome" in ('in_flight', 'delivered', 'retry', 'failed'));
