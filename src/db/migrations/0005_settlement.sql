-- Settlement batches (SPEC §13) and the lease locks of singleton jobs.

-- A lease: the named job is held by `owner` until `expires_at` (database time). A lease past its
-- expiry may be taken over by anyone; only its owner may renew or release it.
CREATE TABLE leases (
  name        text PRIMARY KEY,
  owner       text NOT NULL,
  expires_at  timestamptz NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  renewed_at  timestamptz NOT NULL DEFAULT now()
);

-- One settlement batch. `last_payment_id` is the checkpoint: payments are settled in id order, and
-- the checkpoint and counters are written in the transaction of the chunk they describe.
CREATE TABLE settlements (
  id               text PRIMARY KEY,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','running','completed','failed')),
  cutoff           timestamptz NOT NULL,
  chunk_size       integer NOT NULL CHECK (chunk_size BETWEEN 1 AND 10000),
  last_payment_id  text,
  settled_count    integer NOT NULL DEFAULT 0 CHECK (settled_count >= 0),
  error_count      integer NOT NULL DEFAULT 0 CHECK (error_count >= 0),
  chunks_completed integer NOT NULL DEFAULT 0 CHECK (chunks_completed >= 0),
  -- failed tries of chunks over the batch's life (each retried chunk counts once per failure)
  chunk_failures   integer NOT NULL DEFAULT 0 CHECK (chunk_failures >= 0),
  -- the scheduled job that made it, so a retried job resumes its own batch instead of making another
  job_id           text UNIQUE,
  error            text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  completed_at     timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlements_unfinished_idx ON settlements (id) WHERE status IN ('pending','running');
CREATE INDEX settlements_status_idx ON settlements (status, id DESC);

-- What a batch settled. payment_id is UNIQUE: a payment is settled by at most one batch, ever.
-- Amounts are copied at settlement time; later refunds of a settled payment do not change them.
CREATE TABLE settlement_items (
  id              bigserial PRIMARY KEY,
  settlement_id   text NOT NULL REFERENCES settlements(id),
  payment_id      text NOT NULL UNIQUE REFERENCES payments(id),
  merchant_id     text NOT NULL REFERENCES merchants(id),
  currency        text NOT NULL,
  amount_captured bigint NOT NULL CHECK (amount_captured >= 0),
  amount_refunded bigint NOT NULL CHECK (amount_refunded >= 0 AND amount_refunded <= amount_captured),
  settled_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlement_items_settlement_idx ON settlement_items (settlement_id, merchant_id, currency);

-- Payments a batch could not settle; they stay `captured` and are picked up by a later batch.
CREATE TABLE settlement_errors (
  id            bigserial PRIMARY KEY,
  settlement_id text NOT NULL REFERENCES settlements(id),
  payment_id    text NOT NULL REFERENCES payments(id),
  merchant_id   text NOT NULL REFERENCES merchants(id),
  code          text NOT NULL,
  error         text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlement_errors_settlement_idx ON settlement_errors (settlement_id, id);
CREATE INDEX settlement_errors_payment_idx ON settlement_errors (payment_id);

-- The settlement scan: captured payments in id order.
CREATE INDEX payments_captured_id_idx ON payments (id) WHERE status = 'captured';
