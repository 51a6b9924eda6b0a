/**
 * Operations on payments (SPEC §6, §8, §12 envelope): confirm, capture, cancel, refunds, declines,
 * the double-charge guard, timeouts, the audit trail, events, attempts and listing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canTransition, type PaymentStatus } from '../../src/domain/state-machine.js';
import { call, createMerchant, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, expectError, getPayment, ledger, ops, ref, type Json } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const post = (path: string, payload?: unknown, headers?: Record<string, string>) => call(h, 'POST', path, { key: m.key, body: payload, headers });
const get = (path: string) => call(h, 'GET', path, { key: m.key });

async function create(overrides: Record<string, unknown> = {}, headers?: Record<string, string>): Promise<Json> {
  const res = await post('/v1/payments', body(overrides), headers);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

describe('confirm', () => {
  it('confirm=false creates a pending payment that nothing was sent for; confirm captures it', async () => {
    const p = await create({ confirm: false });
    expect(p.status).toBe('pending');
    expect(p.amount_captured).toBe(0);
    expect(p.amount_capturable).toBe(0);
    expect(await ledger(h, p.id)).toEqual([]);
    expect((await get(`/v1/payments/${p.id}/attempts`)).body.data).toEqual([]);

    const confirmed = await post(`/v1/payments/${p.id}/confirm`);
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    expect(confirmed.body.id).toBe(p.id);
    expect(confirmed.body.status).toBe('captured');
    expect(confirmed.body.amount_captured).toBe(p.amount);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'capture']);
    expect((await getPayment(h, m.key, p.id)).status).toBe('captured');
  });

  it('confirm of a pending manual-capture payment authorizes it', async () => {
    const p = await create({ confirm: false, capture_method: 'manual' });
    const confirmed = await post(`/v1/payments/${p.id}/confirm`, {});
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    expect(confirmed.body.status).toBe('authorized');
    expect(confirmed.body.amount_capturable).toBe(p.amount);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize']);
  });

  it('confirm of a non-pending payment → 409 PAYMENT_INVALID_STATE and no second charge', async () => {
    const p = await create();
    const err = expectError(await post(`/v1/payments/${p.id}/confirm`), 409, 'PAYMENT_INVALID_STATE');
    expect(err.details).toMatchObject({ payment_id: p.id, status: 'captured' });
    const authorized = await create({ capture_method: 'manual' });
    expectError(await post(`/v1/payments/${authorized.id}/confirm`), 409, 'PAYMENT_INVALID_STATE');
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'capture']);
    expect(ops(await ledger(h, authorized.id))).toEqual(['authorize']);
    expect((await get(`/v1/payments/${p.id}/attempts`)).body.data).toHaveLength(1);
  });

  it('confirm refuses a body with fields', async () => {
    const p = await create({ confirm: false });
    expectError(await post(`/v1/payments/${p.id}/confirm`, { amount: 5 }), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    expect((await getPayment(h, m.key, p.id)).status).toBe('pending');
  });
});

describe('capture', () => {
  it('captures part of an authorized payment and releases the rest', async () => {
    const p = await create({ capture_method: 'manual' });
    expect(p.status).toBe('authorized');
    expect(p.amount_capturable).toBe(150_000);
    const res = await post(`/v1/payments/${p.id}/capture`, { amount: 100_000 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.status).toBe('captured');
    expect(res.body.amount_captured).toBe(100_000);
    expect(res.body.amount_capturable).toBe(0);
    expect(res.body.amount).toBe(150_000);
    const rows = await ledger(h, p.id);
    expect(rows.map((r) => [r.operation, r.amount])).toEqual([['authorize', 150_000], ['capture', 100_000]]);
    // Captured already: a second capture is a state error.
    expectError(await post(`/v1/payments/${p.id}/capture`, { amount: 1 }), 409, 'PAYMENT_INVALID_STATE');
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'capture']);
  });

  it('capture above the capturable amount → 422 RULE_CAPTURE_AMOUNT_EXCEEDS; then a full capture without amount', async () => {
    const p = await create({ capture_method: 'manual' });
    const err = expectError(await post(`/v1/payments/${p.id}/capture`, { amount: 150_001 }), 422, 'RULE_CAPTURE_AMOUNT_EXCEEDS');
    expect(err.details).toMatchObject({ amount_capturable: 150_000 });
    const still = await getPayment(h, m.key, p.id);
    expect(still.status).toBe('authorized');
    expect(still.amount_capturable).toBe(150_000);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize']);

    const full = await post(`/v1/payments/${p.id}/capture`);
    expect(full.status, JSON.stringify(full.body)).toBe(200);
    expect(full.body.status).toBe('captured');
    expect(full.body.amount_captured).toBe(150_000);
    expect(full.body.amount_capturable).toBe(0);
  });

  it('capture of a pending payment → 409, and schema errors for a bad amount', async () => {
    const p = await create({ confirm: false, capture_method: 'manual' });
    expectError(await post(`/v1/payments/${p.id}/capture`), 409, 'PAYMENT_INVALID_STATE');
    const auth = await create({ capture_method: 'manual' });
    expectError(await post(`/v1/payments/${auth.id}/capture`, { amount: 0 }), 400, 'SCHEMA_INVALID_AMOUNT');
    expectError(await post(`/v1/payments/${auth.id}/capture`, { amount: 10.5 }), 400, 'SCHEMA_INVALID_AMOUNT');
    expect((await getPayment(h, m.key, auth.id)).status).toBe('authorized');
  });
});

describe('cancel', () => {
  it('cancels a pending payment without touching the provider', async () => {
    const p = await create({ confirm: false });
    const res = await post(`/v1/payments/${p.id}/cancel`, { reason: 'customer left' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.status).toBe('canceled');
    expect(await ledger(h, p.id)).toEqual([]);
    const history = (await get(`/v1/payments/${p.id}/history`)).body.data as Json[];
    expect(history.map((x) => [x.from, x.to])).toEqual([[null, 'pending'], ['pending', 'canceled']]);
  });

  it('voids an authorized payment: canceled, with a void ledger row', async () => {
    const p = await create({ capture_method: 'manual' });
    const res = await post(`/v1/payments/${p.id}/cancel`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.status).toBe('canceled');
    expect(res.body.amount_capturable).toBe(0);
    expect(res.body.amount_captured).toBe(0);
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'void']);
    const attempts = (await get(`/v1/payments/${p.id}/attempts`)).body.data as Json[];
    expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'succeeded'], ['void', 'succeeded']]);
  });

  it('cancel of a captured or already canceled payment → 409', async () => {
    const p = await create();
    const err = expectError(await post(`/v1/payments/${p.id}/cancel`), 409, 'PAYMENT_INVALID_STATE');
    expect(err.details).toMatchObject({ payment_id: p.id, status: 'captured' });
    expect(ops(await ledger(h, p.id))).toEqual(['authorize', 'capture']);
    const q = await create({ confirm: false });
    expect((await post(`/v1/payments/${q.id}/cancel`)).status).toBe(200);
    expectError(await post(`/v1/payments/${q.id}/cancel`), 409, 'PAYMENT_INVALID_STATE');
    expectError(await post(`/v1/payments/${q.id}/confirm`), 409, 'PAYMENT_INVALID_STATE');
    expect(await ledger(h, q.id)).toEqual([]);
  });
});

describe('refunds', () => {
  it('partial refunds raise amount_refunded; the remainder (no amount) makes the payment refunded', async () => {
    const p = await create();
    const r1 = await post(`/v1/payments/${p.id}/refunds`, { amount: 50_000, reason: 'damaged' });
    expect(r1.status, JSON.stringify(r1.body)).toBe(201);
    expect(r1.body).toMatchObject({ object: 'refund', payment_id: p.id, amount: 50_000, currency: 'INR', status: 'succeeded', reason: 'damaged' });
    expect(r1.body.id).toMatch(/^re_[0-9a-z]+$/);
    let now = await getPayment(h, m.key, p.id);
    expect(now.status).toBe('captured');
    expect(now.amount_refunded).toBe(50_000);

    const r2 = await post(`/v1/payments/${p.id}/refunds`, { amount: 30_000 });
    expect(r2.status).toBe(201);
    expect(r2.body.status).toBe('succeeded');
    now = await getPayment(h, m.key, p.id);
    expect(now.status).toBe('captured');
    expect(now.amount_refunded).toBe(80_000);

    const r3 = await post(`/v1/payments/${p.id}/refunds`);
    expect(r3.status, JSON.stringify(r3.body)).toBe(201);
    expect(r3.body.amount).toBe(70_000);
    expect(r3.body.status).toBe('succeeded');
    now = await getPayment(h, m.key, p.id);
    expect(now.status).toBe('refunded');
    expect(now.amount_refunded).toBe(150_000);

    const list = await get(`/v1/payments/${p.id}/refunds`);
    expect(list.status).toBe(200);
    expect((list.body.data as Json[]).map((r) => [r.id, r.amount, r.status])).toEqual([
      [r1.body.id, 50_000, 'succeeded'],
      [r2.body.id, 30_000, 'succeeded'],
      [r3.body.id, 70_000, 'succeeded'],
    ]);
    const refundRows = (await ledger(h, p.id)).filter((r) => r.operation === 'refund');
    expect(refundRows.map((r) => r.amount)).toEqual([50_000, 30_000, 70_000]);

    // GET /v1/refunds/{id}
    const got = await get(`/v1/refunds/${r2.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(r2.body);

    // Nothing is left to refund, and the payment is terminal.
    expectError(await post(`/v1/payments/${p.id}/refunds`, { amount: 1 }), 409, 'PAYMENT_INVALID_STATE');
    expect((await ledger(h, p.id)).filter((r) => r.operation === 'refund')).toHaveLength(3);

    const events = ((await get(`/v1/payments/${p.id}/events`)).body.data as Json[]).map((e) => e.type);
    expect(events.filter((t) => t === 'refund.created')).toHaveLength(3);
    expect(events.filter((t) => t === 'refund.succeeded')).toHaveLength(3);
    expect(events.filter((t) => t === 'payment.refunded')).toHaveLength(1);
  });

  it('refund above the remaining amount → 422 RULE_REFUND_AMOUNT_EXCEEDS, nothing refunded', async () => {
    const p = await create();
    expect((await post(`/v1/payments/${p.id}/refunds`, { amount: 100_000 })).status).toBe(201);
    const err = expectError(await post(`/v1/payments/${p.id}/refunds`, { amount: 50_001 }), 422, 'RULE_REFUND_AMOUNT_EXCEEDS');
    expect(err.details).toMatchObject({ refundable: 50_000 });
    const now = await getPayment(h, m.key, p.id);
    expect(now.amount_refunded).toBe(100_000);
    expect(now.status).toBe('captured');
    expect((await get(`/v1/payments/${p.id}/refunds`)).body.data).toHaveLength(1);
    expect((await ledger(h, p.id)).filter((r) => r.operation === 'refund')).toHaveLength(1);
    // Exactly the rest is fine.
    const rest = await post(`/v1/payments/${p.id}/refunds`, { amount: 50_000 });
    expect(rest.status).toBe(201);
    expect((await getPayment(h, m.key, p.id)).status).toBe('refunded');
  });

  it('refunds of a partial capture are bounded by the captured amount, not the payment amount', async () => {
    const p = await create({ capture_method: 'manual' });
    expect((await post(`/v1/payments/${p.id}/capture`, { amount: 60_000 })).status).toBe(200);
    expectError(await post(`/v1/payments/${p.id}/refunds`, { amount: 60_001 }), 422, 'RULE_REFUND_AMOUNT_EXCEEDS');
    const all = await post(`/v1/payments/${p.id}/refunds`);
    expect(all.status).toBe(201);
    expect(all.body.amount).toBe(60_000);
    const now = await getPayment(h, m.key, p.id);
    expect(now.status).toBe('refunded');
    expect(now.amount_refunded).toBe(60_000);
  });

  it('refund of an authorized (or pending, or failed) payment → 409', async () => {
    const auth = await create({ capture_method: 'manual' });
    const err = expectError(await post(`/v1/payments/${auth.id}/refunds`, { amount: 1_000 }), 409, 'PAYMENT_INVALID_STATE');
    expect(err.details).toMatchObject({ payment_id: auth.id, status: 'authorized' });
    const pending = await create({ confirm: false });
    expectError(await post(`/v1/payments/${pending.id}/refunds`), 409, 'PAYMENT_INVALID_STATE');
    const declined = await post('/v1/payments', body({ payment_method_token: 'tok_decline' }));
    expect(declined.status).toBe(402);
    expectError(await post(`/v1/payments/${declined.body.error.details.payment_id}/refunds`), 409, 'PAYMENT_INVALID_STATE');
    expect(ops(await ledger(h, auth.id))).toEqual(['authorize']);
    expect((await get(`/v1/payments/${auth.id}/refunds`)).body.data).toEqual([]);
  });
});

describe('declines and the double-charge guard', () => {
  it.each([
    ['tok_decline', 'card_declined'],
    ['tok_insufficient_funds', 'insufficient_funds'],
  ])('%s → 402 PAYMENT_DECLINED, payment failed, and the reference may be used again', async (token, code) => {
    const reference = body().reference_id as string;
    const res = await post('/v1/payments', body({ payment_method_token: token, reference_id: reference }));
    const err = expectError(res, 402, 'PAYMENT_DECLINED');
    expect(err.details.decline_code).toBe(code);
    const paymentId = err.details.payment_id as string;
    expect(paymentId).toMatch(/^pay_/);
    const failed = await getPayment(h, m.key, paymentId);
    expect(failed.status).toBe('failed');
    expect(failed.failure_code).toBe(code);
    expect(failed.reference_id).toBe(reference);
    expect(failed.amount_captured).toBe(0);
    expect(await ledger(h, paymentId)).toEqual([]);
    const history = (await get(`/v1/payments/${paymentId}/history`)).body.data as Json[];
    // pending → failed directly, or through processing: either way only legal steps, ending failed.
    expect(history[0]).toMatchObject({ from: null, to: 'pending' });
    expect(history[history.length - 1]!.to).toBe('failed');
    for (const step of history.slice(1)) expect(canTransition(step.from, step.to), `${step.from} → ${step.to}`).toBe(true);
    const attempts = (await get(`/v1/payments/${paymentId}/attempts`)).body.data as Json[];
    expect(attempts.map((a) => [a.operation, a.status, a.error_code])).toEqual([['authorize', 'failed', code]]);

    const retry = await post('/v1/payments', body({ reference_id: reference }));
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.body.id).not.toBe(paymentId);
    expect(retry.body.status).toBe('captured');
    const both = await get(`/v1/payments?reference_id=${encodeURIComponent(reference)}`);
    expect((both.body.data as Json[]).map((p) => p.status).sort()).toEqual(['captured', 'failed']);
  });

  it('a second live payment for a reference → 409 PAYMENT_REFERENCE_IN_USE naming the first', async () => {
    const first = await create();
    const res = await post('/v1/payments', body({ reference_id: first.reference_id, amount: 20_000 }));
    const err = expectError(res, 409, 'PAYMENT_REFERENCE_IN_USE');
    expect(err.details.payment_id).toBe(first.id);
    const list = await get(`/v1/payments?reference_id=${encodeURIComponent(first.reference_id)}`);
    expect(list.body.data).toHaveLength(1);
    // Also when the first is only pending or authorized...
    const pending = await create({ confirm: false });
    expect(expectError(await post('/v1/payments', body({ reference_id: pending.reference_id })), 409, 'PAYMENT_REFERENCE_IN_USE').details.payment_id).toBe(pending.id);
    // ...and the reference is free again once the pending one is canceled.
    expect((await post(`/v1/payments/${pending.id}/cancel`)).status).toBe(200);
    const again = await post('/v1/payments', body({ reference_id: pending.reference_id }));
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    // A refunded payment still holds its reference.
    expect((await post(`/v1/payments/${first.id}/refunds`)).status).toBe(201);
    expect(expectError(await post('/v1/payments', body({ reference_id: first.reference_id })), 409, 'PAYMENT_REFERENCE_IN_USE').details.payment_id).toBe(first.id);
  });
});

describe('unknown and asynchronous outcomes', () => {
  it('tok_timeout_charged → 201 processing (never failed), attempt unknown, exactly one authorization at the provider', async () => {
    const res = await post('/v1/payments', body({ payment_method_token: 'tok_timeout_charged' }));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('processing');
    expect(res.body.failure_code).toBeNull();
    const attempts = (await get(`/v1/payments/${res.body.id}/attempts`)).body.data as Json[];
    expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'unknown']]);
    const rows = await ledger(h, res.body.id);
    expect(rows.filter((r) => r.operation === 'authorize')).toHaveLength(1);
    expect(rows[0]!.idempotency_key).toBe(attempts[0]!.id);
    // Never failed: still processing, or captured if the outcome has already arrived.
    expect(['processing', 'captured']).toContain((await getPayment(h, m.key, res.body.id)).status);
    // The reference is held: the charge may well have happened.
    expectError(await post('/v1/payments', body({ reference_id: res.body.reference_id })), 409, 'PAYMENT_REFERENCE_IN_USE');
    // Confirming again does not call the provider a second time.
    expectError(await post(`/v1/payments/${res.body.id}/confirm`), 409, 'PAYMENT_INVALID_STATE');
    expect((await ledger(h, res.body.id)).filter((r) => r.operation === 'authorize')).toHaveLength(1);
  });

  it('tok_async → 201 processing', async () => {
    const res = await post('/v1/payments', body({ payment_method_token: 'tok_async' }));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('processing');
    const history = (await get(`/v1/payments/${res.body.id}/history`)).body.data as Json[];
    // The provider's webhook may already have moved it on (about 1 s later): only legal steps after.
    expect(history.slice(0, 2).map((x) => [x.from, x.to])).toEqual([[null, 'pending'], ['pending', 'processing']]);
    for (const step of history.slice(2)) expect(canTransition(step.from, step.to), `${step.from} → ${step.to}`).toBe(true);
    const attempts = (await get(`/v1/payments/${res.body.id}/attempts`)).body.data as Json[];
    expect(attempts.map((a) => a.operation)).toEqual(['authorize']);
    expect(attempts[0]!.status).not.toBe('failed');
    // The provider settles it about 1 s later: one authorization, never two.
    const settled = await waitFor(async () => {
      const rows = await ledger(h, res.body.id);
      return rows.length >= 2 ? rows : undefined;
    }, 10_000, 'the provider to settle the asynchronous charge');
    expect(ops(settled)).toEqual(['authorize', 'capture']);
    expect(settled[0]!.idempotency_key).toBe(attempts[0]!.id);
    expect(['processing', 'captured']).toContain((await getPayment(h, m.key, res.body.id)).status);
  });
});

describe('audit trail, events and attempts', () => {
  it('history lists every transition in order, each a legal step, with the causing request id', async () => {
    const requestId = `req-history-${ref()}`;
    const p = await create({ capture_method: 'manual' }, { 'x-request-id': requestId });
    const captureId = `${requestId}-capture`;
    expect((await post(`/v1/payments/${p.id}/capture`, { amount: 100_000 }, { 'x-request-id': captureId })).status).toBe(200);
    const refundId = `${requestId}-refund`;
    expect((await post(`/v1/payments/${p.id}/refunds`, undefined, { 'x-request-id': refundId })).status).toBe(201);

    const res = await get(`/v1/payments/${p.id}/history`);
    expect(res.status).toBe(200);
    const history = res.body.data as Json[];
    expect(history.map((x) => [x.from, x.to])).toEqual([
      [null, 'pending'],
      ['pending', 'processing'],
      ['processing', 'authorized'],
      ['authorized', 'captured'],
      ['captured', 'refunded'],
    ]);
    for (let i = 0; i < history.length; i++) {
      const step = history[i]!;
      if (i === 0) expect(step.from).toBeNull();
      else {
        expect(step.from).toBe(history[i - 1]!.to);
        expect(canTransition(step.from as PaymentStatus, step.to as PaymentStatus), `${step.from} → ${step.to}`).toBe(true);
        expect(Date.parse(step.created_at)).toBeGreaterThanOrEqual(Date.parse(history[i - 1]!.created_at));
      }
      expect(typeof step.cause).toBe('string');
      expect(step.actor).toBe(`merchant:${m.id}`);
    }
    expect(history.map((x) => x.request_id)).toEqual([requestId, requestId, requestId, captureId, refundId]);
  });

  it('events: strictly increasing sequence from 1, the documented envelope, correlation ids of their requests', async () => {
    const requestId = `req-events-${ref()}`;
    const p = await create({}, { 'x-request-id': requestId });
    const refundRequest = `${requestId}-refund`;
    const refund = await post(`/v1/payments/${p.id}/refunds`, { amount: 20_000 }, { 'x-request-id': refundRequest });
    expect(refund.status).toBe(201);

    const res = await get(`/v1/payments/${p.id}/events`);
    expect(res.status).toBe(200);
    const events = res.body.data as Json[];
    expect(events.map((e) => e.type)).toEqual(['payment.created', 'payment.processing', 'payment.captured', 'refund.created', 'refund.succeeded']);
    expect(events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
    const ids = new Set<string>();
    for (const e of events) {
      expect(e.id).toMatch(/^evt_[0-9a-z]+$/);
      ids.add(e.id);
      expect(e.version).toBe('1.0');
      expect(new Date(e.created_at).toISOString()).toBe(e.created_at);
      expect(typeof e.source).toBe('string');
      expect(e.source.length).toBeGreaterThan(0);
      expect(e.data).toHaveProperty('object');
    }
    expect(ids.size).toBe(events.length);
    expect(events.map((e) => e.correlation_id)).toEqual([requestId, requestId, requestId, refundRequest, refundRequest]);
    expect(events.slice(0, 3).map((e) => e.previous_status)).toEqual([null, 'pending', 'processing']);
    expect(events.slice(0, 3).map((e) => [e.data.object.id, e.data.object.object, e.data.object.status])).toEqual([
      [p.id, 'payment', 'pending'],
      [p.id, 'payment', 'processing'],
      [p.id, 'payment', 'captured'],
    ]);
    expect(events[2]!.data.object.amount_captured).toBe(150_000);
    expect(events.slice(3).map((e) => [e.data.object.id, e.data.object.object, e.data.object.status])).toEqual([
      [refund.body.id, 'refund', 'pending'],
      [refund.body.id, 'refund', 'succeeded'],
    ]);
  });

  it('events of a declined payment end in payment.failed', async () => {
    const res = await post('/v1/payments', body({ payment_method_token: 'tok_decline' }));
    expect(res.status).toBe(402);
    const events = (await get(`/v1/payments/${res.body.error.details.payment_id}/events`)).body.data as Json[];
    expect(events.map((e) => e.sequence)).toEqual(events.map((_e, i) => i + 1));
    expect(events[0]).toMatchObject({ type: 'payment.created', previous_status: null });
    const last = events[events.length - 1]!;
    expect(last.type).toBe('payment.failed');
    expect(last.data.object.status).toBe('failed');
    expect(last.data.object.failure_code).toBe('card_declined');
    expect(canTransition(last.previous_status, 'failed')).toBe(true);
    expect(events.map((e) => e.type)).not.toContain('payment.captured');
    expect(events.every((e) => e.correlation_id === res.headers.get('x-request-id'))).toBe(true);
  });

  it('attempts show the authorization, whose id is the provider idempotency key in the ledger', async () => {
    const p = await create({ capture_method: 'manual' });
    const res = await get(`/v1/payments/${p.id}/attempts`);
    expect(res.status).toBe(200);
    const attempts = res.body.data as Json[];
    expect(attempts).toHaveLength(1);
    const att = attempts[0]!;
    expect(att.id).toMatch(/^att_[0-9a-z]+$/);
    expect(att).toMatchObject({ payment_id: p.id, operation: 'authorize', connector: 'mock', status: 'succeeded', amount: 150_000 });
    const rows = await ledger(h, p.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.idempotency_key).toBe(att.id);
    expect(rows[0]!.provider_reference).toBe(att.provider_reference);

    expect((await post(`/v1/payments/${p.id}/capture`, { amount: 40_000 })).status).toBe(200);
    const after = (await get(`/v1/payments/${p.id}/attempts`)).body.data as Json[];
    expect(after.map((a) => [a.operation, a.status, a.amount])).toEqual([
      ['authorize', 'succeeded', 150_000],
      ['capture', 'succeeded', 40_000],
    ]);
    const rows2 = await ledger(h, p.id);
    expect(rows2.map((r) => r.idempotency_key)).toEqual(after.map((a) => a.id));
  });
});

describe('listing payments', () => {
  let lm: MerchantWithKey;
  const made: Json[] = [];

  beforeAll(async () => {
    lm = await createMerchant(h, HIGH_VELOCITY);
    const kinds: Record<string, unknown>[] = [{}, { confirm: false }, {}, { capture_method: 'manual' }, {}, { confirm: false }, {}];
    for (const kind of kinds) {
      const res = await call(h, 'POST', '/v1/payments', { key: lm.key, body: body(kind) });
      expect(res.status).toBe(201);
      made.push(res.body);
    }
    const declined = await call(h, 'POST', '/v1/payments', { key: lm.key, body: body({ payment_method_token: 'tok_decline' }) });
    expect(declined.status).toBe(402);
    made.push(await getPayment(h, lm.key, declined.body.error.details.payment_id));
  });

  const list = (query: string) => call(h, 'GET', `/v1/payments${query}`, { key: lm.key });

  it('pages newest first with limit, starting_after and has_more: no duplicates, no gaps', async () => {
    const expected = [...made].reverse().map((p) => p.id);
    const seen: string[] = [];
    let cursor: string | undefined;
    const pages: number[] = [];
    for (let guard = 0; guard < 10; guard++) {
      const res = await list(`?limit=3${cursor ? `&starting_after=${cursor}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.object).toBe('list');
      const ids = (res.body.data as { id: string }[]).map((p) => p.id);
      pages.push(ids.length);
      seen.push(...ids);
      if (!res.body.has_more) break;
      expect(ids).toHaveLength(3);
      cursor = ids[ids.length - 1];
    }
    expect(pages).toEqual([3, 3, 2]);
    expect(seen).toEqual(expected);
    expect(new Set(seen).size).toBe(made.length);
    // Newest first by creation time too.
    const full = await list('?limit=100');
    const created = (full.body.data as { created_at: string }[]).map((p) => Date.parse(p.created_at));
    for (let i = 1; i < created.length; i++) expect(created[i]).toBeLessThanOrEqual(created[i - 1]!);
    expect(full.body.has_more).toBe(false);
    // An exact page size leaves has_more false.
    const exact = await list(`?limit=${made.length}`);
    expect(exact.body.data).toHaveLength(made.length);
    expect(exact.body.has_more).toBe(false);
    const short = await list(`?limit=${made.length - 1}`);
    expect(short.body.has_more).toBe(true);
  });

  it('defaults to a page of 10 and validates limit', async () => {
    expect((await list('')).body.data).toHaveLength(made.length);
    expectError(await list('?limit=0'), 400, 'SCHEMA_INVALID_FIELD');
    expectError(await list('?limit=101'), 400, 'SCHEMA_INVALID_FIELD');
    expectError(await list('?status=bogus'), 400, 'SCHEMA_INVALID_FIELD');
    expectError(await list('?colour=red'), 400, 'SCHEMA_INVALID_FIELD');
  });

  it('filters by status and by reference_id', async () => {
    const byStatus = async (status: string) =>
      ((await list(`?status=${status}&limit=100`)).body.data as { id: string; status: string }[]).map((p) => p.id).sort();
    const idsWith = (status: string) => made.filter((p) => p.status === status).map((p) => p.id).sort();
    expect(idsWith('captured')).toHaveLength(4);
    expect(await byStatus('captured')).toEqual(idsWith('captured'));
    expect(await byStatus('pending')).toEqual(idsWith('pending'));
    expect(await byStatus('pending')).toHaveLength(2);
    expect(await byStatus('authorized')).toEqual(idsWith('authorized'));
    expect(await byStatus('failed')).toEqual(idsWith('failed'));
    expect(await byStatus('failed')).toHaveLength(1);
    expect(await byStatus('refunded')).toEqual([]);

    const target = made[2]!;
    const byRef = await list(`?reference_id=${encodeURIComponent(target.reference_id)}`);
    expect((byRef.body.data as { id: string }[]).map((p) => p.id)).toEqual([target.id]);
    const none = await list('?reference_id=no-such-reference');
    expect(none.body.data).toEqual([]);
    expect(none.body.has_more).toBe(false);
    // Filters combine with pagination.
    const page1 = await list('?status=captured&limit=2');
    expect(page1.body.has_more).toBe(true);
    const page2 = await list(`?status=captured&limit=2&starting_after=${page1.body.data[1].id}`);
    expect(page2.body.has_more).toBe(false);
    expect([...page1.body.data, ...page2.body.data].map((p: { id: string }) => p.id).sort()).toEqual(idsWith('captured'));
  });

  it('filters by created[gte] and created[lt]', async () => {
    const times = made.map((p) => Date.parse(p.created_at));
    // Each creation waited for the previous answer, so at ms precision they are strictly increasing.
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThan(times[i - 1]!);
    const at = (i: number) => encodeURIComponent(made[i]!.created_at);
    const ids = async (query: string) => ((await list(`${query}&limit=100`)).body.data as { id: string }[]).map((p) => p.id);
    const slice = (from: number, to: number) => made.slice(from, to).map((p) => p.id).reverse();

    expect(await ids(`?created[gte]=${at(3)}`)).toEqual(slice(3, made.length));
    expect(await ids(`?created[lt]=${at(3)}`)).toEqual(slice(0, 3));
    expect(await ids(`?created[gte]=${at(1)}&created[lt]=${at(5)}`)).toEqual(slice(1, 5));
    expect(await ids(`?created[gte]=${encodeURIComponent(new Date(times[times.length - 1]! + 1000).toISOString())}`)).toEqual([]);
    // With an offset instead of Z.
    const plus = new Date(times[3]!).toISOString().replace('Z', '+00:00');
    expect(await ids(`?created[gte]=${encodeURIComponent(plus)}`)).toEqual(slice(3, made.length));
    expectError(await list('?created[gte]=yesterday'), 400, 'SCHEMA_INVALID_FIELD');
  });
});
