/**
 * The worker runs the janitor and the dead-letter reprocessing on its own (SPEC §1, §11, §13):
 * with RECONCILE_INTERVAL_MS small and RECONCILE_THRESHOLD_SECONDS=1, a payment left in
 * `processing` by a provider timeout is settled without anyone calling anything, and a provider
 * event whose processing failed is applied once its backoff has passed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, waitFor, type MerchantWithKey } from '../support/harness.js';
import { expectError, type Json } from '../http/helpers.js';
import {
  HIGH_VELOCITY,
  attemptsOf,
  body,
  chargesOf,
  historyOf,
  isValidPath,
  ledgerOf,
  mockEvent,
  paymentRow,
  providerEvents,
  sendEvent,
  startProviderHarness,
  type ProviderHarness,
} from './support.js';

let h: ProviderHarness;
let m: MerchantWithKey;

beforeAll(async () => {
  // The first look (1 s) comes after the read timeout (600 ms), so the janitor never asks about an
  // attempt whose request is still in flight (see the report: a threshold below the read timeout
  // lets the janitor call an in-flight attempt "not found" and free the payment for failover).
  h = await startProviderHarness(
    {
      RECONCILE_INTERVAL_MS: '200',
      RECONCILE_THRESHOLD_SECONDS: '1',
      CONNECTOR_AUTHORIZE_TIMEOUT_MS: '600',
      CIRCUIT_MINIMUM_CALLS: '1000000',
    },
    { worker: true },
  );
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const db = () => h.database.db;

async function create(overrides: Record<string, unknown> = {}): Promise<Json> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body(overrides) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

async function settledStatus(paymentId: string): Promise<string> {
  return waitFor(async () => {
    const p = await paymentRow(db(), paymentId);
    return p.status === 'processing' || p.status === 'pending' ? undefined : p.status;
  }, 20_000, `payment ${paymentId} to leave processing`);
}

describe('the worker’s janitor', () => {
  it('tok_timeout_charged: processing, then captured by the worker; exactly one provider charge', async () => {
    const p = await create({ payment_method_token: 'tok_timeout_charged' });
    expect(p.status).toBe('processing');
    expect(await settledStatus(p.id)).toBe('captured');
    const history = await historyOf(db(), p.id);
    expect(isValidPath(history)).toBe(true);
    expect(history.at(-1)).toMatchObject({ from_status: 'processing', to_status: 'captured', actor: 'worker:reconciliation' });
    const [attempt] = await attemptsOf(db(), p.id);
    expect(attempt).toMatchObject({ status: 'succeeded', connector: 'mock' });
    expect((await ledgerOf(h, p.id)).map((l) => [l.operation, l.idempotency_key])).toEqual([
      ['authorize', attempt!.id],
      ['capture', attempt!.id],
    ]);
    expect(await paymentRow(db(), p.id)).toMatchObject({ amount_captured: p.amount, reconciliation_status: 'synced' });
  });

  it('tok_timeout_uncharged: failed by the worker with provider_no_record; nothing charged', async () => {
    const p = await create({ payment_method_token: 'tok_timeout_uncharged' });
    expect(p.status).toBe('processing');
    expect(await settledStatus(p.id)).toBe('failed');
    const after = await paymentRow(db(), p.id);
    expect(after).toMatchObject({ failure_code: 'provider_no_record' });
    expect(after.failure_message).toMatch(/no record of this payment/);
    expect((await historyOf(db(), p.id)).at(-1)).toMatchObject({ to_status: 'failed', actor: 'worker:reconciliation' });
    expect(await ledgerOf(h, p.id)).toEqual([]);
    expect(await chargesOf(db(), p.id)).toEqual([]);
  });
});

describe('the worker’s dead-letter reprocessing', () => {
  it('a provider event whose processing failed is applied by the worker once the cause is gone and its backoff has passed', async () => {
    const p = await create({ payment_method_token: 'tok_success', capture_method: 'manual' });
    expect(p.status).toBe('authorized');
    const [attempt] = await attemptsOf(db(), p.id);
    // The database refuses this payment becoming captured (see inbound-webhooks.test.ts).
    const constraint = `prv_worker_refuse_${process.pid}`;
    await db().query(`ALTER TABLE payments ADD CONSTRAINT ${constraint} CHECK (id <> '${p.id}' OR status <> 'captured') NOT VALID`);
    const e = mockEvent('charge.captured', { charge_id: attempt!.provider_reference!, payment_id: p.id, idempotency_key: attempt!.id, amount: p.amount, status: 'captured' });
    try {
      expectError(await sendEvent(h, e), 500, 'WEBHOOK_PROCESSING_FAILED');
      const [failed] = await providerEvents(db(), e.id);
      // The worker may have looked at the freshly stored row too (it also retries rows left
      // `received`); the row lock serialises the two, and both failed.
      expect(failed).toMatchObject({ status: 'failed' });
      expect(failed!.error).toContain('violates check constraint');
    } finally {
      await db().query(`ALTER TABLE payments DROP CONSTRAINT ${constraint}`);
    }
    const row = await waitFor(async () => {
      const [r] = await providerEvents(db(), e.id);
      return r?.status === 'processed' ? r : undefined;
    }, 20_000, 'the worker to reprocess the failed event');
    expect(row).toMatchObject({ status: 'processed', error: null, payment_id: p.id });
    expect(row.process_attempts).toBeGreaterThanOrEqual(2);
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'captured', amount_captured: p.amount });
    const history = await historyOf(db(), p.id);
    expect(history.at(-1)).toMatchObject({ from_status: 'authorized', to_status: 'captured', cause: 'provider_event:captured', actor: 'provider:mock' });
  });
});
