-- Velocity without serialising a merchant's payments (docs/adr/0011-velocity-without-a-merchant-lock.md).
--
-- Each reservation increments a row of its own database backend (shard = backend pid % 64), so
-- concurrent payments of one merchant do not queue on one row. Two granularities: per second, for
-- the exact count near the limit, and per minute, a cheap upper bound of the window far from it.
ALTER TABLE velocity_buckets ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE velocity_buckets DROP CONSTRAINT velocity_buckets_pkey;
ALTER TABLE velocity_buckets ADD PRIMARY KEY (merchant_id, second, shard);

CREATE TABLE velocity_minutes (
  merchant_id text NOT NULL,
  minute      bigint NOT NULL,
  shard       smallint NOT NULL,
  n           integer NOT NULL,
  PRIMARY KEY (merchant_id, minute, shard)
);
INSERT INTO velocity_minutes (merchant_id, minute, shard, n)
  SELECT merchant_id, second / 60, 0, sum(n) FROM velocity_buckets GROUP BY merchant_id, second / 60;

CREATE FUNCTION velocity_count(p_merchant text, p_second bigint, p_shard smallint, p_delta integer) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO velocity_buckets AS b (merchant_id, second, shard, n) VALUES (p_merchant, p_second, p_shard, GREATEST(0, p_delta))
  ON CONFLICT (merchant_id, second, shard) DO UPDATE SET n = GREATEST(0, b.n + p_delta);
  INSERT INTO velocity_minutes AS m (merchant_id, minute, shard, n) VALUES (p_merchant, p_second / 60, p_shard, GREATEST(0, p_delta))
  ON CONFLICT (merchant_id, minute, shard) DO UPDATE SET n = GREATEST(0, m.n + p_delta);
$$;

-- Takes a place in the merchant's window. Answers 'reserved' with the second and shard counted,
-- 'refused' when the window is full, or (fast call only) 'exact' when it is too close to call
-- without the exclusive lock. Called as its own (autocommit) statement: its lock lasts until it commits.
--
-- Far from the limit (fast): under a SHARED per-merchant lock, and only when the per-minute upper
-- bound of the window plus every reservation that could be in flight at once (one per database
-- connection: max_connections) stays below the limit. Near it (exact): under the EXCLUSIVE lock,
-- which waits until every fast reservation in flight has committed, the exact per-second count.
-- Every statement of a VOLATILE function sees what committed before it started, so the counts read
-- after a lock is granted include everything committed before the grant.
CREATE FUNCTION velocity_reserve(p_merchant text, p_window integer, p_limit integer, p_exact boolean)
RETURNS TABLE (outcome text, r_second bigint, r_shard smallint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  k       bigint := hashtextextended('velocity:' || p_merchant, 0);
  s       bigint;
  v_shard smallint := (pg_backend_pid() % 64)::smallint;
  counted bigint;
BEGIN
  IF NOT p_exact THEN
    PERFORM pg_advisory_xact_lock_shared(k);
    s := extract(epoch FROM clock_timestamp())::bigint;
    SELECT COALESCE(sum(vm.n), 0) INTO counted FROM velocity_minutes vm
     WHERE vm.merchant_id = p_merchant AND vm.minute >= (s - p_window) / 60;
    IF counted + current_setting('max_connections')::bigint >= p_limit THEN
      outcome := 'exact';
      RETURN NEXT;
      RETURN;
    END IF;
  ELSE
    PERFORM pg_advisory_xact_lock(k);
    s := extract(epoch FROM clock_timestamp())::bigint;
    SELECT COALESCE(sum(vb.n), 0) INTO counted FROM velocity_buckets vb
     WHERE vb.merchant_id = p_merchant AND vb.second > s - p_window;
    IF counted >= p_limit THEN
      outcome := 'refused';
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  PERFORM velocity_count(p_merchant, s, v_shard, 1);
  outcome := 'reserved';
  r_second := s;
  r_shard := v_shard;
  RETURN NEXT;
END
$$;
