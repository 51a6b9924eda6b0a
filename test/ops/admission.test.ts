/**
 * Admission behind the database queue (ADR 0009, src/db/admission.ts): while requests of this
 * process wait for a connection, a new request does not join that queue in front of their next
 * statements. It waits to start until the queue has cleared — up to OVERLOAD_DB_WAIT_MS while the
 * waiting room absorbs a burst, 1/25 of it once the room has not emptied for 0.4 of it — and is
 * refused with 503 OVERLOADED, before anything is stored, if it cannot start in that time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admissionQueue } from '../../src/db/pool.js';
import { call, createMerchant, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, delta, expectError, expectNothingStored, retryAfter, scrape } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  // 5 s: the burst below waits as long as the database is busy (4 s), the waiting room stands
  // after 2 s, and a request joining it then is refused after 200 ms.
  h = await startHarness({ OVERLOAD_DB_WAIT_MS: '5000' });
  m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'platinum' });
});
afterAll(async () => h?.close());

describe('admission behind the database queue', () => {
  it('new requests wait outside the pool queue while work already started is served; one joining a standing queue is refused after a brief wait; all admitted work completes', async () => {
    expect((await call(h, 'POST', '/v1/payments', { key: m.key, body: body() })).status).toBe(201);
    const before = await scrape(h);

    const pool = h.database.db;
    const max = pool.options.max!;
    let blocked = true;
    const blockers = Array.from({ length: max }, () => pool.query('SELECT pg_sleep(4)').finally(() => (blocked = false)));
    await waitFor(async () => (pool.totalCount === max && pool.idleCount === 0 ? true : undefined), 10_000, 'every connection busy');

    // A payment started now waits in the pool's queue...
    const first = call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    await waitFor(async () => (pool.waitingCount === 1 ? true : undefined), 10_000, 'the first payment to wait for a connection');

    // ... a burst of new ones waits to start, outside that queue ...
    const burst = Array.from({ length: 8 }, () => call(h, 'POST', '/v1/payments', { key: m.key, body: body() }));
    await waitFor(async () => (admissionQueue(pool).length === 8 ? true : undefined), 10_000, 'the burst waiting to start');
    expect(pool.waitingCount).toBe(1);

    // ... and once that waiting room has stood, the next is refused within a few milliseconds.
    await waitFor(async () => (admissionQueue(pool).standing ? true : undefined), 10_000, 'the waiting room to stand');
    const refusedBody = body();
    const key = `admission_${refusedBody.reference_id as string}`;
    const refused = await call(h, 'POST', '/v1/payments', { key: m.key, body: refusedBody, headers: { 'idempotency-key': key } });
    expectError(refused, 503, 'OVERLOADED');
    retryAfter(refused, 1, 60);
    expect(blocked).toBe(true); // refused while the connections were still busy, not after them

    await Promise.all(blockers);
    for (const res of [await first, ...(await Promise.all(burst))]) {
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.status).toBe('captured');
    }

    // Nothing of the refused request was stored, and its key is free: the retry succeeds.
    await expectNothingStored(pool, m.id, refusedBody.reference_id, key);
    const retried = await call(h, 'POST', '/v1/payments', { key: m.key, body: refusedBody, headers: { 'idempotency-key': key } });
    expect(retried.status, JSON.stringify(retried.body)).toBe(201);

    const after = await scrape(h);
    expect(delta(before, after, 'switchyard_shed_requests_total')).toBe(1);
    expect(delta(before, after, 'switchyard_admission_wait_seconds_count', { admitted: 'true' })).toBe(8);
    expect(delta(before, after, 'switchyard_admission_wait_seconds_count', { admitted: 'false' })).toBe(1);
    // The refused one waited 200 ms (1/25 of the limit), not the 5 s limit.
    expect(delta(before, after, 'switchyard_admission_wait_seconds_bucket', { admitted: 'false', le: '0.1' })).toBe(0);
    expect(delta(before, after, 'switchyard_admission_wait_seconds_bucket', { admitted: 'false', le: '0.25' })).toBe(1);
  });
});
