/**
 * SPEC §9 when an idempotency lease lapses while its first request is still alive (a slow
 * provider): retries take the key over and resume from the recovery point, racing the original
 * request — and still the provider charges once and every answer names the same payment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, waitFor, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { attemptsOf, dbLedger, errorCode, ofOperation, paymentsForReference, paymentState, keyReleased, reference, tally } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  // Lease 1 s; the provider charges, then answers after 5 s; the connector gives up after 3 s.
  h = await startHarness({ IDEMPOTENCY_LOCK_SECONDS: '1', CONNECTOR_AUTHORIZE_TIMEOUT_MS: '3000', MOCK_PROVIDER_HANG_MS: '5000' });
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } });
});
afterAll(async () => h?.close());

function post(body: Record<string, unknown>, key: string): Promise<ApiResponse> {
  return call(h, 'POST', '/v1/payments', { key: m.key, body, headers: { 'idempotency-key': key } });
}

/** Retries while the key is in use, honouring Retry-After; every answer is recorded. */
async function retry(body: Record<string, unknown>, key: string, seen: ApiResponse[]): Promise<ApiResponse> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await post(body, key);
    seen.push(res);
    if (!(res.status === 409 && errorCode(res.body) === 'IDEMPOTENCY_KEY_IN_USE')) return res;
    if (Date.now() > deadline) throw new Error('key still in use after 20 s');
    await keyReleased(h.database.db, m.id, key);
  }
}

describe('an idempotency lease that lapses mid-request', () => {
  it('retries racing the still-running first request resume it; one charge, one payment', async () => {
    const body = paymentBody({ payment_method_token: 'tok_timeout_charged', reference_id: reference('lease') });
    const key = `lease_${String(body.reference_id)}`;

    const original = post(body, key);
    const paymentId = await waitFor(async () => (await paymentsForReference(h.database.db, m.id, String(body.reference_id)))[0]?.id, 10_000, 'the payment row');
    await waitFor(async () => (ofOperation(await dbLedger(h.database.db, paymentId), 'authorize').length > 0 ? true : undefined), 10_000, 'the charge');

    // Ten clients retry at once while the first request still waits on the provider.
    const seen: ApiResponse[] = [];
    const finals = await Promise.all(Array.from({ length: 10 }, () => retry(body, key, seen)));
    const first = await original;
    const all = [first, ...finals];
    for (const r of seen) {
      expect([200, 201, 409], JSON.stringify(tally(seen))).toContain(r.status);
      if (r.status === 409) expect(errorCode(r.body)).toBe('IDEMPOTENCY_KEY_IN_USE');
    }
    for (const r of all) {
      expect([200, 201], JSON.stringify(tally(all))).toContain(r.status);
      expect(r.body.id).toBe(paymentId);
      // The first retry past the lease settles the attempt by asking the provider (about 1 s in),
      // long before the original request's own 3 s read timeout: everyone sees it captured.
      expect(r.body.status).toBe('captured');
    }

    // Whoever settled it, the provider's charge was recognised, not repeated.
    const ledger = await dbLedger(h.database.db, paymentId);
    expect(ofOperation(ledger, 'authorize')).toHaveLength(1);
    expect(ofOperation(ledger, 'capture')).toHaveLength(1);
    const attempts = await attemptsOf(h.database.db, paymentId);
    expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'succeeded']]);
    expect(ofOperation(ledger, 'authorize')[0]!.idempotency_key).toBe(attempts[0]!.id);
    expect((await paymentState(h.database.db, paymentId)).status).toBe('captured');
    expect(await paymentsForReference(h.database.db, m.id, String(body.reference_id))).toHaveLength(1);

    // The key ends completed; a later retry replays a captured payment.
    const replay = await post(body, key);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(paymentId);
    expect(replay.body.status).toBe('captured');
  });
});
