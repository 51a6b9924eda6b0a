-- The relay is woken by a NOTIFY sent after the commit (src/db/outbox-signal.ts), no longer by
-- one inside every transaction that writes an event: PostgreSQL serialises notifying commits on
-- one database-wide lock held through the commit's WAL flush (docs/adr/0012-outbox-wake-up-after-commit.md).
DROP TRIGGER IF EXISTS events_notify_outbox ON events;
DROP FUNCTION IF EXISTS switchyard_notify_outbox();
