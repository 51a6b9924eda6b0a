-- Inbound provider webhooks (SPEC §11): every event kept under its provider id, with what became
-- of it. Failed and unmatched events are the dead-letter queue the worker reprocesses.
CREATE TABLE provider_events (
  id                text PRIMARY KEY,
  connector         text NOT NULL,
  provider_event_id text NOT NULL,
  type              text NOT NULL,
  provider_reference text,
  attempt_id        text,
  payment_id        text,
  status            text NOT NULL CHECK (status IN ('received','processed','ignored','unmatched','failed')),
  result            text,
  error             text,
  event             jsonb NOT NULL,
  process_attempts  integer NOT NULL DEFAULT 0,
  next_retry_at     timestamptz,
  received_at       timestamptz NOT NULL DEFAULT now(),
  processed_at      timestamptz,
  UNIQUE (connector, provider_event_id)
);
CREATE INDEX provider_events_retry_idx ON provider_events (next_retry_at) WHERE status IN ('failed','unmatched','received');
CREATE INDEX provider_events_status_idx ON provider_events (status, id DESC);
CREATE INDEX provider_events_reference_idx ON provider_events (connector, provider_reference) WHERE status = 'unmatched';

-- Reconciliation of open attempts (SPEC §13): when to look again, and how often we have.
ALTER TABLE payment_attempts ADD COLUMN reconcile_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE payment_attempts ADD COLUMN next_reconcile_at timestamptz;
CREATE INDEX payment_attempts_reconcile_idx ON payment_attempts (next_reconcile_at) WHERE status IN ('started','unknown');
CREATE INDEX payments_reconciliation_idx ON payments (reconciliation_status, id DESC) WHERE reconciliation_status <> 'synced';
