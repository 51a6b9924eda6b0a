-- Who may act on an open attempt right now. The request that sends it, a resumed request that
-- resolves it, and the reconciliation janitor each claim it first; a claim lasts longer than the
-- slowest connector call, so nobody judges "the provider has no record" while a request with that
-- idempotency key may still be on its way to the provider.
ALTER TABLE payment_attempts ADD COLUMN claimed_until timestamptz;
