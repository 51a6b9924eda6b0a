-- Merchant webhook endpoints, their secrets, deliveries and every delivery attempt (SPEC §12).

CREATE TABLE webhook_endpoints (
  id             text PRIMARY KEY,
  merchant_id    text NOT NULL REFERENCES merchants(id),
  url            text NOT NULL,
  description    text,
  enabled_events text[] NOT NULL,
  status         text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled','disabled','deleted')),
  disabled_reason text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_merchant_idx ON webhook_endpoints (merchant_id) WHERE status = 'enabled';

-- The signing secrets of an endpoint: the current one (expires_at NULL) and, during a rotation's
-- overlap window, the previous ones; deliveries are signed with every unexpired secret.
CREATE TABLE webhook_endpoint_secrets (
  id          bigserial PRIMARY KEY,
  endpoint_id text NOT NULL REFERENCES webhook_endpoints(id),
  secret      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz
);
CREATE INDEX webhook_endpoint_secrets_endpoint_idx ON webhook_endpoint_secrets (endpoint_id, id DESC);

CREATE TABLE webhook_deliveries (
  id              text PRIMARY KEY,
  merchant_id     text NOT NULL REFERENCES merchants(id),
  endpoint_id     text NOT NULL REFERENCES webhook_endpoints(id),
  event_id        text NOT NULL REFERENCES events(id),
  event_type      text NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending','succeeded','dead','dropped')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz,
  -- the lease of the worker sending it right now: a delivery is never sent by two at once
  locked_until    timestamptz,
  owner           text,
  last_status_code integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_merchant_idx ON webhook_deliveries (merchant_id, id DESC);
CREATE INDEX webhook_deliveries_merchant_status_idx ON webhook_deliveries (merchant_id, status, id DESC);
CREATE INDEX webhook_deliveries_endpoint_status_idx ON webhook_deliveries (endpoint_id, status, created_at);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_delivery_attempts (
  id               bigserial PRIMARY KEY,
  delivery_id      text NOT NULL REFERENCES webhook_deliveries(id),
  attempt          integer NOT NULL,
  status_code      integer,
  latency_ms       integer NOT NULL,
  error            text,
  response_excerpt text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_delivery_attempts_delivery_idx ON webhook_delivery_attempts (delivery_id, id);

-- Wake the outbox relay on commit: NOTIFY is delivered only when the inserting transaction commits.
CREATE FUNCTION switchyard_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('switchyard_outbox', '');
  RETURN NULL;
END $$;
CREATE TRIGGER events_notify_outbox AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION switchyard_notify_outbox();
