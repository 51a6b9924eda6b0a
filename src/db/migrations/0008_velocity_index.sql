-- The velocity check counts a merchant's payments in a sliding window on every create.
CREATE INDEX payments_merchant_created_at_idx ON payments (merchant_id, created_at);
