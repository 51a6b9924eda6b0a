/**
 * Idempotency-Key on every POST (SPEC §9) over real HTTP and a real database: replays, conflicts,
 * reuse after validation refusals, stored declines, key validation, tenancy scoping, the
 * second-step operations, and a key still in use.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, startHarness, waitFor, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, expectError, getPayment, ledger, ops, type Json } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

let keySeq = 0;
const newKey = (label = 'k') => `idem-${label}-${process.pid}-${++keySeq}-${Math.random().toString(36).slice(2)}`;

const post = (key: string, path: string, payload: unknown, idem?: string, headers: Record<string, string> = {}) =>
  call(h, 'POST', path, { key, body: payload, headers: idem === undefined ? headers : { ...headers, 'idempotency-key': idem } });

async function byReference(key: string, reference: string): Promise<Json[]> {
  const res = await call(h, 'GET', `/v1/payments?reference_id=${encodeURIComponent(reference)}`, { key });
  expect(res.status).toBe(200);
  return res.body.data as Json[];
}

async function patchMerchant(id: string, payload: Record<string, unknown>): Promise<void> {
  const res = await call(h, 'PATCH', `/v1/admin/merchants/${id}`, { key: ADMIN_KEY, body: payload });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

function expectReplayOf(replay: ApiResponse, original: ApiResponse, status = original.status === 201 ? 200 : original.status): void {
  expect(replay.status, JSON.stringify(replay.body)).toBe(status);
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.body).toEqual(original.body);
}

function expectFresh(res: ApiResponse, status: number): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('idempotent-replayed')).toBeNull();
}

describe('replays', () => {
  it('same key + same body → the original response, 201 answered as 200, one payment, one authorization', async () => {
    const key = newKey();
    const b = body();
    const first = await post(m.key, '/v1/payments', b, key);
    expectFresh(first, 201);
    expect(first.body.status).toBe('captured');

    const second = await post(m.key, '/v1/payments', b, key);
    expectReplayOf(second, first);
    // The key order of the body does not matter (canonical JSON).
    const reordered = Object.fromEntries(Object.entries(b).reverse());
    const third = await post(m.key, '/v1/payments', reordered, key);
    expectReplayOf(third, first);

    expect(await byReference(m.key, b.reference_id as string)).toHaveLength(1);
    const rows = await ledger(h, first.body.id);
    expect(rows.filter((r) => r.operation === 'authorize')).toHaveLength(1);
    expect((await call(h, 'GET', `/v1/payments/${first.body.id}/attempts`, { key: m.key })).body.data).toHaveLength(1);
    // The replayed snapshot is the original one even after the payment has changed since.
    expect((await post(m.key, `/v1/payments/${first.body.id}/refunds`, { amount: 10_000 })).status).toBe(201);
    const fourth = await post(m.key, '/v1/payments', b, key);
    expectReplayOf(fourth, first);
    expect(fourth.body.amount_refunded).toBe(0);
  });

  it('same key + different body → 409 IDEMPOTENCY_KEY_REUSED, nothing created', async () => {
    const key = newKey();
    const b = body();
    expectFresh(await post(m.key, '/v1/payments', b, key), 201);
    const other = { ...b, amount: 150_001, reference_id: `${b.reference_id as string}-other` };
    expectError(await post(m.key, '/v1/payments', other, key), 409, 'IDEMPOTENCY_KEY_REUSED');
    expect(await byReference(m.key, other.reference_id)).toHaveLength(0);
    // Same body on another path is another request too.
    const created = await byReference(m.key, b.reference_id as string);
    expectError(await post(m.key, `/v1/payments/${created[0]!.id}/refunds`, undefined, key), 409, 'IDEMPOTENCY_KEY_REUSED');
    expect((await getPayment(h, m.key, created[0]!.id)).amount_refunded).toBe(0);
  });

  it('parallel requests with one key make exactly one payment', async () => {
    const key = newKey('par');
    const b = body();
    const results = await Promise.all(Array.from({ length: 6 }, () => post(m.key, '/v1/payments', b, key)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    for (const r of results) {
      if (r.status === 201) continue;
      if (r.status === 200) expect(r.headers.get('idempotent-replayed')).toBe('true');
      else expectError(r, 409, 'IDEMPOTENCY_KEY_IN_USE');
    }
    const payments = await byReference(m.key, b.reference_id as string);
    expect(payments).toHaveLength(1);
    expect(ops(await ledger(h, payments[0]!.id)).filter((o) => o === 'authorize')).toHaveLength(1);
  });
});

describe('what is stored and what is not', () => {
  it('after a 422 the key is free: the same key and body succeed once the merchant limit is raised', async () => {
    const mer = await createMerchant(h, {
      limits: { velocity: { max_payments: 1000, window_seconds: 300 }, payment_methods: { card: { min: 10_000 }, upi: { max: 10_000 } } },
    });
    const key = newKey('422');
    const b = body({ payment_method: 'upi', amount: 20_000 });
    const refused = await post(mer.key, '/v1/payments', b, key);
    expectError(refused, 422, 'RULE_AMOUNT_ABOVE_MAX', 'business');
    expect(refused.headers.get('idempotent-replayed')).toBeNull();
    // Refused again while the limit stands: evaluated afresh, not replayed.
    const again = await post(mer.key, '/v1/payments', b, key);
    expectError(again, 422, 'RULE_AMOUNT_ABOVE_MAX', 'business');
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.error.request_id).not.toBe(refused.body.error.request_id);

    await patchMerchant(mer.id, { limits: { payment_methods: { card: { min: 10_000 }, upi: { max: 50_000 } } } });
    const ok = await post(mer.key, '/v1/payments', b, key);
    expectFresh(ok, 201);
    expect(ok.body.status).toBe('captured');
    // From now on the key holds that result.
    expectReplayOf(await post(mer.key, '/v1/payments', b, key), ok);
    expect(await byReference(mer.key, b.reference_id as string)).toHaveLength(1);
  });

  it('after a 400 the key is free, even for a corrected body', async () => {
    const key = newKey('400');
    const b = body();
    expectError(await post(m.key, '/v1/payments', { ...b, amount: -1 }, key), 400, 'SCHEMA_INVALID_AMOUNT');
    expectError(await post(m.key, '/v1/payments', { ...b, payment_method_token: '4111111111111111' }, key), 400, 'SCHEMA_SENSITIVE_DATA');
    expectFresh(await post(m.key, '/v1/payments', b, key), 201);
  });

  it('after a 403 the key is free once the merchant is activated', async () => {
    const mer = await createMerchant(h, { onboarding_status: 'review', limits: HIGH_VELOCITY.limits });
    const key = newKey('403');
    const b = body();
    expectError(await post(mer.key, '/v1/payments', b, key), 403, 'ENTITY_MERCHANT_INACTIVE', 'entity');
    await patchMerchant(mer.id, { onboarding_status: 'activated' });
    expectFresh(await post(mer.key, '/v1/payments', b, key), 201);
  });

  it('after a 429 the key is free once the velocity limit is raised', async () => {
    const mer = await createMerchant(h, { limits: { velocity: { max_payments: 1, window_seconds: 300 } } });
    expectFresh(await post(mer.key, '/v1/payments', body(), newKey()), 201);
    const key = newKey('429');
    const b = body();
    const limited = await post(mer.key, '/v1/payments', b, key);
    expectError(limited, 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    await patchMerchant(mer.id, { limits: { velocity: { max_payments: 5, window_seconds: 300 } } });
    expectFresh(await post(mer.key, '/v1/payments', b, key), 201);
  });

  it('after a 401 nothing is stored for the key', async () => {
    const key = newKey('401');
    expectError(await post('sk_test_wrong', '/v1/payments', body(), key), 401, 'AUTH_INVALID_API_KEY');
    const rows = await h.database.db.query('SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1', [key]);
    expect(rows.rows[0].n).toBe(0);
  });

  it('a decline (402) is stored and replayed; the provider is not asked again', async () => {
    const key = newKey('402');
    const b = body({ payment_method_token: 'tok_decline' });
    const first = await post(m.key, '/v1/payments', b, key);
    const err = expectError(first, 402, 'PAYMENT_DECLINED');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const paymentId = err.details.payment_id as string;

    const replay = await post(m.key, '/v1/payments', b, key);
    expectReplayOf(replay, first, 402);
    const payments = await byReference(m.key, b.reference_id as string);
    expect(payments.map((p) => [p.id, p.status])).toEqual([[paymentId, 'failed']]);
    const attempts = (await call(h, 'GET', `/v1/payments/${paymentId}/attempts`, { key: m.key })).body.data;
    expect(attempts).toHaveLength(1);
    // A new key is a new payment for the same (now free) reference.
    const retry = await post(m.key, '/v1/payments', { ...b, payment_method_token: 'tok_success' }, newKey());
    expectFresh(retry, 201);
    expect(retry.body.id).not.toBe(paymentId);
  });
});

describe('key validation and scope', () => {
  it.each([
    ['empty', ''],
    ['256 characters', 'k'.repeat(256)],
    ['a tab inside', 'abc\tdef'],
    ['a non-ASCII character', 'cl\u00e9'],
  ])('a key that is %s → 400 IDEMPOTENCY_KEY_INVALID and nothing is created', async (_what, key) => {
    const b = body();
    expectError(await post(m.key, '/v1/payments', b, key), 400, 'IDEMPOTENCY_KEY_INVALID');
    expect(await byReference(m.key, b.reference_id as string)).toHaveLength(0);
  });

  it('a key of 255 printable characters is valid', async () => {
    const key = `${newKey('max')}-`.padEnd(255, '~');
    expect(key).toHaveLength(255);
    const b = body();
    const first = await post(m.key, '/v1/payments', b, key);
    expectFresh(first, 201);
    expectReplayOf(await post(m.key, '/v1/payments', b, key), first);
  });

  it('invalid keys are refused on the other POST endpoints too', async () => {
    const p = (await post(m.key, '/v1/payments', body(), undefined)).body;
    expectError(await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 1_000 }, 'x'.repeat(300)), 400, 'IDEMPOTENCY_KEY_INVALID');
    expect((await getPayment(h, m.key, p.id)).amount_refunded).toBe(0);
  });

  it('keys are scoped per merchant: the same key and body make one payment for each', async () => {
    const other = await createMerchant(h, HIGH_VELOCITY);
    const key = newKey('scope');
    const b = body();
    const forM = await post(m.key, '/v1/payments', b, key);
    const forOther = await post(other.key, '/v1/payments', b, key);
    expectFresh(forM, 201);
    expectFresh(forOther, 201);
    expect(forOther.body.id).not.toBe(forM.body.id);
    expect(await byReference(m.key, b.reference_id as string)).toHaveLength(1);
    expect(await byReference(other.key, b.reference_id as string)).toHaveLength(1);
    // And a different body under that key for the other merchant does not conflict with m's.
    expectError(await post(other.key, '/v1/payments', { ...b, amount: 200_000 }, key), 409, 'IDEMPOTENCY_KEY_REUSED');
  });
});

describe('second-step operations', () => {
  it('confirm is replayed, not repeated', async () => {
    const p = (await post(m.key, '/v1/payments', body({ confirm: false }))).body;
    const key = newKey('confirm');
    const first = await post(m.key, `/v1/payments/${p.id}/confirm`, undefined, key);
    expectFresh(first, 200);
    expect(first.body.status).toBe('captured');
    expectReplayOf(await post(m.key, `/v1/payments/${p.id}/confirm`, undefined, key), first, 200);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'capture']);
    // Without the key, a repeat is a state error, which proves the replay did not run the confirm.
    expectError(await post(m.key, `/v1/payments/${p.id}/confirm`, undefined), 409, 'PAYMENT_INVALID_STATE');
  });

  it('capture is replayed, not repeated', async () => {
    const p = (await post(m.key, '/v1/payments', body({ capture_method: 'manual' }))).body;
    const key = newKey('capture');
    const first = await post(m.key, `/v1/payments/${p.id}/capture`, { amount: 50_000 }, key);
    expectFresh(first, 200);
    expect(first.body.amount_captured).toBe(50_000);
    expectReplayOf(await post(m.key, `/v1/payments/${p.id}/capture`, { amount: 50_000 }, key), first, 200);
    expect((await ledger(h, p.id)).map((r) => [r.operation, r.amount])).toEqual([['authorize', 150_000], ['capture', 50_000]]);
    expectError(await post(m.key, `/v1/payments/${p.id}/capture`, { amount: 60_000 }, key), 409, 'IDEMPOTENCY_KEY_REUSED');
  });

  it('cancel is replayed, not repeated', async () => {
    const p = (await post(m.key, '/v1/payments', body({ capture_method: 'manual' }))).body;
    const key = newKey('cancel');
    const first = await post(m.key, `/v1/payments/${p.id}/cancel`, { reason: 'duplicate order' }, key);
    expectFresh(first, 200);
    expect(first.body.status).toBe('canceled');
    expectReplayOf(await post(m.key, `/v1/payments/${p.id}/cancel`, { reason: 'duplicate order' }, key), first, 200);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'void']);
  });

  it('a replayed refund does not refund twice', async () => {
    const p = (await post(m.key, '/v1/payments', body())).body;
    const key = newKey('refund');
    const first = await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 50_000 }, key);
    expectFresh(first, 201);
    expect(first.body.status).toBe('succeeded');
    const replay = await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 50_000 }, key);
    expectReplayOf(replay, first);
    expect(replay.body.id).toBe(first.body.id);

    const now = await getPayment(h, m.key, p.id);
    expect(now.amount_refunded).toBe(50_000);
    expect((await call(h, 'GET', `/v1/payments/${p.id}/refunds`, { key: m.key })).body.data).toHaveLength(1);
    expect((await ledger(h, p.id)).filter((r) => r.operation === 'refund').map((r) => r.amount)).toEqual([50_000]);

    // Another key is another refund.
    const second = await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 50_000 }, newKey('refund'));
    expectFresh(second, 201);
    expect(second.body.id).not.toBe(first.body.id);
    expect((await getPayment(h, m.key, p.id)).amount_refunded).toBe(100_000);
    expect((await ledger(h, p.id)).filter((r) => r.operation === 'refund')).toHaveLength(2);
  });

  it('a refused refund (422) leaves its key free', async () => {
    const p = (await post(m.key, '/v1/payments', body())).body;
    const key = newKey('refund422');
    expectError(await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 150_001 }, key), 422, 'RULE_REFUND_AMOUNT_EXCEEDS');
    const ok = await post(m.key, `/v1/payments/${p.id}/refunds`, { amount: 1_000 }, key);
    expectFresh(ok, 201);
  });
});

describe('a key still in use', () => {
  it('→ 409 IDEMPOTENCY_KEY_IN_USE with Retry-After while the first request runs; then the result is replayed', async () => {
    const key = newKey('inuse');
    const b = body({ payment_method_token: 'tok_timeout_uncharged' });
    const started = Date.now();
    const firstP = post(m.key, '/v1/payments', b, key);
    // The first request holds the key while the connector call hangs (read timeout 1.5 s).
    await waitFor(async () => {
      const r = await h.database.db.query("SELECT state FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND state = 'in_progress' AND resource_id IS NOT NULL", [m.id, key]);
      return r.rows.length > 0 ? true : undefined;
    }, 10_000, 'the first request to hold the key');

    const second = await post(m.key, '/v1/payments', b, key);
    expectError(second, 409, 'IDEMPOTENCY_KEY_IN_USE');
    const retryAfter = second.headers.get('retry-after');
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeLessThanOrEqual(h.config.IDEMPOTENCY_LOCK_SECONDS);
    // A different body under the running key is a reuse, not "in use".
    expectError(await post(m.key, '/v1/payments', { ...b, amount: 160_000 }, key), 409, 'IDEMPOTENCY_KEY_REUSED');

    const first = await firstP;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expectFresh(first, 201);
    expect(first.body.status).toBe('processing');
    expect(await ledger(h, first.body.id)).toEqual([]);

    const third = await post(m.key, '/v1/payments', b, key);
    expectReplayOf(third, first);
    expect(await byReference(m.key, b.reference_id as string)).toHaveLength(1);
  });
});
