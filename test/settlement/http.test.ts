/**
 * Settlement over HTTP: payments made through the API (captured automatically by the mock
 * provider), a batch started by an operator, the admin and merchant reports, and refunds of
 * settled payments.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, paymentBody, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { expectError, type Json } from '../http/helpers.js';
import { settlementApi, type SettlementApi } from './api.js';
import { dbNow } from './helpers.js';

let h: Harness;
let api: SettlementApi;
let a: MerchantWithKey;
let b: MerchantWithKey;
let idle: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  api = await settlementApi(h);
  [a, b, idle] = [await createMerchant(h), await createMerchant(h), await createMerchant(h)];
});
afterAll(async () => {
  await api?.close();
  await h?.close();
});

async function pay(m: MerchantWithKey, overrides: Record<string, unknown> = {}): Promise<string> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: paymentBody(overrides) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.status).toBe('captured');
  return res.body.id as string;
}

async function payment(m: MerchantWithKey, id: string): Promise<Json> {
  const res = await call(h, 'GET', `/v1/payments/${id}`, { key: m.key });
  expect(res.status).toBe(200);
  return res.body;
}

async function completed(id: string): Promise<Json> {
  return waitFor(async () => {
    const res = await call(api, 'GET', `/v1/admin/settlements/${id}`, { key: ADMIN_KEY });
    expect(res.status).toBe(200);
    return res.body.status === 'completed' ? res.body : undefined;
  }, 30_000, `settlement ${id} to complete`);
}

describe('POST /v1/admin/settlements', () => {
  it('is for the admin key only', async () => {
    expectError(await call(api, 'POST', '/v1/admin/settlements', { body: {} }), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(api, 'POST', '/v1/admin/settlements', { key: a.key, body: {} }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(api, 'GET', '/v1/admin/settlements', { key: a.key }), 401, 'AUTH_INVALID_API_KEY');
  });

  it('validates the cutoff and the chunk size, and refuses unknown fields', async () => {
    const post = (body: unknown) => call(api, 'POST', '/v1/admin/settlements', { key: ADMIN_KEY, body });
    const future = new Date(Date.now() + 86_400_000).toISOString();
    expect(expectError(await post({ cutoff: future }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'cutoff' });
    expect(expectError(await post({ cutoff: 'yesterday' }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'cutoff' });
    expect(expectError(await post({ chunk_size: 0 }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'chunk_size' });
    expect(expectError(await post({ chunk_size: 10_001 }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'chunk_size' });
    expect(expectError(await post({ chunk_size: 2.5 }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'chunk_size' });
    expect(expectError(await post({ chunk: 5 }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ fields: ['chunk'] });
    const none = await h.database.db.query(`SELECT count(*)::int AS n FROM settlements`);
    expect(none.rows[0]).toEqual({ n: 0 });
  });
});

describe('a settlement through the API', () => {
  it('answers 201 at once, settles in the background, and reports per currency for the admin and each merchant', async () => {
    const aIds = [await pay(a), await pay(a), await pay(a, { amount: 20_000 })];
    const bIds = [await pay(b, { currency: 'USD', amount: 12_000 }), await pay(b, { currency: 'USD', amount: 25_000 })];
    // A partial refund before settlement is carried into the report.
    const refund = await call(h, 'POST', `/v1/payments/${aIds[0]}/refunds`, { key: a.key, body: { amount: 50_000 } });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
    expect(refund.body.status).toBe('succeeded');

    const cutoff = await dbNow(h.database.db);
    const lateId = await pay(a);

    const key = `settle_${Date.now().toString(36)}`;
    const started = await call(api, 'POST', '/v1/admin/settlements', {
      key: ADMIN_KEY,
      body: { cutoff: cutoff.toISOString(), chunk_size: 2 },
      headers: { 'idempotency-key': key },
    });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    expect(started.body).toMatchObject({
      object: 'settlement',
      status: 'pending',
      cutoff: cutoff.toISOString(),
      chunk_size: 2,
      checkpoint: null,
      counts: { settled: 0, errors: 0 },
      started_at: null,
      completed_at: null,
    });
    const id = started.body.id as string;
    expect(id).toMatch(/^stl_[0-9a-z]{26}$/);

    // The same key replays the same batch instead of starting another.
    const replay = await call(api, 'POST', '/v1/admin/settlements', {
      key: ADMIN_KEY,
      body: { cutoff: cutoff.toISOString(), chunk_size: 2 },
      headers: { 'idempotency-key': key },
    });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(id);

    const report = await completed(id);
    expect(report).toMatchObject({
      id,
      object: 'settlement',
      status: 'completed',
      counts: { settled: 5, errors: 0 },
      chunk_size: 2,
      chunks_completed: 3,
      chunk_failures: 0,
      error: null,
    });
    expect(report.totals).toEqual([
      { currency: 'INR', gross: 320_000, refunded: 50_000, net: 270_000 },
      { currency: 'USD', gross: 37_000, refunded: 0, net: 37_000 },
    ]);
    const batches = await h.database.db.query(`SELECT count(*)::int AS n FROM settlements`);
    expect(batches.rows[0]).toEqual({ n: 1 });

    for (const pid of aIds) expect((await payment(a, pid)).status).toBe('settled');
    for (const pid of bIds) expect((await payment(b, pid)).status).toBe('settled');
    expect((await payment(a, lateId)).status).toBe('captured');
    const history = await call(h, 'GET', `/v1/payments/${aIds[1]}/history`, { key: a.key });
    expect(history.body.data.at(-1)).toMatchObject({ from: 'captured', to: 'settled', cause: `settlement:${id}`, actor: 'worker:settlement', request_id: null });

    // Each merchant sees its own share only; a merchant with nothing in the batch sees nothing.
    const mine = await call(api, 'GET', `/v1/settlements/${id}`, { key: a.key });
    expect(mine.status).toBe(200);
    expect(mine.body).toMatchObject({ id, object: 'settlement', status: 'completed', merchant_id: a.id, counts: { settled: 3, errors: 0 } });
    expect(mine.body.totals).toEqual([{ currency: 'INR', gross: 320_000, refunded: 50_000, net: 270_000 }]);
    expect(mine.body).not.toHaveProperty('checkpoint');
    const theirs = await call(api, 'GET', `/v1/settlements/${id}`, { headers: { authorization: `Bearer ${b.key}` } });
    expect(theirs.status).toBe(200);
    expect(theirs.body).toMatchObject({ merchant_id: b.id, counts: { settled: 2, errors: 0 } });
    expect(theirs.body.totals).toEqual([{ currency: 'USD', gross: 37_000, refunded: 0, net: 37_000 }]);
    expectError(await call(api, 'GET', `/v1/settlements/${id}`, { key: idle.key }), 404, 'RESOURCE_NOT_FOUND');
    expectError(await call(api, 'GET', `/v1/settlements/${id}`, { key: ADMIN_KEY }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(api, 'GET', '/v1/settlements/stl_unknown', { key: a.key }), 404, 'RESOURCE_NOT_FOUND');

    // A settled payment can still be refunded (settled → refunded); the batch's figures stay those at settlement.
    const full = await call(h, 'POST', `/v1/payments/${aIds[2]}/refunds`, { key: a.key, body: {} });
    expect(full.status, JSON.stringify(full.body)).toBe(201);
    expect(full.body.status).toBe('succeeded');
    expect((await payment(a, aIds[2]!)).status).toBe('refunded');
    const again = await call(api, 'GET', `/v1/admin/settlements/${id}`, { key: ADMIN_KEY });
    expect(again.body.totals).toEqual(report.totals);

    // Re-running a completed batch is accepted and changes nothing.
    const rerun = await call(api, 'POST', `/v1/admin/settlements/${id}/run`, { key: ADMIN_KEY });
    expect(rerun.status).toBe(202);
    expect(rerun.body).toMatchObject({ id, status: 'completed', counts: { settled: 5, errors: 0 } });

    const list = await call(api, 'GET', '/v1/admin/settlements?status=completed&limit=5', { key: ADMIN_KEY });
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ object: 'list', has_more: false });
    expect(list.body.data.map((s: Json) => s.id)).toEqual([id]);
    expect((await call(api, 'GET', '/v1/admin/settlements?status=failed', { key: ADMIN_KEY })).body.data).toEqual([]);
    const errors = await call(api, 'GET', `/v1/admin/settlements/${id}/errors`, { key: ADMIN_KEY });
    expect(errors.body).toEqual({ object: 'list', data: [], has_more: false });
  });

  it('defaults the cutoff to now, reports item errors, and answers 404 for an unknown batch', async () => {
    const ok = await pay(a, { currency: 'EUR', amount: 70_000 });
    const held = await pay(b, { currency: 'EUR', amount: 30_000 });
    await h.database.db.query(`UPDATE payments SET reconciliation_status = 'manual_review' WHERE id = $1`, [held]);

    const started = await call(api, 'POST', '/v1/admin/settlements', { key: ADMIN_KEY });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const report = await completed(started.body.id as string);
    expect(report.counts).toEqual({ settled: 2, errors: 1 }); // `ok` and the late payment of the test before
    expect(report.chunk_size).toBe(1000);
    expect(report.totals).toContainEqual({ currency: 'EUR', gross: 70_000, refunded: 0, net: 70_000 });
    expect((await payment(a, ok)).status).toBe('settled');
    expect((await payment(b, held)).status).toBe('captured');

    const errors = await call(api, 'GET', `/v1/admin/settlements/${report.id}/errors`, { key: ADMIN_KEY });
    expect(errors.body.data).toEqual([expect.objectContaining({ payment_id: held, merchant_id: b.id, code: 'PAYMENT_MANUAL_REVIEW' })]);
    // The merchant whose payment was held sees the error count of its own share.
    const theirs = await call(api, 'GET', `/v1/settlements/${report.id}`, { key: b.key });
    expect(theirs.status).toBe(200);
    expect(theirs.body).toMatchObject({ counts: { settled: 0, errors: 1 }, totals: [] });

    expectError(await call(api, 'GET', '/v1/admin/settlements/stl_unknown', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
    expectError(await call(api, 'POST', '/v1/admin/settlements/stl_unknown/run', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
    expectError(await call(api, 'GET', '/v1/admin/settlements/stl_unknown/errors', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
  });
});
