/**
 * SPEC §9 under real concurrency: many identical requests with one Idempotency-Key, all in flight
 * at once over real HTTP, must create one payment and charge the provider once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { apiLedger, attemptsOf, dbLedger, errorCode, ofOperation, paymentsForReference, keyReleased, reference, tally } from './helpers.js';

const N = 50;

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } });
});
afterAll(async () => h?.close());

function post(body: Record<string, unknown>, key: string): Promise<ApiResponse> {
  return call(h, 'POST', '/v1/payments', { key: m.key, body, headers: { 'idempotency-key': key } });
}

/** Retries while the key is still in use, honouring Retry-After (bounded). */
async function retryUntilSettled(body: Record<string, unknown>, key: string): Promise<ApiResponse> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await post(body, key);
    if (!(res.status === 409 && errorCode(res.body) === 'IDEMPOTENCY_KEY_IN_USE')) return res;
    if (Date.now() > deadline) throw new Error('idempotency key still in use after 30 s');
    await keyReleased(h.database.db, m.id, key);
  }
}

describe('one idempotency key, many concurrent requests', () => {
  it.each([
    ['automatic capture', {}],
    ['manual capture', { capture_method: 'manual' }],
  ] as const)(`${N} concurrent POST /v1/payments with one key create one payment (%s)`, async (_label, extra) => {
    const body = paymentBody({ ...extra, reference_id: reference('idem') });
    const key = `race_${String(body.reference_id)}`;

    const responses = await Promise.all(Array.from({ length: N }, () => post(body, key)));
    const seen = tally(responses);

    // Every answer is the payment (created once, or replayed) or "still in use".
    for (const r of responses) {
      expect([200, 201, 409], JSON.stringify(seen)).toContain(r.status);
      if (r.status === 409) {
        expect(errorCode(r.body)).toBe('IDEMPOTENCY_KEY_IN_USE');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
      if (r.status === 200) expect(r.headers.get('idempotent-replayed')).toBe('true');
      if (r.status === 201) expect(r.headers.get('idempotent-replayed')).toBeNull();
    }
    const created = responses.filter((r) => r.status === 201);
    expect(created, JSON.stringify(seen)).toHaveLength(1);
    const paymentId = created[0]!.body.id as string;
    expect(paymentId).toMatch(/^pay_/);
    const expectedStatus = 'capture_method' in extra ? 'authorized' : 'captured';
    expect(created[0]!.body.status).toBe(expectedStatus);
    for (const r of responses.filter((x) => x.status === 200)) expect(r.body).toEqual(created[0]!.body);

    // The database: one payment for the reference, one authorization attempt, and it succeeded.
    const rows = await paymentsForReference(h.database.db, m.id, String(body.reference_id));
    expect(rows.map((p) => p.id)).toEqual([paymentId]);
    expect(rows[0]!.status).toBe(expectedStatus);
    const attempts = await attemptsOf(h.database.db, paymentId);
    expect(attempts.filter((a) => a.operation === 'authorize').map((a) => a.status)).toEqual(['succeeded']);

    // The provider: exactly one authorization, under that attempt's id.
    const ledger = await dbLedger(h.database.db, paymentId);
    expect(ofOperation(ledger, 'authorize')).toHaveLength(1);
    expect(ofOperation(ledger, 'authorize')[0]!.idempotency_key).toBe(attempts[0]!.id);
    expect(ofOperation(await apiLedger(h, paymentId), 'authorize')).toHaveLength(1);

    // Retrying now replays the stored answer, without executing anything again.
    const replay = await retryUntilSettled(body, key);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(paymentId);
    expect(replay.body).toEqual(created[0]!.body);
    expect(await paymentsForReference(h.database.db, m.id, String(body.reference_id))).toHaveLength(1);
    expect(ofOperation(await dbLedger(h.database.db, paymentId), 'authorize')).toHaveLength(1);
    expect(await attemptsOf(h.database.db, paymentId)).toHaveLength(attempts.length);
  });

  it(`${N} concurrent requests with one key for a declined payment: one decline, stored and replayed`, async () => {
    const body = paymentBody({ payment_method_token: 'tok_decline', reference_id: reference('idem_decline') });
    const key = `race_decline_${String(body.reference_id)}`;
    const responses = await Promise.all(Array.from({ length: N }, () => post(body, key)));
    const seen = tally(responses);
    const fresh = responses.filter((r) => r.status === 402 && r.headers.get('idempotent-replayed') === null);
    expect(fresh, JSON.stringify(seen)).toHaveLength(1);
    const paymentId = fresh[0]!.body.error.details.payment_id as string;
    expect(fresh[0]!.body.error.code).toBe('PAYMENT_DECLINED');
    for (const r of responses) {
      expect([402, 409], JSON.stringify(seen)).toContain(r.status);
      if (r.status === 409) expect(errorCode(r.body)).toBe('IDEMPOTENCY_KEY_IN_USE');
      if (r.status === 402) expect(r.body.error.details.payment_id).toBe(paymentId);
    }
    const rows = await paymentsForReference(h.database.db, m.id, String(body.reference_id));
    expect(rows.map((p) => [p.id, p.status])).toEqual([[paymentId, 'failed']]);
    const attempts = await attemptsOf(h.database.db, paymentId);
    expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'failed']]);
    const charges = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM mock_provider_charges WHERE payment_id = $1', [paymentId]);
    expect(charges.rows[0]!.n).toBe(1);
    expect(ofOperation(await dbLedger(h.database.db, paymentId), 'authorize')).toHaveLength(0);
    // The decline followed a connector call, so it is stored: a retry replays it, unchanged.
    const replay = await retryUntilSettled(body, key);
    expect(replay.status).toBe(402);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.error.details.payment_id).toBe(paymentId);
    expect(await paymentsForReference(h.database.db, m.id, String(body.reference_id))).toHaveLength(1);
  });

  it('the same key with a different body is refused, also while racing', async () => {
    const body = paymentBody({ reference_id: reference('idem_reuse') });
    const key = `race_reuse_${String(body.reference_id)}`;
    const other = { ...body, amount: Number(body.amount) + 100 };
    const responses = await Promise.all(Array.from({ length: 20 }, (_, i) => post(i % 2 === 0 ? body : other, key)));
    const seen = tally(responses);
    // Whichever body won the key, it created exactly one payment; the other body never executed.
    const created = responses.filter((r) => r.status === 201);
    expect(created, JSON.stringify(seen)).toHaveLength(1);
    const winnerAmount = created[0]!.body.amount as number;
    for (const [i, r] of responses.entries()) {
      const sentAmount = i % 2 === 0 ? body.amount : other.amount;
      if (sentAmount === winnerAmount) {
        expect([200, 201, 409], JSON.stringify(seen)).toContain(r.status);
        if (r.status === 409) expect(errorCode(r.body)).toBe('IDEMPOTENCY_KEY_IN_USE');
      } else {
        expect(r.status, JSON.stringify(seen)).toBe(409);
        expect(['IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE']).toContain(errorCode(r.body));
      }
    }
    const rows = await paymentsForReference(h.database.db, m.id, String(body.reference_id));
    expect(rows).toHaveLength(1);
    expect(ofOperation(await dbLedger(h.database.db, rows[0]!.id), 'authorize')).toHaveLength(1);
    const loser = winnerAmount === body.amount ? other : body;
    const refused = await retryUntilSettled(loser, key);
    expect(refused.status).toBe(409);
    expect(errorCode(refused.body)).toBe('IDEMPOTENCY_KEY_REUSED');
  });
});
