/**
 * The circuit breaker feeding routing, over real HTTP (SPEC §10): a merchant routed to flaky
 * (weight 100) with mock as failover (weight 0), and a flaky provider that fails every call before
 * charging (FLAKY_FAILURE_RATE=1). Payments succeed by failing over; once the breaker opens they go
 * straight to mock; after CIRCUIT_OPEN_MS the half-open probes go to flaky again (and, flaky being
 * still down, open it again). A merchant with no healthy connector gets 503 CONNECTOR_UNAVAILABLE
 * with Retry-After, and its payment stays pending with nothing charged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, waitFor, type MerchantWithKey } from '../support/harness.js';
import { expectError, type Json } from '../http/helpers.js';
import { HIGH_VELOCITY, body, ledgerOf, paymentRow, startProviderHarness, type ProviderHarness } from './support.js';

const OPEN_MS = 5000;
let h: ProviderHarness;
let a: MerchantWithKey; // flaky first, mock as failover
let b: MerchantWithKey; // flaky only

beforeAll(async () => {
  h = await startProviderHarness({
    FLAKY_FAILURE_RATE: '1',
    FLAKY_TIMEOUT_RATE: '0',
    FLAKY_LATENCY_MS: '0',
    CIRCUIT_MINIMUM_CALLS: '4',
    CIRCUIT_WINDOW_MS: '60000',
    CIRCUIT_OPEN_MS: String(OPEN_MS),
    CIRCUIT_HALF_OPEN_PROBES: '2',
  });
  a = await createMerchant(h, { ...HIGH_VELOCITY, connectors: [{ name: 'flaky', weight: 100 }, { name: 'mock', weight: 0 }] });
  b = await createMerchant(h, { ...HIGH_VELOCITY, connectors: [{ name: 'flaky', weight: 100 }] });
});
afterAll(async () => h?.close());

async function circuit(name: string): Promise<Json> {
  const res = await call(h, 'GET', '/v1/admin/connectors', { key: ADMIN_KEY });
  expect(res.status).toBe(200);
  const c = (res.body.data as Json[]).find((x) => x.name === name);
  expect(c, `connector ${name} listed`).toBeDefined();
  return c!;
}

async function pay(m: MerchantWithKey): Promise<{ payment: Json; attempts: Json[] }> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const attempts = await call(h, 'GET', `/v1/payments/${res.body.id}/attempts`, { key: m.key });
  return { payment: res.body, attempts: attempts.body.data as Json[] };
}

function route(attempts: Json[]): string[] {
  return attempts.map((x) => `${x.connector}:${x.status}${x.error_code ? `:${x.error_code}` : ''}`);
}

const FAILED_OVER = ['flaky:failed:provider_unavailable_not_charged', 'mock:succeeded'];

describe('flaky down, mock healthy', () => {
  it('payments succeed by failing over to mock; the 4th failure opens flaky’s circuit', async () => {
    for (let i = 1; i <= 4; i++) {
      expect((await circuit('flaky')).circuit.state).toBe('closed');
      const { payment, attempts } = await pay(a);
      expect(payment.status).toBe('captured');
      expect(payment.connector).toBe('mock');
      expect(route(attempts)).toEqual(FAILED_OVER);
      // The flaky provider charged nothing; mock charged once.
      const ledger = await ledgerOf(h, payment.id);
      expect(ledger.map((l) => l.operation)).toEqual(['authorize', 'capture']);
      expect(new Set(ledger.map((l) => l.idempotency_key))).toEqual(new Set([attempts[1]!.id]));
    }
    const flaky = await circuit('flaky');
    expect(flaky).toMatchObject({ object: 'connector', name: 'flaky', available: false });
    expect(flaky.circuit).toMatchObject({ state: 'open', calls: 4, failure_rate: 1 });
    expect(typeof flaky.circuit.opened_at).toBe('string');
    expect(typeof flaky.circuit.half_open_at).toBe('string');
    expect((await circuit('mock')).circuit).toMatchObject({ state: 'closed', failure_rate: 0 });
  });

  it('while open, payments go straight to mock: no flaky attempt at all', async () => {
    const { payment, attempts } = await pay(a);
    expect(payment.status).toBe('captured');
    expect(route(attempts)).toEqual(['mock:succeeded']);
    expect((await circuit('flaky')).circuit.state).toBe('open');
  });

  it('a merchant whose every connector is open gets 503 CONNECTOR_UNAVAILABLE with Retry-After; the payment stays pending, nothing charged', async () => {
    const res = await call(h, 'POST', '/v1/payments', { key: b.key, body: body() });
    const err = expectError(res, 503, 'CONNECTOR_UNAVAILABLE');
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(OPEN_MS / 1000);
    const paymentId = err.details.payment_id as string;
    expect(await paymentRow(h.database.db, paymentId)).toMatchObject({ status: 'pending', connector: null, amount_captured: 0 });
    const attempts = await call(h, 'GET', `/v1/payments/${paymentId}/attempts`, { key: b.key });
    expect(attempts.body.data).toEqual([]);
    expect(await ledgerOf(h, paymentId)).toEqual([]);
    // Confirming it again while the circuit is open: the same answer, still nothing sent.
    expectError(await call(h, 'POST', `/v1/payments/${paymentId}/confirm`, { key: b.key }), 503, 'CONNECTOR_UNAVAILABLE');
    expect((await paymentRow(h.database.db, paymentId)).status).toBe('pending');
    expect((await call(h, 'GET', `/v1/payments/${paymentId}/attempts`, { key: b.key })).body.data).toEqual([]);
  });

  it('after CIRCUIT_OPEN_MS the half-open probes go to flaky; failing, they open it again', async () => {
    const half = await waitFor(async () => {
      const c = await circuit('flaky');
      return c.circuit.state === 'half_open' ? c : undefined;
    }, OPEN_MS * 3, 'flaky to half-open');
    expect(half).toMatchObject({ available: true, circuit: { state: 'half_open', calls: 0, half_open_at: null } });

    const probe1 = await pay(a);
    expect(route(probe1.attempts)).toEqual(FAILED_OVER);
    expect((await circuit('flaky')).circuit).toMatchObject({ state: 'half_open', calls: 1 });
    const probe2 = await pay(a);
    expect(route(probe2.attempts)).toEqual(FAILED_OVER);
    expect(await circuit('flaky')).toMatchObject({ available: false, circuit: { state: 'open' } });

    const after = await pay(a);
    expect(route(after.attempts)).toEqual(['mock:succeeded']);
  });
});
