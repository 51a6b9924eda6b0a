/**
 * Overload by queueing (SPEC §14): when a request of this process has waited longer than
 * OVERLOAD_DB_WAIT_MS for a database connection, new requests are refused at once with 503
 * OVERLOADED and Retry-After — before anything is read or written — instead of joining a queue
 * that would make every caller time out. Work already accepted completes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionWaitMs } from '../../src/db/pool.js';
import { call, createMerchant, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, delta, expectError, expectNothingStored, retryAfter, scrape } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness({ OVERLOAD_DB_WAIT_MS: '300' });
  m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'platinum' });
});
afterAll(async () => h?.close());

describe('shedding on a standing queue for database connections', () => {
  it('refuses new requests with 503 OVERLOADED while the queue stands, stores nothing of them, and lets queued work finish', async () => {
    // Warm: the merchant's key is looked up and cached, the statements are prepared.
    expect((await call(h, 'POST', '/v1/payments', { key: m.key, body: body() })).status).toBe(201);
    const before = await scrape(h);

    // Every connection of the process's pool is busy for a while.
    const pool = h.database.db;
    const max = pool.options.max;
    const blockers = Array.from({ length: max }, () => pool.query('SELECT pg_sleep(2)'));
    await waitFor(async () => (pool.totalCount === max && pool.idleCount === 0 ? true : undefined), 10_000, 'every connection busy');

    // A payment accepted now queues for a connection...
    const queuedBody = body();
    const queued = call(h, 'POST', '/v1/payments', { key: m.key, body: queuedBody });
    await waitFor(async () => (connectionWaitMs(pool) > 300 ? true : undefined), 10_000, 'a request queued for over 300 ms');

    // ... and while it waits, new requests are shed at once, whatever they are.
    const shedBody = body();
    const key = `shed_${shedBody.reference_id as string}`;
    const shed = await call(h, 'POST', '/v1/payments', { key: m.key, body: shedBody, headers: { 'idempotency-key': key } });
    expectError(shed, 503, 'OVERLOADED');
    retryAfter(shed, 1, 60);
    expectError(await call(h, 'GET', '/v1/payments?limit=1', { key: m.key }), 503, 'OVERLOADED');
    // Health answers (a load balancer must still see the process alive).
    expect((await call(h, 'GET', '/health/liveness')).status).toBe(200);

    await Promise.all(blockers);
    const done = await queued;
    expect(done.status, JSON.stringify(done.body)).toBe(201);
    expect(done.body.status).toBe('captured');

    // Nothing of the shed request was stored, and its idempotency key is free.
    await expectNothingStored(pool, m.id, shedBody.reference_id, key);

    // The queue has drained, but its long waits count for a second more: a flood is not let in
    // the moment an overloaded queue empties. Shed again, then admitted once that has passed.
    expect(connectionWaitMs(pool)).toBeGreaterThan(300);
    expectError(await call(h, 'POST', '/v1/payments', { key: m.key, body: shedBody, headers: { 'idempotency-key': key } }), 503, 'OVERLOADED');
    await waitFor(async () => (connectionWaitMs(pool) <= 300 ? true : undefined), 10_000, 'the long waits to age out');
    const retried = await call(h, 'POST', '/v1/payments', { key: m.key, body: shedBody, headers: { 'idempotency-key': key } });
    expect(retried.status, JSON.stringify(retried.body)).toBe(201);

    const after = await scrape(h);
    expect(delta(before, after, 'switchyard_shed_requests_total')).toBe(3);
  });
});
