import type { Db } from '../db/pool.js';
import { purgeExpired } from '../idempotency/store.js';

export interface HousekeepingResult {
  purgedKeys: number;
  releasedKeys: number;
}

/**
 * Idempotency keys past their expiry are deleted; keys left `in_progress` by a request that died
 * (lease lapsed) are released, so the client's retry resumes at once from the recovery point.
 */
export async function runHousekeeping(db: Db): Promise<HousekeepingResult> {
  let purgedKeys = 0;
  for (;;) {
    const n = await purgeExpired(db, 1000);
    purgedKeys += n;
    if (n < 1000) break;
  }
  const released = await db.query(
    `UPDATE idempotency_keys SET state = 'released', owner = NULL, locked_until = NULL, updated_at = now()
      WHERE state = 'in_progress' AND locked_until < now()`,
  );
  // Velocity buckets older than any window a merchant may configure (31 days) count for nothing.
  await db.query(`DELETE FROM velocity_buckets WHERE second < extract(epoch FROM now())::bigint - 31 * 86400`);
  await db.query(`DELETE FROM velocity_minutes WHERE minute < (extract(epoch FROM now())::bigint - 31 * 86400) / 60`);
  return { purgedKeys, releasedKeys: released.rowCount ?? 0 };
}
