/**
 * The velocity (risk) limit without serialising a merchant's payments. The reservation is one
 * autocommit call of `velocity_reserve` (migration 0010): far from the limit, concurrent payments
 * count on rows of their own under a shared lock; near it, under the merchant's exclusive lock,
 * the count is exact. Either way the lock lasts one statement and its commit, never the create
 * transaction (docs/adr/0011-velocity-without-a-merchant-lock.md).
 *
 * A reservation whose payment is not created (refused later in the pipeline, rolled back) is given
 * back; one whose process dies before that stays counted until it leaves the window — an error on
 * the side of refusing.
 */
import type { Queryable } from '../db/pool.js';
import type { Merchant } from '../domain/merchant.js';
import { riskLayer } from '../domain/validation.js';
import type { AppError } from '../domain/errors.js';

export interface VelocityReservation {
  merchantId: string;
  second: number;
  shard: number;
}

interface ReserveRow {
  outcome: 'reserved' | 'refused' | 'exact';
  r_second: string | null;
  r_shard: number | null;
}

async function reserve(db: Queryable, m: Merchant, exact: boolean): Promise<ReserveRow> {
  const { max_payments, window_seconds } = m.limits.velocity;
  const r = await db.query<ReserveRow>('SELECT * FROM velocity_reserve($1, $2, $3, $4)', [m.id, window_seconds, max_payments, exact]);
  return r.rows[0]!;
}

export async function reserveVelocity(db: Queryable, m: Merchant): Promise<VelocityReservation | AppError> {
  let row = await reserve(db, m, false);
  if (row.outcome === 'exact') row = await reserve(db, m, true);
  if (row.outcome === 'reserved') return { merchantId: m.id, second: Number(row.r_second), shard: row.r_shard! };
  // Refused: the window is full. Tell the merchant when its oldest counted payment leaves it.
  const { max_payments, window_seconds } = m.limits.velocity;
  const v = await db.query<{ oldest_age: number | null }>(
    `SELECT (extract(epoch FROM now())::bigint - min(second))::float8 AS oldest_age
       FROM velocity_buckets WHERE merchant_id = $1 AND n > 0 AND second > extract(epoch FROM now())::bigint - $2`,
    [m.id, window_seconds],
  );
  return riskLayer(m, max_payments, v.rows[0]!.oldest_age ?? 0)!;
}

/** Gives a reservation back when its payment was not created. */
export async function releaseVelocity(db: Queryable, r: VelocityReservation): Promise<void> {
  await db.query('SELECT velocity_count($1, $2, $3::smallint, -1)', [r.merchantId, r.second, r.shard]);
}
