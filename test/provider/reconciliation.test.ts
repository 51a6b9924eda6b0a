/**
 * The reconciliation janitor (SPEC §13), called directly: attempts whose outcome is open are asked
 * of the provider and settled through the state machine — a charge the provider made after our
 * timeout becomes captured/authorized, one it never made becomes failed (provider_no_record), one
 * still pending is left open with a growing backoff — and two janitors at once settle each attempt
 * exactly once. Every figure is read from SQL and from the provider's own ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileDue, type ReconcileSettings } from '../../src/reconciliation/sweep.js';
import { withTx } from '../../src/db/pool.js';
import { insertAttempt } from '../../src/payments/store.js';
import { settlePendingCharge } from '../../src/mock-provider/effects.js';
import { ADMIN_KEY, call, createMerchant, type MerchantWithKey } from '../support/harness.js';
import type { Json } from '../http/helpers.js';
import {
  HIGH_VELOCITY,
  attemptsOf,
  body,
  chargesOf,
  eventTypes,
  historyOf,
  isValidPath,
  ledgerOf,
  paymentRow,
  startProviderHarness,
  type ProviderHarness,
} from './support.js';

let h: ProviderHarness;
let m: MerchantWithKey;

beforeAll(async () => {
  // The provider never settles a tok_async charge by itself during this file (10 min), so
  // "still pending" is certain; the breaker stays out of the way of the deliberate timeouts.
  h = await startProviderHarness({ CIRCUIT_MINIMUM_CALLS: '1000000' }, { asyncDelayMs: 600_000 });
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const db = () => h.database.db;
const deps = () => ({ db: db(), connectors: h.connectors, claimSeconds: 30 });
const NOW: ReconcileSettings = { thresholdSeconds: 0, asyncThresholdSeconds: 0, maxBackoffSeconds: 3600, batchSize: 100, claimSeconds: 30 };

/**
 * The janitor, as it runs once the requests that sent the attempts are long gone: their claims
 * (held for longer than the slowest provider call) have lapsed.
 */
async function sweep(settings: ReconcileSettings) {
  await db().query(`UPDATE payment_attempts SET claimed_until = now() - interval '1 second' WHERE claimed_until > now()`);
  return reconcileDue(deps(), settings);
}

async function create(overrides: Record<string, unknown> = {}): Promise<Json> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body(overrides) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

async function openAttemptCount(): Promise<number> {
  const r = await db().query<{ n: number }>("SELECT count(*)::int AS n FROM payment_attempts WHERE status IN ('started','unknown')");
  return r.rows[0]!.n;
}

/** Seconds from the database's now() until the attempt's next look. */
async function secondsUntilNextLook(attemptId: string): Promise<number> {
  const r = await db().query<{ s: number }>('SELECT extract(epoch FROM next_reconcile_at - now())::float8 AS s FROM payment_attempts WHERE id = $1', [attemptId]);
  return r.rows[0]!.s;
}

describe('an attempt the provider charged after our timeout', () => {
  it('automatic capture: 201 processing, then the janitor makes it captured; one provider charge', async () => {
    const p = await create({ payment_method_token: 'tok_timeout_charged' });
    expect(p.status).toBe('processing');
    const [attempt] = await attemptsOf(db(), p.id);
    expect(attempt).toMatchObject({ status: 'unknown', error_code: 'timeout', provider_reference: null });
    expect(await openAttemptCount()).toBe(1);

    const r = await sweep(NOW);
    expect(r).toEqual({ checked: 1, settled: 1, stillOpen: 0 });

    const [charge] = await chargesOf(db(), p.id);
    const after = await paymentRow(db(), p.id);
    expect(after).toMatchObject({ status: 'captured', amount_captured: p.amount, amount_capturable: 0, reconciliation_status: 'synced', connector: 'mock', provider_reference: charge!.id });
    expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ status: 'succeeded', provider_reference: charge!.id, provider_status: 'captured' });
    const history = await historyOf(db(), p.id);
    expect(isValidPath(history)).toBe(true);
    expect(history.map((x) => x.to_status)).toEqual(['pending', 'processing', 'captured']);
    expect(history[2]).toMatchObject({ actor: 'worker:reconciliation', cause: 'authorize:succeeded' });
    const ledger = await ledgerOf(h, p.id);
    expect(ledger.map((l) => [l.operation, l.amount, l.idempotency_key])).toEqual([
      ['authorize', p.amount, attempt!.id],
      ['capture', p.amount, attempt!.id],
    ]);

    // Nothing is open any more: a second sweep touches nothing.
    expect(await sweep(NOW)).toEqual({ checked: 0, settled: 0, stillOpen: 0 });
    expect(await paymentRow(db(), p.id)).toEqual(after);
  });

  it('manual capture: the janitor makes it authorized, the whole amount capturable; one authorization', async () => {
    const p = await create({ payment_method_token: 'tok_timeout_charged', capture_method: 'manual' });
    expect(p.status).toBe('processing');
    expect(await sweep(NOW)).toEqual({ checked: 1, settled: 1, stillOpen: 0 });
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'authorized', amount_capturable: p.amount, amount_captured: 0 });
    expect((await ledgerOf(h, p.id)).map((l) => l.operation)).toEqual(['authorize']);
    // And it captures normally afterwards, still with one authorization at the provider.
    const captured = await call(h, 'POST', `/v1/payments/${p.id}/capture`, { key: m.key });
    expect(captured.status, JSON.stringify(captured.body)).toBe(200);
    expect((await ledgerOf(h, p.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
  });
});

describe('an attempt the provider never charged', () => {
  it('tok_timeout_uncharged: the janitor finds no record and fails the payment with provider_no_record; the ledger is empty', async () => {
    const p = await create({ payment_method_token: 'tok_timeout_uncharged' });
    expect(p.status).toBe('processing');
    expect(await sweep(NOW)).toEqual({ checked: 1, settled: 1, stillOpen: 0 });

    const after = await paymentRow(db(), p.id);
    expect(after).toMatchObject({ status: 'failed', failure_code: 'provider_no_record', reconciliation_status: 'synced' });
    expect(after.failure_message).toBe('The provider has no record of this payment after the reconciliation threshold; nothing was charged.');
    expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ status: 'failed', error_code: 'provider_no_record' });
    expect(await ledgerOf(h, p.id)).toEqual([]);
    expect(await chargesOf(db(), p.id)).toEqual([]);
    const api = await call(h, 'GET', `/v1/payments/${p.id}`, { key: m.key });
    expect(api.body).toMatchObject({ status: 'failed', failure_code: 'provider_no_record' });
    expect(await eventTypes(db(), p.id)).toEqual(['payment.created', 'payment.processing', 'payment.failed']);
  });

  it('an attempt left `started` by a process that died before sending: the payment stays pending and can be confirmed', async () => {
    const p = await create({ confirm: false });
    expect(p.status).toBe('pending');
    // The state a crash between committing the attempt and calling the provider leaves behind.
    const attempt = await withTx(db(), (tx) =>
      insertAttempt(tx, { paymentId: p.id, merchantId: m.id, operation: 'authorize', connector: 'mock', amount: p.amount, request: {}, claimSeconds: 0 }),
    );
    expect(await sweep(NOW)).toEqual({ checked: 1, settled: 1, stillOpen: 0 });
    expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ id: attempt.id, status: 'failed', error_code: 'provider_no_record' });
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'pending' });
    expect(await ledgerOf(h, p.id)).toEqual([]);

    const confirmed = await call(h, 'POST', `/v1/payments/${p.id}/confirm`, { key: m.key });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    expect(confirmed.body.status).toBe('captured');
    expect((await ledgerOf(h, p.id)).filter((l) => l.operation === 'authorize')).toHaveLength(1);
  });
});

describe('two janitors at once', () => {
  it('settle each open attempt exactly once', async () => {
    const created = await Promise.all([
      ...Array.from({ length: 4 }, () => create({ payment_method_token: 'tok_timeout_charged' })),
      ...Array.from({ length: 2 }, () => create({ payment_method_token: 'tok_timeout_uncharged' })),
    ]);
    for (const p of created) expect(p.status).toBe('processing');
    expect(await openAttemptCount()).toBe(6);

    await db().query(`UPDATE payment_attempts SET claimed_until = now() - interval '1 second' WHERE claimed_until > now()`);
    const [a, b] = await Promise.all([reconcileDue(deps(), NOW), reconcileDue(deps(), NOW)]);
    expect(a.checked + b.checked).toBe(6);
    expect(a.settled + b.settled).toBe(6);
    expect(await openAttemptCount()).toBe(0);

    for (const [i, p] of created.entries()) {
      const charged = i < 4;
      const history = await historyOf(db(), p.id);
      expect(isValidPath(history)).toBe(true);
      expect(history.filter((x) => x.from_status === 'processing')).toHaveLength(1);
      expect((await paymentRow(db(), p.id)).status).toBe(charged ? 'captured' : 'failed');
      const types = await eventTypes(db(), p.id);
      expect(types.filter((t) => t === (charged ? 'payment.captured' : 'payment.failed'))).toHaveLength(1);
      const ledger = await ledgerOf(h, p.id);
      expect(ledger.filter((l) => l.operation === 'authorize')).toHaveLength(charged ? 1 : 0);
    }
  });
});

describe('an attempt the provider still reports pending', () => {
  it('waits for the asynchronous threshold, then is left open with a doubling, capped backoff until the provider settles', async () => {
    const p = await create({ payment_method_token: 'tok_async' });
    expect(p.status).toBe('processing');
    const [attempt] = await attemptsOf(db(), p.id);
    expect(attempt).toMatchObject({ status: 'unknown', provider_status: 'pending', reconcile_attempts: 0, next_reconcile_at: null });

    // Asynchronous payments get their own (longer) first-look threshold.
    expect(await sweep({ ...NOW, asyncThresholdSeconds: 900 })).toEqual({ checked: 0, settled: 0, stillOpen: 0 });

    const settings: ReconcileSettings = { thresholdSeconds: 5, asyncThresholdSeconds: 0, maxBackoffSeconds: 15, batchSize: 100, claimSeconds: 30 };
    expect(await sweep(settings)).toEqual({ checked: 1, settled: 0, stillOpen: 1 });
    let now = (await attemptsOf(db(), p.id))[0]!;
    expect(now).toMatchObject({ status: 'unknown', reconcile_attempts: 1 });
    const first = await secondsUntilNextLook(attempt!.id);
    expect(first).toBeGreaterThan(8); // 5 s × 2
    expect(first).toBeLessThanOrEqual(10);
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'processing', reconciliation_status: 'pending_reconciliation' });
    const listed = await call(h, 'GET', '/v1/admin/reconciliation?status=pending_reconciliation', { key: ADMIN_KEY });
    expect((listed.body.data as Json[]).map((x) => x.id)).toContain(p.id);

    // Not due again yet.
    expect(await sweep(settings)).toEqual({ checked: 0, settled: 0, stillOpen: 0 });
    expect((await attemptsOf(db(), p.id))[0]!.reconcile_attempts).toBe(1);

    // Its time comes (moved by SQL rather than waited for): 5 × 4 = 20 s, capped at 15 s.
    await db().query("UPDATE payment_attempts SET next_reconcile_at = now() - interval '1 second' WHERE id = $1", [attempt!.id]);
    expect(await sweep(settings)).toEqual({ checked: 1, settled: 0, stillOpen: 1 });
    now = (await attemptsOf(db(), p.id))[0]!;
    expect(now.reconcile_attempts).toBe(2);
    const second = await secondsUntilNextLook(attempt!.id);
    expect(second).toBeGreaterThan(13);
    expect(second).toBeLessThanOrEqual(15);

    // The provider settles the charge (its own settlement step, as its timer would) and its webhook
    // never arrives: the janitor's next look finds the capture and the payment is synced again.
    const [charge] = await chargesOf(db(), p.id);
    expect(await settlePendingCharge(db(), charge!.id)).not.toBeNull();
    await db().query("UPDATE payment_attempts SET next_reconcile_at = now() - interval '1 second' WHERE id = $1", [attempt!.id]);
    expect(await sweep(settings)).toEqual({ checked: 1, settled: 1, stillOpen: 0 });
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'captured', amount_captured: p.amount, reconciliation_status: 'synced' });
    expect((await ledgerOf(h, p.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
  });
});

describe('an attempt on a connector this process does not have', () => {
  it('is left open (never guessed), and the payments are listed for reconciliation page by page', async () => {
    const ps = [await create({ confirm: false }), await create({ confirm: false })];
    for (const p of ps) {
      await withTx(db(), (tx) => insertAttempt(tx, { paymentId: p.id, merchantId: m.id, operation: 'authorize', connector: 'retired_connector', amount: p.amount, request: {}, claimSeconds: 0 }));
    }
    expect(await sweep(NOW)).toEqual({ checked: 2, settled: 0, stillOpen: 2 });
    for (const p of ps) {
      expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ status: 'started', reconcile_attempts: 1 });
      expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'pending', reconciliation_status: 'pending_reconciliation' });
    }
    const newestFirst = [...ps].map((p) => p.id as string).sort().reverse();
    const page1 = await call(h, 'GET', '/v1/admin/reconciliation?status=pending_reconciliation&limit=1', { key: ADMIN_KEY });
    expect(page1.body).toMatchObject({ object: 'list', has_more: true });
    expect((page1.body.data as Json[]).map((x) => x.id)).toEqual([newestFirst[0]]);
    const page2 = await call(h, 'GET', `/v1/admin/reconciliation?status=pending_reconciliation&limit=1&starting_after=${newestFirst[0]}`, { key: ADMIN_KEY });
    expect(page2.body).toMatchObject({ has_more: false });
    expect((page2.body.data as Json[]).map((x) => x.id)).toEqual([newestFirst[1]]);
  });
});
