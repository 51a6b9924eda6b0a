/**
 * The velocity reservation (migration 0010) raced on many connections: far from the limit it
 * counts without the merchant-wide lock, near the limit it is exact, and together they never let
 * more payments into a window than the limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { reserveVelocity, releaseVelocity, type VelocityReservation } from '../../src/payments/velocity.js';
import { isAppError } from '../../src/domain/errors.js';
import type { Merchant } from '../../src/domain/merchant.js';

let t: TestDatabase;
let maxConnections: number;

beforeAll(async () => {
  t = await createTestDatabase({ poolMax: 20 });
  maxConnections = Number((await t.db.query<{ c: string }>(`SELECT current_setting('max_connections') AS c`)).rows[0]!.c);
});
afterAll(async () => t?.drop());

function merchant(id: string, maxPayments: number, windowSeconds = 300): Merchant {
  return { id, limits: { velocity: { max_payments: maxPayments, window_seconds: windowSeconds } } } as unknown as Merchant;
}

async function counted(id: string): Promise<{ seconds: number; minutes: number }> {
  const r = await t.db.query<{ seconds: number; minutes: number }>(
    `SELECT (SELECT COALESCE(sum(n), 0)::int FROM velocity_buckets WHERE merchant_id = $1) AS seconds,
            (SELECT COALESCE(sum(n), 0)::int FROM velocity_minutes WHERE merchant_id = $1) AS minutes`,
    [id],
  );
  return r.rows[0]!;
}

async function race(m: Merchant, n: number): Promise<{ reserved: VelocityReservation[]; refused: number }> {
  const results = await Promise.all(Array.from({ length: n }, () => reserveVelocity(t.db, m)));
  const reserved = results.filter((r): r is VelocityReservation => !isAppError(r));
  for (const r of results) if (isAppError(r)) expect(r.code).toBe('RISK_VELOCITY_EXCEEDED');
  return { reserved, refused: results.length - reserved.length };
}

describe('velocity reservations racing on 20 connections', () => {
  it('a limit just above what can be in flight: the fast path fills it, the exact path stops it at the limit', async () => {
    const limit = maxConnections + 5;
    const m = merchant(`mer_vel_edge_${Date.now().toString(36)}`, limit);
    const { reserved, refused } = await race(m, limit + 40);
    expect(reserved).toHaveLength(limit);
    expect(refused).toBe(40);
    expect(await counted(m.id)).toEqual({ seconds: limit, minutes: limit });
  });

  it('a small limit (always the exact path): exactly the limit, and given-back places can be taken again', async () => {
    const m = merchant(`mer_vel_small_${Date.now().toString(36)}`, 7);
    const first = await race(m, 30);
    expect(first.reserved).toHaveLength(7);
    await Promise.all(first.reserved.slice(0, 3).map((r) => releaseVelocity(t.db, r)));
    expect(await counted(m.id)).toEqual({ seconds: 4, minutes: 4 });
    const second = await race(m, 30);
    expect(second.reserved).toHaveLength(3);
    expect(await counted(m.id)).toEqual({ seconds: 7, minutes: 7 });
  });

  it('a limit far out of reach: every reservation is counted once, on both granularities', async () => {
    const m = merchant(`mer_vel_big_${Date.now().toString(36)}`, 1_000_000_000);
    const { reserved } = await race(m, 200);
    expect(reserved).toHaveLength(200);
    expect(await counted(m.id)).toEqual({ seconds: 200, minutes: 200 });
  });

  it('refuses with a Retry-After no longer than the window', async () => {
    const m = merchant(`mer_vel_retry_${Date.now().toString(36)}`, 1, 60);
    expect(isAppError(await reserveVelocity(t.db, m))).toBe(false);
    const refused = await reserveVelocity(t.db, m);
    expect(isAppError(refused) && refused.retryAfter).toBeGreaterThanOrEqual(59);
    expect(isAppError(refused) && refused.retryAfter).toBeLessThanOrEqual(60);
  });
});
