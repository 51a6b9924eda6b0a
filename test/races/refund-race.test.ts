/**
 * SPEC §8 under real concurrency: refunds never exceed the captured amount however many race, and
 * of two conflicting second steps (capture and cancel) on one authorized payment exactly one wins.
 * Every figure is checked three ways: the API's answers, Switchyard's tables, the provider's ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { apiLedger, attemptsOf, dbLedger, errorCode, ofOperation, paymentState, reference, refundsOf, tally, total } from './helpers.js';

const CAPTURED = 100_000;
const PART = 7_000;
const WORKERS = 20;
const FITS = Math.floor(CAPTURED / PART); // 14

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } });
});
afterAll(async () => h?.close());

async function capturedPayment(): Promise<string> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: paymentBody({ amount: CAPTURED, reference_id: reference('refund') }) });
  expect(res.status).toBe(201);
  expect(res.body.status).toBe('captured');
  expect(res.body.amount_captured).toBe(CAPTURED);
  return res.body.id as string;
}

function refund(paymentId: string, key: string, amount?: number): Promise<ApiResponse> {
  return call(h, 'POST', `/v1/payments/${paymentId}/refunds`, {
    key: m.key,
    headers: { 'idempotency-key': key },
    ...(amount === undefined ? {} : { body: { amount } }),
  });
}

const isBusy = (r: ApiResponse) => r.status === 409 && errorCode(r.body) === 'PAYMENT_INVALID_STATE';

/** Refunds, retrying while another operation on the payment is in progress (bounded, same key). */
async function refundUntilDecided(paymentId: string, key: string, amount: number | undefined, seen: ApiResponse[]): Promise<ApiResponse> {
  for (let i = 0; i < 500; i++) {
    const res = await refund(paymentId, key, amount);
    seen.push(res);
    if (!isBusy(res) || res.body.error.details.status !== 'captured') return res;
    // A short jittered pause so twenty workers do not spin on one row lock; not a synchronisation.
    await new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
  }
  throw new Error(`refund ${key} still refused as busy after 500 tries`);
}

/** The invariants that must hold at every moment, from the database and the provider. */
async function checkInvariants(paymentId: string): Promise<{ succeeded: number; ledgerRefunded: number }> {
  const p = await paymentState(h.database.db, paymentId);
  const refunds = await refundsOf(h.database.db, paymentId);
  const live = refunds.filter((r) => r.status === 'pending' || r.status === 'succeeded');
  const succeeded = total(refunds.filter((r) => r.status === 'succeeded'));
  expect(total(live)).toBeLessThanOrEqual(p.amount_captured);
  expect(p.amount_refunded).toBe(succeeded);
  const ledger = await dbLedger(h.database.db, paymentId);
  const ledgerRefunds = ofOperation(ledger, 'refund');
  expect(total(ledgerRefunds)).toBe(succeeded);
  expect(total(ledgerRefunds)).toBeLessThanOrEqual(CAPTURED);
  // One provider refund per succeeded refund, each under its own attempt id.
  const attempts = (await attemptsOf(h.database.db, paymentId)).filter((a) => a.operation === 'refund');
  const succeededAttempts = attempts.filter((a) => a.status === 'succeeded');
  expect(succeededAttempts).toHaveLength(refunds.filter((r) => r.status === 'succeeded').length);
  expect(ledgerRefunds.map((l) => l.idempotency_key).sort()).toEqual(succeededAttempts.map((a) => a.id).sort());
  expect(new Set(ledgerRefunds.map((l) => l.idempotency_key)).size).toBe(ledgerRefunds.length);
  // The API's own ledger view agrees with the table.
  expect(total(ofOperation(await apiLedger(h, paymentId), 'refund'))).toBe(total(ledgerRefunds));
  return { succeeded, ledgerRefunded: total(ledgerRefunds) };
}

describe('concurrent refunds', () => {
  it(`${WORKERS} concurrent refunds of ${PART} on a capture of ${CAPTURED}: never above, exactly ${FITS} succeed`, async () => {
    const id = await capturedPayment();

    // Round one: a pure burst, one request each, all in flight at once.
    const burst = await Promise.all(Array.from({ length: WORKERS }, (_, i) => refund(id, `burst_${id}_${i}`, PART)));
    const burstSeen = tally(burst);
    for (const r of burst) {
      expect([201, 409, 422], JSON.stringify(burstSeen)).toContain(r.status);
      if (r.status === 409) expect(errorCode(r.body)).toBe('PAYMENT_INVALID_STATE');
      if (r.status === 422) expect(errorCode(r.body)).toBe('RULE_REFUND_AMOUNT_EXCEEDS');
      if (r.status === 201) {
        expect(r.body.status).toBe('succeeded');
        expect(r.body.amount).toBe(PART);
      }
    }
    const burstWins = burst.filter((r) => r.status === 201).length;
    expect(burstWins, JSON.stringify(burstSeen)).toBeGreaterThanOrEqual(1);
    expect(burstWins).toBeLessThanOrEqual(FITS);
    expect((await checkInvariants(id)).succeeded).toBe(burstWins * PART);

    // Round two: every worker whose burst request was turned away as busy insists (same key),
    // all concurrently, until it is either refunded or told the amount no longer fits.
    const seen: ApiResponse[] = [];
    const busyWorkers = burst.map((r, i) => ({ r, i })).filter(({ r }) => isBusy(r));
    const finals = await Promise.all(busyWorkers.map(({ i }) => refundUntilDecided(id, `burst_${id}_${i}`, PART, seen)));
    for (const r of seen) {
      expect([201, 409, 422], JSON.stringify(tally(seen))).toContain(r.status);
      if (r.status === 409) expect(errorCode(r.body)).toBe('PAYMENT_INVALID_STATE');
      if (r.status === 422) expect(errorCode(r.body)).toBe('RULE_REFUND_AMOUNT_EXCEEDS');
    }
    const outcomes = [...burst.filter((r) => !isBusy(r)), ...finals];
    expect(outcomes).toHaveLength(WORKERS);
    const all = tally(outcomes);
    expect(all).toEqual({ 201: FITS, '422 RULE_REFUND_AMOUNT_EXCEEDS': WORKERS - FITS });
    for (const r of outcomes.filter((x) => x.status === 422)) expect(r.body.error.details.refundable).toBeLessThan(PART);

    const afterRace = await checkInvariants(id);
    expect(afterRace.succeeded).toBe(FITS * PART);
    const refunds = await refundsOf(h.database.db, id);
    expect(refunds).toHaveLength(FITS);
    expect(refunds.every((r) => r.status === 'succeeded' && r.amount === PART)).toBe(true);
    const mid = await paymentState(h.database.db, id);
    expect(mid.status).toBe('captured');
    expect(mid.amount_refunded).toBe(FITS * PART);

    // Another full part no longer fits.
    const tooMuch = await refund(id, `too_much_${id}`, PART);
    expect(tooMuch.status).toBe(422);
    expect(errorCode(tooMuch.body)).toBe('RULE_REFUND_AMOUNT_EXCEEDS');
    expect(tooMuch.body.error.details.refundable).toBe(CAPTURED - FITS * PART);

    // The rest, raced: ten "refund the remainder" requests at once; exactly one takes it.
    const rest = await Promise.all(Array.from({ length: 10 }, (_, i) => refund(id, `rest_${id}_${i}`)));
    const restSeen = tally(rest);
    const restWins = rest.filter((r) => r.status === 201);
    expect(restWins, JSON.stringify(restSeen)).toHaveLength(1);
    expect(restWins[0]!.body.amount).toBe(CAPTURED - FITS * PART);
    expect(restWins[0]!.body.status).toBe('succeeded');
    for (const r of rest.filter((x) => x.status !== 201)) {
      expect([409, 422], JSON.stringify(restSeen)).toContain(r.status);
      expect(['PAYMENT_INVALID_STATE', 'RULE_REFUND_AMOUNT_EXCEEDS']).toContain(errorCode(r.body));
    }

    const final = await paymentState(h.database.db, id);
    expect(final.status).toBe('refunded');
    expect(final.amount_refunded).toBe(CAPTURED);
    const end = await checkInvariants(id);
    expect(end.ledgerRefunded).toBe(CAPTURED);

    // Fully refunded is terminal: nothing more is accepted, and the provider saw nothing more.
    const after = await refund(id, `after_${id}`, 1);
    expect(after.status).toBe(409);
    expect(errorCode(after.body)).toBe('PAYMENT_INVALID_STATE');
    expect(total(ofOperation(await dbLedger(h.database.db, id), 'refund'))).toBe(CAPTURED);
    // The payment was charged once throughout.
    const ledger = await dbLedger(h.database.db, id);
    expect(ofOperation(ledger, 'authorize')).toHaveLength(1);
    expect(ofOperation(ledger, 'capture')).toHaveLength(1);
  });

  it('replaying a refund key during and after the race never refunds twice', async () => {
    const id = await capturedPayment();
    const key = `replay_${id}`;
    // The same key and body, ten times at once: one refund at most, answered or replayed.
    const responses = await Promise.all(Array.from({ length: 10 }, () => refund(id, key, 30_000)));
    const seen = tally(responses);
    const created = responses.filter((r) => r.status === 201);
    expect(created, JSON.stringify(seen)).toHaveLength(1);
    for (const r of responses.filter((x) => x.status !== 201)) {
      expect([200, 409], JSON.stringify(seen)).toContain(r.status);
      if (r.status === 409) expect(errorCode(r.body)).toBe('IDEMPOTENCY_KEY_IN_USE');
      if (r.status === 200) expect(r.body).toEqual(created[0]!.body);
    }
    const replay = await refund(id, key, 30_000);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(created[0]!.body.id);
    const check = await checkInvariants(id);
    expect(check.succeeded).toBe(30_000);
    expect(await refundsOf(h.database.db, id)).toHaveLength(1);
  });
});

describe('concurrent capture and cancel of one authorized payment', () => {
  async function authorizedPayment(): Promise<string> {
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: paymentBody({ amount: CAPTURED, capture_method: 'manual', reference_id: reference('capcancel') }) });
    expect(res.status).toBe(201);
    expect(res.body.status).toBe('authorized');
    expect(res.body.amount_capturable).toBe(CAPTURED);
    return res.body.id as string;
  }

  it.each([1, 2, 3, 4, 5, 6])('round %i: capture and cancel race, exactly one wins', async (round) => {
    const id = await authorizedPayment();
    // Several of each, interleaved, so both orders of arrival are exercised.
    const requests = Array.from({ length: 8 }, (_, i) => {
      const op = (i + round) % 2 === 0 ? 'capture' : 'cancel';
      return { op, promise: call(h, 'POST', `/v1/payments/${id}/${op}`, { key: m.key, headers: { 'idempotency-key': `${op}_${id}_${i}` } }) };
    });
    const responses = await Promise.all(requests.map((r) => r.promise));
    const seen = tally(responses);
    const winners = responses.map((r, i) => ({ r, op: requests[i]!.op })).filter(({ r }) => r.status === 200);
    expect(winners, JSON.stringify(seen)).toHaveLength(1);
    for (const r of responses.filter((x) => x.status !== 200)) {
      expect(r.status, JSON.stringify(seen)).toBe(409);
      expect(errorCode(r.body)).toBe('PAYMENT_INVALID_STATE');
    }
    const { r: win, op } = winners[0]!;
    const expected = op === 'capture' ? 'captured' : 'canceled';
    expect(win.body.status).toBe(expected);

    const p = await paymentState(h.database.db, id);
    expect(p.status).toBe(expected);
    expect(p.amount_captured).toBe(op === 'capture' ? CAPTURED : 0);
    expect(p.amount_capturable).toBe(0);
    const attempts = await attemptsOf(h.database.db, id);
    const second = attempts.filter((a) => a.operation === 'capture' || a.operation === 'void');
    expect(second.map((a) => [a.operation, a.status])).toEqual([[op === 'capture' ? 'capture' : 'void', 'succeeded']]);
    const ledger = await dbLedger(h.database.db, id);
    expect(ofOperation(ledger, 'authorize')).toHaveLength(1);
    expect(ofOperation(ledger, 'capture')).toHaveLength(op === 'capture' ? 1 : 0);
    expect(ofOperation(ledger, 'void')).toHaveLength(op === 'cancel' ? 1 : 0);
    const history = await h.database.db.query<{ to_status: string }>(
      'SELECT to_status FROM payment_status_history WHERE payment_id = $1 ORDER BY id',
      [id],
    );
    expect(history.rows.map((x) => x.to_status)).toEqual(['pending', 'processing', 'authorized', expected]);
  });
});
