/**
 * The narrowest crash window of SPEC §9: the process dies after the provider's outcome was
 * committed but before the idempotency key stored the response. A SIGKILL cannot be aimed at a
 * window of a millisecond, so each test runs the real request to its end and then puts the key
 * back exactly as such a crash leaves it (in_progress, lease lapsed, no stored response, recovery
 * point kept). A retry with the key must then answer what the original request would have
 * answered — and never act again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { attemptsOf, dbLedger, errorCode, ofOperation, paymentsForReference, paymentState, reference, refundsOf } from '../races/helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  // The tests rewrite finished keys in the database as a crashed process would have left them;
  // this process's cache of finished responses would answer before the database is read.
  h = await startHarness({ IDEMPOTENCY_CACHE_ENTRIES: '0' });
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } });
});
afterAll(async () => h?.close());

/** Puts a finished key back into the state a process killed just before completing it leaves. */
async function crashBeforeCompletion(key: string): Promise<void> {
  const r = await h.database.db.query(
    `UPDATE idempotency_keys
        SET state = 'in_progress', locked_until = now() - interval '1 second', response_status = NULL, response_body = NULL,
            recovery_point = CASE WHEN resource_id IS NULL THEN 'started' ELSE 'resource_created' END
      WHERE merchant_id = $1 AND key = $2 AND state = 'completed'`,
    [m.id, key],
  );
  expect(r.rowCount).toBe(1);
}

function post(path: string, key: string, body?: unknown): Promise<ApiResponse> {
  return call(h, 'POST', path, { key: m.key, headers: { 'idempotency-key': key }, ...(body === undefined ? {} : { body }) });
}

async function charges(paymentId: string): Promise<number> {
  const r = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM mock_provider_charges WHERE payment_id = $1', [paymentId]);
  return r.rows[0]!.n;
}

describe('killed between the outcome and the stored response', () => {
  it('a captured payment: the retry answers the captured payment, charges nothing more, then replays', async () => {
    const body = paymentBody({ reference_id: reference('window_ok') });
    const key = `window_ok_${String(body.reference_id)}`;
    const original = await post('/v1/payments', key, body);
    expect(original.status).toBe(201);
    const id = original.body.id as string;
    await crashBeforeCompletion(key);

    const retry = await post('/v1/payments', key, body);
    expect([200, 201]).toContain(retry.status);
    expect(retry.body.id).toBe(id);
    expect(retry.body.status).toBe('captured');
    expect(await attemptsOf(h.database.db, id)).toHaveLength(1);
    expect(ofOperation(await dbLedger(h.database.db, id), 'authorize')).toHaveLength(1);
    expect(await charges(id)).toBe(1);

    const replay = await post('/v1/payments', key, body);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(id);
  });

  it('a declined payment: the retry answers 402 PAYMENT_DECLINED again, not 201', async () => {
    const body = paymentBody({ payment_method_token: 'tok_decline', reference_id: reference('window_decline') });
    const key = `window_decline_${String(body.reference_id)}`;
    const original = await post('/v1/payments', key, body);
    expect(original.status).toBe(402);
    expect(errorCode(original.body)).toBe('PAYMENT_DECLINED');
    const id = original.body.error.details.payment_id as string;
    await crashBeforeCompletion(key);

    const retry = await post('/v1/payments', key, body);
    expect(retry.status, JSON.stringify(retry.body)).toBe(402);
    expect(errorCode(retry.body)).toBe('PAYMENT_DECLINED');
    expect(retry.body.error.details.payment_id).toBe(id);
    expect(retry.body.error.details.decline_code).toBe('card_declined');
    // Nothing was sent again, nothing new was created.
    expect((await attemptsOf(h.database.db, id)).map((a) => a.status)).toEqual(['failed']);
    expect(await charges(id)).toBe(1);
    expect(await paymentsForReference(h.database.db, m.id, String(body.reference_id))).toHaveLength(1);
    expect((await paymentState(h.database.db, id)).status).toBe('failed');

    const replay = await post('/v1/payments', key, body);
    expect(replay.status).toBe(402);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });

  it('a declined confirm: the retry answers 402 PAYMENT_DECLINED again, not 200', async () => {
    const created = await call(h, 'POST', '/v1/payments', {
      key: m.key,
      body: paymentBody({ confirm: false, payment_method_token: 'tok_decline', reference_id: reference('window_confirm') }),
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const key = `window_confirm_${id}`;
    const original = await post(`/v1/payments/${id}/confirm`, key);
    expect(original.status).toBe(402);
    await crashBeforeCompletion(key);

    const retry = await post(`/v1/payments/${id}/confirm`, key);
    expect(retry.status, JSON.stringify(retry.body)).toBe(402);
    expect(errorCode(retry.body)).toBe('PAYMENT_DECLINED');
    expect(retry.body.error.details.payment_id).toBe(id);
    expect(await attemptsOf(h.database.db, id)).toHaveLength(1);
    expect(await charges(id)).toBe(1);
  });

  it('a succeeded refund: the retry answers the same refund and refunds nothing more', async () => {
    const created = await call(h, 'POST', '/v1/payments', { key: m.key, body: paymentBody({ amount: 100_000, reference_id: reference('window_refund') }) });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const key = `window_refund_${id}`;
    const original = await post(`/v1/payments/${id}/refunds`, key, { amount: 40_000 });
    expect(original.status).toBe(201);
    await crashBeforeCompletion(key);

    const retry = await post(`/v1/payments/${id}/refunds`, key, { amount: 40_000 });
    expect([200, 201]).toContain(retry.status);
    expect(retry.body.id).toBe(original.body.id);
    expect(retry.body.status).toBe('succeeded');
    expect(await refundsOf(h.database.db, id)).toEqual([{ id: original.body.id, amount: 40_000, status: 'succeeded' }]);
    const ledger = ofOperation(await dbLedger(h.database.db, id), 'refund');
    expect(ledger.map((l) => l.amount)).toEqual([40_000]);
    expect((await paymentState(h.database.db, id)).amount_refunded).toBe(40_000);
  });
});
