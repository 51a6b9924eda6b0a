-- Core schema: merchants, keys, payments, the audit trail, attempts, refunds, the outbox and
-- idempotency keys. Money is BIGINT minor units everywhere.

CREATE TABLE merchants (
  id                 text PRIMARY KEY,
  name               text NOT NULL,
  onboarding_status  text NOT NULL CHECK (onboarding_status IN ('activated','review','pending','suspended')),
  kyc_status         text NOT NULL CHECK (kyc_status IN ('verified','approved','pending','not_started','rejected')),
  kyc_tier           text NOT NULL,
  rate_tier          text NOT NULL CHECK (rate_tier IN ('platinum','gold','silver','bronze')),
  limits             jsonb NOT NULL,
  connectors         jsonb NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  merchant_id text NOT NULL REFERENCES merchants(id),
  prefix      text NOT NULL,
  key_hash    bytea NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_merchant_idx ON api_keys (merchant_id);

CREATE TABLE payments (
  id                    text PRIMARY KEY,
  merchant_id           text NOT NULL REFERENCES merchants(id),
  status                text NOT NULL CHECK (status IN ('pending','processing','authorized','captured','settled','refunded','failed','canceled')),
  amount                bigint NOT NULL CHECK (amount > 0),
  currency              text NOT NULL,
  amount_capturable     bigint NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
  amount_captured       bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
  amount_refunded       bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount_captured),
  payment_method        text NOT NULL,
  payment_method_token  text NOT NULL,
  reference_id          text NOT NULL,
  customer              jsonb NOT NULL,
  capture_method        text NOT NULL CHECK (capture_method IN ('automatic','manual')),
  connector             text,
  provider_reference    text,
  description           text,
  metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
  failure_code          text,
  failure_message       text,
  reconciliation_status text NOT NULL DEFAULT 'synced' CHECK (reconciliation_status IN ('synced','pending_reconciliation','manual_review')),
  version               integer NOT NULL DEFAULT 0,
  event_sequence        integer NOT NULL DEFAULT 0,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
-- The double-charge guard's last line: one live payment per merchant order reference.
CREATE UNIQUE INDEX payments_live_reference_uidx ON payments (merchant_id, reference_id)
  WHERE status NOT IN ('failed','canceled');
CREATE INDEX payments_merchant_created_idx ON payments (merchant_id, id DESC);
CREATE INDEX payments_merchant_status_idx ON payments (merchant_id, status, id DESC);
CREATE INDEX payments_merchant_reference_idx ON payments (merchant_id, reference_id);
CREATE INDEX payments_provider_reference_idx ON payments (provider_reference) WHERE provider_reference IS NOT NULL;
CREATE INDEX payments_status_updated_idx ON payments (status, updated_at) WHERE status IN ('pending','processing');

CREATE TABLE payment_status_history (
  id          bigserial PRIMARY KEY,
  payment_id  text NOT NULL REFERENCES payments(id),
  from_status text,
  to_status   text NOT NULL,
  cause       text NOT NULL,
  actor       text NOT NULL,
  request_id  text,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_status_history_payment_idx ON payment_status_history (payment_id, id);

CREATE TABLE refunds (
  id          text PRIMARY KEY,
  payment_id  text NOT NULL REFERENCES payments(id),
  merchant_id text NOT NULL REFERENCES merchants(id),
  amount      bigint NOT NULL CHECK (amount > 0),
  currency    text NOT NULL,
  status      text NOT NULL CHECK (status IN ('pending','succeeded','failed')),
  reason      text,
  failure_code text,
  failure_message text,
  provider_reference text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id, id);
CREATE INDEX refunds_merchant_idx ON refunds (merchant_id, id DESC);

CREATE TABLE payment_attempts (
  id                 text PRIMARY KEY,
  payment_id         text NOT NULL REFERENCES payments(id),
  merchant_id        text NOT NULL REFERENCES merchants(id),
  refund_id          text REFERENCES refunds(id),
  operation          text NOT NULL CHECK (operation IN ('authorize','capture','void','refund')),
  connector          text NOT NULL,
  status             text NOT NULL CHECK (status IN ('started','succeeded','failed','unknown')),
  amount             bigint,
  provider_reference text,
  provider_status    text,
  error_code         text,
  error_message      text,
  request            jsonb,
  response           jsonb,
  created_at         timestamptz NOT NULL DEFAULT now(),
  completed_at       timestamptz
);
CREATE INDEX payment_attempts_payment_idx ON payment_attempts (payment_id, id);
CREATE INDEX payment_attempts_open_idx ON payment_attempts (created_at) WHERE status IN ('started','unknown');
CREATE INDEX payment_attempts_provider_reference_idx ON payment_attempts (provider_reference) WHERE provider_reference IS NOT NULL;
-- The database itself refuses a second successful authorization of one payment...
CREATE UNIQUE INDEX payment_attempts_one_authorization_uidx ON payment_attempts (payment_id)
  WHERE operation = 'authorize' AND status = 'succeeded';
-- ...and a second authorization in flight while the first one's outcome is open.
CREATE UNIQUE INDEX payment_attempts_one_open_authorization_uidx ON payment_attempts (payment_id)
  WHERE operation = 'authorize' AND status IN ('started','unknown');

-- The outbox: one row per state change, written in the transition's transaction.
CREATE TABLE events (
  id              text PRIMARY KEY,
  merchant_id     text NOT NULL REFERENCES merchants(id),
  payment_id      text REFERENCES payments(id),
  type            text NOT NULL,
  api_version     text NOT NULL DEFAULT '1.0',
  sequence        integer NOT NULL,
  previous_status text,
  correlation_id  text,
  data            jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  dispatched_at   timestamptz
);
CREATE UNIQUE INDEX events_payment_sequence_uidx ON events (payment_id, sequence);
CREATE INDEX events_merchant_idx ON events (merchant_id, id DESC);
CREATE INDEX events_undispatched_idx ON events (id) WHERE dispatched_at IS NULL;

CREATE TABLE idempotency_keys (
  merchant_id     text NOT NULL,
  key             text NOT NULL,
  fingerprint     text NOT NULL,
  method          text NOT NULL,
  path            text NOT NULL,
  state           text NOT NULL CHECK (state IN ('in_progress','released','completed')),
  -- where a resumed request picks up: 'started' (nothing committed yet), or the resource it made.
  recovery_point  text NOT NULL DEFAULT 'started',
  resource_id     text,
  locked_until    timestamptz,
  -- a token of the request that holds the key, so a request whose lease lapsed cannot overwrite its successor
  owner           text,
  response_status integer,
  response_body   json, -- json, not jsonb: a replay answers the very bytes of the original
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_stuck_idx ON idempotency_keys (locked_until) WHERE state = 'in_progress';

-- Process-wide secrets generated on first run (the API-key hashing key, the admin key's hash),
-- kept in the database so every api and worker process on it agrees.
CREATE TABLE settings (
  name       text PRIMARY KEY,
  value      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
