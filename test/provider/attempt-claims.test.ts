/**
 * The two guards that keep a wrong "nothing was charged" verdict from becoming a double charge
 * (found by the chaos harness): the provider's later success wins over an attempt we had judged
 * failed, and the janitor's "no record" verdict stands only if nobody re-sent the attempt meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Connector, SyncOutcome } from '../../src/connectors/port.js';
import { createRegistry } from '../../src/connectors/registry.js';
import { withTx } from '../../src/db/pool.js';
import { applyOutcome } from '../../src/payments/apply-outcome.js';
import { claimAttempt, insertAttempt } from '../../src/payments/store.js';
import { reconcileDue } from '../../src/reconciliation/sweep.js';
import { call, createMerchant, type MerchantWithKey } from '../support/harness.js';
import { attemptsOf, historyOf, isValidPath, paymentRow, reference, startProviderHarness, type ProviderHarness } from './support.js';

let h: ProviderHarness;
let m: MerchantWithKey;
const by = { actor: 'test', requestId: null };

beforeAll(async () => {
  h = await startProviderHarness({ CIRCUIT_MINIMUM_CALLS: '1000000' });
  m = await createMerchant(h, { limits: { velocity: { max_payments: 100000, window_seconds: 60 } } });
});
afterAll(async () => h?.close());

async function pendingPayment(capture: 'automatic' | 'manual' = 'manual'): Promise<{ id: string; amount: number }> {
  const res = await call(h, 'POST', '/v1/payments', {
    key: m.key,
    body: {
      amount: 120000,
      currency: 'INR',
      payment_method: 'card',
      payment_method_token: 'tok_success',
      reference_id: reference('claim'),
      customer: { email: 'c@example.com', phone: '+919876543210' },
      capture_method: capture,
      confirm: false,
    },
  });
  expect(res.status).toBe(201);
  return { id: res.body.id, amount: res.body.amount };
}

const db = () => h.database.db;

async function openAttempt(paymentId: string, amount: number, claimSeconds = 0) {
  return withTx(db(), (tx) => insertAttempt(tx, { paymentId, merchantId: m.id, operation: 'authorize', connector: 'mock', amount, request: {}, claimSeconds }));
}

describe('a provider success after we judged the attempt failed', () => {
  it('revives the attempt and moves the payment forward: the charge is recorded, nothing fails over', async () => {
    const p = await pendingPayment();
    const a = await openAttempt(p.id, p.amount);
    // The wrong verdict: "the provider has no record, nothing was charged" — the payment stays pending.
    await withTx(db(), (tx) => applyOutcome(tx, a.id, { outcome: 'error', charged: false, code: 'provider_no_record', message: 'no record' }, by));
    expect((await attemptsOf(db(), p.id))[0]!.status).toBe('failed');
    expect((await paymentRow(db(), p.id)).status).toBe('pending');

    // The provider's answer to the re-sent request arrives: it did charge.
    const applied = await withTx(db(), (tx) =>
      applyOutcome(tx, a.id, { outcome: 'succeeded', providerReference: 'ch_revived', providerStatus: 'authorized' }, by),
    );
    expect(applied.changed).toBe(true);
    expect(applied.attempt.status).toBe('succeeded');
    const row = await paymentRow(db(), p.id);
    expect(row).toMatchObject({ status: 'authorized', provider_reference: 'ch_revived', amount_capturable: p.amount, reconciliation_status: 'synced' });
    expect(isValidPath(await historyOf(db(), p.id))).toBe(true);
    // Confirming again cannot start a second authorization at another connector.
    const again = await call(h, 'POST', `/v1/payments/${p.id}/confirm`, { key: m.key });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('PAYMENT_INVALID_STATE');
  });

  it('sends the payment to manual review when another attempt already succeeded (two charges exist)', async () => {
    const p = await pendingPayment();
    const first = await openAttempt(p.id, p.amount);
    await withTx(db(), (tx) => applyOutcome(tx, first.id, { outcome: 'error', charged: false, code: 'provider_no_record', message: 'no record' }, by));
    const second = await openAttempt(p.id, p.amount);
    await withTx(db(), (tx) => applyOutcome(tx, second.id, { outcome: 'succeeded', providerReference: 'ch_second', providerStatus: 'authorized' }, by));
    expect((await paymentRow(db(), p.id)).status).toBe('authorized');

    const late = await withTx(db(), (tx) => applyOutcome(tx, first.id, { outcome: 'succeeded', providerReference: 'ch_first', providerStatus: 'authorized' }, by));
    expect(late.changed).toBe(true);
    const row = await paymentRow(db(), p.id);
    expect(row).toMatchObject({ status: 'authorized', reconciliation_status: 'manual_review', provider_reference: 'ch_second' });
    const events = await db().query<{ type: string }>(`SELECT type FROM events WHERE payment_id = $1 ORDER BY sequence`, [p.id]);
    expect(events.rows.map((e) => e.type)).toContain('payment.reconciliation_required');
    const attempts = await attemptsOf(db(), p.id);
    expect(attempts.map((x) => x.status).sort()).toEqual(['failed', 'succeeded']);
  });

  it('leaves other late answers alone: a decline after a failure changes nothing', async () => {
    const p = await pendingPayment();
    const a = await openAttempt(p.id, p.amount);
    await withTx(db(), (tx) => applyOutcome(tx, a.id, { outcome: 'error', charged: false, code: 'connector_unreachable', message: 'refused' }, by));
    const late = await withTx(db(), (tx) => applyOutcome(tx, a.id, { outcome: 'declined', code: 'card_declined', message: 'declined' }, by));
    expect(late.changed).toBe(false);
    expect((await paymentRow(db(), p.id)).status).toBe('pending');
  });
});

describe('the janitor and a concurrent re-send', () => {
  function connectorThat(onSync: (attemptId: string) => Promise<void>, answer: SyncOutcome): Connector {
    const real = h.connectors.get('mock')!;
    return {
      name: 'mock',
      authorize: (r) => real.authorize(r),
      capture: (r) => real.capture(r),
      void: (r) => real.void(r),
      refund: (r) => real.refund(r),
      async sync(r) {
        await onSync(r.attemptId);
        return answer;
      },
      verifyWebhook: () => false,
      parseWebhook: () => [],
    };
  }
  const settings = { thresholdSeconds: 0, asyncThresholdSeconds: 0, maxBackoffSeconds: 60, batchSize: 10, claimSeconds: 30 };

  it('drops its "no record" verdict when a resumed request re-claimed the attempt while it asked', async () => {
    const p = await pendingPayment();
    await openAttempt(p.id, p.amount);
    // While the janitor waits for the provider, a resumed request claims the attempt to send it again.
    const registry = createRegistry([connectorThat((id) => claimAttempt(db(), id, 30), { outcome: 'not_found' })], false);
    const r = await reconcileDue({ db: db(), connectors: registry, claimSeconds: 30 }, settings);
    expect(r).toEqual({ checked: 1, settled: 0, stillOpen: 1 });
    expect((await attemptsOf(db(), p.id))[0]!.status).toBe('started');
    expect((await paymentRow(db(), p.id)).status).toBe('pending');
  });

  it('keeps its verdict when nobody touched the attempt', async () => {
    const p = await pendingPayment();
    const a = await openAttempt(p.id, p.amount);
    const registry = createRegistry([connectorThat(async () => undefined, { outcome: 'not_found' })], false);
    const r = await reconcileDue({ db: db(), connectors: registry, claimSeconds: 30 }, settings);
    expect(r.checked).toBeGreaterThanOrEqual(1);
    const attempt = (await attemptsOf(db(), p.id)).find((x) => x.id === a.id)!;
    expect(attempt).toMatchObject({ status: 'failed', error_code: 'provider_no_record' });
  });

  it('never looks at an attempt while the request that sent it still holds its claim', async () => {
    const p = await pendingPayment();
    const a = await openAttempt(p.id, p.amount, 60);
    const registry = createRegistry([connectorThat(async () => undefined, { outcome: 'not_found' })], false);
    await reconcileDue({ db: db(), connectors: registry, claimSeconds: 30 }, settings);
    expect((await attemptsOf(db(), p.id)).find((x) => x.id === a.id)!.status).toBe('started');
  });
});
