/**
 * Housekeeping (SPEC §9, §13): expired idempotency keys are purged; keys left in_progress by a
 * request that died (lease lapsed) are released so the client's retry resumes; live keys stay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHousekeeping } from '../../src/worker/housekeeping.js';
import { beginRequest } from '../../src/idempotency/store.js';
import { QUEUE } from '../../src/worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startHarness, waitFor, type Harness } from '../support/harness.js';

interface KeyRow {
  key: string;
  state: string;
  owner: string | null;
  locked_until: Date | null;
  recovery_point: string;
  resource_id: string | null;
  response_status: number | null;
}

async function insertKey(
  db: TestDatabase['db'],
  merchant: string,
  key: string,
  k: { state: string; lockedUntil: string | null; expiresAt: string; owner?: string | null; resourceId?: string | null; recoveryPoint?: string; responseStatus?: number | null },
): Promise<void> {
  await db.query(
    `INSERT INTO idempotency_keys (merchant_id, key, fingerprint, method, path, state, owner, locked_until, expires_at, resource_id, recovery_point, response_status, response_body)
     VALUES ($1, $2, 'fp_' || $2, 'POST', '/v1/payments', $3, $4, now() + $5::interval, now() + $6::interval, $7, $8, $9, $10)`,
    [
      merchant,
      key,
      k.state,
      k.owner ?? null,
      k.lockedUntil,
      k.expiresAt,
      k.resourceId ?? null,
      k.recoveryPoint ?? 'started',
      k.responseStatus ?? null,
      k.responseStatus ? JSON.stringify({ ok: true }) : null,
    ],
  );
}

describe('runHousekeeping', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database?.drop());

  const rows = async (merchant: string) =>
    new Map(
      (
        await database.db.query<KeyRow>(
          'SELECT key, state, owner, locked_until, recovery_point, resource_id, response_status FROM idempotency_keys WHERE merchant_id = $1',
          [merchant],
        )
      ).rows.map((r) => [r.key, r]),
    );

  it('purges expired keys, releases stuck in_progress keys with lapsed leases, and leaves live ones alone', async () => {
    const mer = 'mer_housekeeping_a';
    const db = database.db;
    await insertKey(db, mer, 'expired_completed', { state: 'completed', lockedUntil: null, expiresAt: '-1 minute', responseStatus: 201 });
    await insertKey(db, mer, 'expired_in_progress', { state: 'in_progress', lockedUntil: '-10 minutes', expiresAt: '-1 second', owner: 'dead' });
    await insertKey(db, mer, 'expired_released', { state: 'released', lockedUntil: null, expiresAt: '-1 hour' });
    await insertKey(db, mer, 'live_completed', { state: 'completed', lockedUntil: null, expiresAt: '1 hour', responseStatus: 201 });
    await insertKey(db, mer, 'live_released', { state: 'released', lockedUntil: null, expiresAt: '1 hour', resourceId: 'pay_kept', recoveryPoint: 'resource_created' });
    await insertKey(db, mer, 'running', { state: 'in_progress', lockedUntil: '30 seconds', expiresAt: '1 day', owner: 'alive' });
    await insertKey(db, mer, 'stuck', { state: 'in_progress', lockedUntil: '-5 seconds', expiresAt: '1 day', owner: 'dead', resourceId: 'pay_stuck', recoveryPoint: 'resource_created' });
    await insertKey(db, mer, 'stuck_early', { state: 'in_progress', lockedUntil: '-1 second', expiresAt: '1 day', owner: 'dead2' });
    // More than one purge batch (1,000) of expired keys.
    await db.query(
      `INSERT INTO idempotency_keys (merchant_id, key, fingerprint, method, path, state, expires_at)
       SELECT $1, 'bulk_' || g, 'fp', 'POST', '/v1/payments', 'completed', now() - interval '1 day' FROM generate_series(1, 2345) g`,
      [mer],
    );

    const result = await runHousekeeping(db);
    expect(result).toEqual({ purgedKeys: 2345 + 3, releasedKeys: 2 });

    const after = await rows(mer);
    expect([...after.keys()].sort()).toEqual(['live_completed', 'live_released', 'running', 'stuck', 'stuck_early']);
    expect(after.get('live_completed')).toMatchObject({ state: 'completed', response_status: 201 });
    expect(after.get('live_released')).toMatchObject({ state: 'released', resource_id: 'pay_kept', recovery_point: 'resource_created' });
    const running = after.get('running')!;
    expect(running).toMatchObject({ state: 'in_progress', owner: 'alive' });
    expect(running.locked_until!.getTime()).toBeGreaterThan(Date.now());
    // Released, with the recovery point kept for the client's retry.
    expect(after.get('stuck')).toMatchObject({ state: 'released', owner: null, locked_until: null, resource_id: 'pay_stuck', recovery_point: 'resource_created' });
    expect(after.get('stuck_early')).toMatchObject({ state: 'released', owner: null, locked_until: null });

    // Idempotent: nothing more to do.
    expect(await runHousekeeping(db)).toEqual({ purgedKeys: 0, releasedKeys: 0 });
  });

  it('a released stuck key lets the retry resume from its recovery point', async () => {
    const mer = 'mer_housekeeping_b';
    await insertKey(database.db, mer, 'retry_me', { state: 'in_progress', lockedUntil: '-3 seconds', expiresAt: '1 day', owner: 'dead', resourceId: 'pay_resume', recoveryPoint: 'resource_created' });
    await insertKey(database.db, mer, 'busy', { state: 'in_progress', lockedUntil: '60 seconds', expiresAt: '1 day', owner: 'alive' });
    await runHousekeeping(database.db);
    const input = { scope: mer, fingerprint: 'fp_retry_me', method: 'POST', path: '/v1/payments', lockSeconds: 30, ttlSeconds: 86_400 };
    const begun = await beginRequest(database.db, { ...input, key: 'retry_me' });
    expect(begun).toMatchObject({ kind: 'execute', resumed: true, resourceId: 'pay_resume' });
    // The live key is still held by its owner.
    await expect(beginRequest(database.db, { ...input, key: 'busy', fingerprint: 'fp_busy' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE' });
  });
});

describe('the housekeeping job in the worker', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({}, { worker: true });
  });
  afterAll(async () => h?.close());

  it('a housekeeping job sent to the queue is run by the worker', async () => {
    const db = h.database.db;
    await insertKey(db, 'mer_housekeeping_c', 'old', { state: 'completed', lockedUntil: null, expiresAt: '-1 minute', responseStatus: 200 });
    await insertKey(db, 'mer_housekeeping_c', 'stuck', { state: 'in_progress', lockedUntil: '-1 minute', expiresAt: '1 day', owner: 'dead' });
    await insertKey(db, 'mer_housekeeping_c', 'fresh', { state: 'completed', lockedUntil: null, expiresAt: '1 day', responseStatus: 200 });
    const id = await h.worker!.boss.send(QUEUE.housekeeping, {});
    expect(id).toBeTruthy();
    await waitFor(
      async () => {
        const r = await db.query<{ key: string; state: string }>(`SELECT key, state FROM idempotency_keys WHERE merchant_id = 'mer_housekeeping_c' ORDER BY key`);
        const s = JSON.stringify(r.rows);
        return s === JSON.stringify([{ key: 'fresh', state: 'completed' }, { key: 'stuck', state: 'released' }]) ? true : undefined;
      },
      20_000,
      'the housekeeping job to run',
    );
  });
});
