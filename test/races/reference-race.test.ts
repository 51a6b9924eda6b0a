/**
 * The double-charge guard (SPEC §5) and the confirm path (§8) under real concurrency: one live
 * payment per merchant reference however many requests race, and one authorization per payment
 * however many confirms race.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, type Harness, type MerchantWithKey } from '../support/harness.js';
import { apiLedger, attemptsOf, dbLedger, errorCode, ofOperation, paymentsForReference, paymentState, reference, tally } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } });
});
afterAll(async () => h?.close());

describe('one reference, many concurrent payments', () => {
  it('50 concurrent payments for one reference_id with 50 keys: one 201, 49 × 409 PAYMENT_REFERENCE_IN_USE', async () => {
    const body = paymentBody({ reference_id: reference('ref') });
    const ref = String(body.reference_id);
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call(h, 'POST', '/v1/payments', { key: m.key, body, headers: { 'idempotency-key': `ref_race_${ref}_${i}` } }),
      ),
    );
    const seen = tally(responses);
    const created = responses.filter((r) => r.status === 201);
    expect(created, JSON.stringify(seen)).toHaveLength(1);
    const winner = created[0]!.body;
    expect(winner.status).toBe('captured');
    expect(winner.reference_id).toBe(ref);

    const refused = responses.filter((r) => r.status !== 201);
    expect(refused, JSON.stringify(seen)).toHaveLength(49);
    for (const r of refused) {
      expect(r.status, JSON.stringify(seen)).toBe(409);
      expect(errorCode(r.body)).toBe('PAYMENT_REFERENCE_IN_USE');
      expect(r.body.error.details.payment_id).toBe(winner.id);
    }

    const rows = await paymentsForReference(h.database.db, m.id, ref);
    expect(rows.map((p) => p.id)).toEqual([winner.id]);
    expect(rows[0]!.status).toBe('captured');
    const attempts = await attemptsOf(h.database.db, winner.id as string);
    expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'succeeded']]);
    expect(ofOperation(await dbLedger(h.database.db, winner.id as string), 'authorize')).toHaveLength(1);
    expect(ofOperation(await apiLedger(h, winner.id as string), 'authorize')).toHaveLength(1);

    // A refused key stored nothing (409 reference conflicts are validation): it stays usable,
    // and using it again still finds the reference taken.
    const again = await call(h, 'POST', '/v1/payments', { key: m.key, body, headers: { 'idempotency-key': `ref_race_${ref}_fresh` } });
    expect(again.status).toBe(409);
    expect(errorCode(again.body)).toBe('PAYMENT_REFERENCE_IN_USE');
  });

  it('the same race without idempotency keys also creates one payment', async () => {
    const body = paymentBody({ capture_method: 'manual', reference_id: reference('ref_nokey') });
    const ref = String(body.reference_id);
    const responses = await Promise.all(Array.from({ length: 30 }, () => call(h, 'POST', '/v1/payments', { key: m.key, body })));
    const seen = tally(responses);
    expect(seen).toEqual({ 201: 1, '409 PAYMENT_REFERENCE_IN_USE': 29 });
    const winner = responses.find((r) => r.status === 201)!.body;
    expect(winner.status).toBe('authorized');
    const rows = await paymentsForReference(h.database.db, m.id, ref);
    expect(rows.map((p) => p.id)).toEqual([winner.id]);
    expect(ofOperation(await dbLedger(h.database.db, winner.id as string), 'authorize')).toHaveLength(1);
  });

  it('a failed payment frees its reference; the race for the retry again has one winner', async () => {
    const declined = paymentBody({ payment_method_token: 'tok_decline', reference_id: reference('ref_declined') });
    const ref = String(declined.reference_id);
    const first = await call(h, 'POST', '/v1/payments', { key: m.key, body: declined });
    expect(first.status).toBe(402);
    expect(errorCode(first.body)).toBe('PAYMENT_DECLINED');

    const retry = { ...declined, payment_method_token: 'tok_success' };
    const responses = await Promise.all(Array.from({ length: 30 }, () => call(h, 'POST', '/v1/payments', { key: m.key, body: retry })));
    const seen = tally(responses);
    expect(seen).toEqual({ 201: 1, '409 PAYMENT_REFERENCE_IN_USE': 29 });
    const winner = responses.find((r) => r.status === 201)!.body;
    const rows = await paymentsForReference(h.database.db, m.id, ref);
    expect(rows.map((p) => p.status).sort()).toEqual(['captured', 'failed']);
    expect(rows.filter((p) => p.status !== 'failed').map((p) => p.id)).toEqual([winner.id]);
    const live = await h.database.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1 AND reference_id = $2 AND status NOT IN ('failed','canceled')`,
      [m.id, ref],
    );
    expect(live.rows[0]!.n).toBe(1);
  });
});

describe('one pending payment, many concurrent confirms', () => {
  it.each([
    ['automatic capture', 'automatic', 'captured'],
    ['manual capture', 'manual', 'authorized'],
  ] as const)('20 concurrent confirms with different keys: one authorization (%s)', async (_label, captureMethod, expected) => {
    const created = await call(h, 'POST', '/v1/payments', {
      key: m.key,
      body: paymentBody({ confirm: false, capture_method: captureMethod, reference_id: reference('confirm') }),
      headers: { 'idempotency-key': `confirm_race_create_${captureMethod}_${Date.now()}` },
    });
    expect(created.status).toBe(201);
    expect(created.body.status).toBe('pending');
    const id = created.body.id as string;
    expect(await attemptsOf(h.database.db, id)).toHaveLength(0);

    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        call(h, 'POST', `/v1/payments/${id}/confirm`, { key: m.key, headers: { 'idempotency-key': `confirm_race_${id}_${i}` } }),
      ),
    );
    const seen = tally(responses);
    const ok = responses.filter((r) => r.status === 200);
    expect(ok, JSON.stringify(seen)).toHaveLength(1);
    expect(ok[0]!.body.id).toBe(id);
    expect(ok[0]!.body.status).toBe(expected);
    const others = responses.filter((r) => r.status !== 200);
    expect(others).toHaveLength(19);
    for (const r of others) {
      expect(r.status, JSON.stringify(seen)).toBe(409);
      expect(errorCode(r.body)).toBe('PAYMENT_INVALID_STATE');
      expect(r.body.error.details.payment_id).toBe(id);
    }

    const attempts = await attemptsOf(h.database.db, id);
    expect(attempts.filter((a) => a.operation === 'authorize')).toHaveLength(1);
    expect(attempts.map((a) => a.status)).toEqual(['succeeded']);
    const ledger = await dbLedger(h.database.db, id);
    expect(ofOperation(ledger, 'authorize')).toHaveLength(1);
    expect(ofOperation(ledger, 'authorize')[0]!.idempotency_key).toBe(attempts[0]!.id);
    expect(ofOperation(await apiLedger(h, id), 'authorize')).toHaveLength(1);
    expect((await paymentState(h.database.db, id)).status).toBe(expected);

    // A refused confirm released its key; using it again is refused again, and nothing is charged again.
    const again = await call(h, 'POST', `/v1/payments/${id}/confirm`, { key: m.key, headers: { 'idempotency-key': `confirm_race_${id}_0` } });
    if (again.status === 200) {
      // Key 0 was the winner: its stored answer is replayed.
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body).toEqual(ok[0]!.body);
    } else {
      expect(again.status).toBe(409);
      expect(errorCode(again.body)).toBe('PAYMENT_INVALID_STATE');
    }
    expect(ofOperation(await dbLedger(h.database.db, id), 'authorize')).toHaveLength(1);
  });
});

describe('the velocity limit under concurrency', () => {
  it('30 concurrent payments against a limit of 10: exactly 10 created, 20 × 429 RISK_VELOCITY_EXCEEDED', async () => {
    const limited = await createMerchant(h, { limits: { velocity: { max_payments: 10, window_seconds: 300 } } });
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        call(h, 'POST', '/v1/payments', {
          key: limited.key,
          body: paymentBody({ reference_id: reference(`velocity_${i}`) }),
          headers: { 'idempotency-key': `velocity_${limited.id}_${i}` },
        }),
      ),
    );
    const seen = tally(responses);
    expect(seen).toEqual({ 201: 10, '429 RISK_VELOCITY_EXCEEDED': 20 });
    for (const r of responses.filter((x) => x.status === 429)) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const count = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [limited.id]);
    expect(count.rows[0]!.n).toBe(10);
  });
});
