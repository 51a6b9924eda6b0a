-- The mock provider's own tables. They stand for a payment provider's database, not Switchyard's:
-- nothing in Switchyard writes them, and tests compare this ledger with Switchyard's payments to
-- prove that the provider never saw a double charge.

-- One row per distinct provider idempotency key. The primary key is the concurrency guard: a second
-- request with the same key blocks on the first one's insert, then replays its stored response.
-- response_status/body are NULL only inside the claiming transaction, never once committed.
CREATE TABLE mock_provider_operations (
  idempotency_key text PRIMARY KEY,
  operation       text NOT NULL CHECK (operation IN ('authorize','capture','void','refund')),
  mode            text NOT NULL CHECK (mode IN ('mock','flaky')),
  -- SHA-256 of what the request asked for, so a reused key with other parameters is refused.
  fingerprint     text NOT NULL,
  payment_id      text,
  charge_id       text,
  response_status integer,
  response_body   jsonb,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mock_provider_charges (
  id                text PRIMARY KEY,
  payment_id        text NOT NULL,
  amount            bigint NOT NULL CHECK (amount > 0),
  currency          text NOT NULL,
  status            text NOT NULL CHECK (status IN ('authorized','captured','pending','failed','voided')),
  captured_amount   bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
  refunded_amount   bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
  token             text NOT NULL,
  -- What an asynchronous charge turns into when it settles, and whom its webhook names.
  capture_requested boolean NOT NULL DEFAULT false,
  idempotency_key   text NOT NULL,
  mode              text NOT NULL CHECK (mode IN ('mock','flaky')),
  failure_code      text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mock_provider_charges_payment_idx ON mock_provider_charges (payment_id);
-- Asynchronous charges left pending by a stopped process are settled when the provider starts again.
CREATE INDEX mock_provider_charges_pending_idx ON mock_provider_charges (created_at) WHERE status = 'pending';

-- One row per effect the provider actually performed.
CREATE TABLE mock_provider_ledger (
  id                 bigserial PRIMARY KEY,
  charge_id          text NOT NULL REFERENCES mock_provider_charges(id),
  payment_id         text NOT NULL,
  operation          text NOT NULL CHECK (operation IN ('authorize','capture','void','refund')),
  amount             bigint NOT NULL CHECK (amount >= 0),
  currency           text NOT NULL,
  idempotency_key    text NOT NULL,
  provider_reference text NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mock_provider_ledger_payment_idx ON mock_provider_ledger (payment_id, id);
-- Belt and braces under the operations table: one key can never produce the same effect twice.
CREATE UNIQUE INDEX mock_provider_ledger_effect_uidx ON mock_provider_ledger (idempotency_key, operation);
