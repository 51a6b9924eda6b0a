/**
 * Inbound provider webhooks (SPEC §6, §11) over real HTTP and a real database: signature checks on
 * the raw body, one stored row per provider event, duplicates and concurrent copies with exactly
 * one effect, out-of-order and late events that never regress a payment, contradictions sent to
 * manual review, events for payments not yet known kept and matched later, and failed processing
 * kept as a dead letter and reprocessed (by the provider's retry, the admin endpoint and the worker's
 * reprocessDueEvents).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processStoredEvent, reprocessDueEvents } from '../../src/inbound/receive.js';
import { ADMIN_KEY, call, createMerchant, waitFor, type MerchantWithKey } from '../support/harness.js';
import { expectError, type Json } from '../http/helpers.js';
import {
  HIGH_VELOCITY,
  attemptsOf,
  body,
  chargesOf,
  eventTypes,
  historyOf,
  isValidPath,
  ledgerOf,
  mockEvent,
  paymentRow,
  providerEvents,
  reference,
  sendEvent,
  startProviderHarness,
  type MockEvent,
  type ProviderHarness,
} from './support.js';

let h: ProviderHarness;
let m: MerchantWithKey;

beforeAll(async () => {
  // Many deliberate provider timeouts here: keep the circuit breaker out of the way (it has its own tests).
  h = await startProviderHarness({ CIRCUIT_MINIMUM_CALLS: '1000000' });
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const db = () => h.database.db;

async function create(overrides: Record<string, unknown> = {}): Promise<Json> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body(overrides) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

interface Placed {
  id: string;
  amount: number;
  attemptId: string;
  chargeId: string;
}

/** A payment whose attempt reached the provider but whose answer never came back: `processing`. */
async function processing(n: number, overrides: Record<string, unknown> = {}): Promise<Placed[]> {
  const created = await Promise.all(Array.from({ length: n }, () => create({ payment_method_token: 'tok_timeout_charged', ...overrides })));
  return Promise.all(
    created.map(async (p) => {
      expect(p.status).toBe('processing');
      const [attempt] = await attemptsOf(db(), p.id);
      const [charge] = await chargesOf(db(), p.id);
      expect(attempt?.status).toBe('unknown');
      expect(attempt?.provider_reference).toBeNull();
      return { id: p.id as string, amount: p.amount as number, attemptId: attempt!.id, chargeId: charge!.id };
    }),
  );
}

/** A payment the provider answered: its authorize attempt and charge. */
async function placed(overrides: Record<string, unknown> = {}): Promise<Placed> {
  const p = await create(overrides);
  const [attempt] = await attemptsOf(db(), p.id);
  return { id: p.id, amount: p.amount, attemptId: attempt!.id, chargeId: attempt!.provider_reference! };
}

function succeeded(p: Placed, status: 'authorized' | 'captured', extra: Partial<MockEvent['data']> = {}): MockEvent {
  return mockEvent('charge.succeeded', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, amount: p.amount, status, ...extra });
}

function ok(res: { status: number; body: Json }, expected: Json = { ok: true, received: 1, duplicates: 0, failed: 0 }) {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body).toEqual(expected);
}

describe('a webhook sent by the mock provider itself', () => {
  it('tok_async: 201 processing, then the provider’s signed webhook captures the payment', async () => {
    const p = await create({ payment_method_token: 'tok_async' });
    expect(p.status).toBe('processing');
    const [attempt] = await attemptsOf(db(), p.id);
    expect(attempt).toMatchObject({ status: 'unknown', provider_status: 'pending' });

    const row = await waitFor(async () => {
      const r = await db().query<{ status: string; type: string; connector: string; attempt_id: string }>(
        'SELECT status, type, connector, attempt_id FROM provider_events WHERE payment_id = $1',
        [p.id],
      );
      return r.rows[0]?.status === 'processed' ? r.rows[0] : undefined;
    }, 15_000, 'the provider webhook to be processed');
    expect(row).toEqual({ status: 'processed', type: 'captured', connector: 'mock', attempt_id: attempt!.id });

    const after = await paymentRow(db(), p.id);
    expect(after).toMatchObject({ status: 'captured', amount_captured: p.amount, amount_capturable: 0, provider_reference: attempt!.provider_reference });
    const history = await historyOf(db(), p.id);
    expect(history.map((x) => x.to_status)).toEqual(['pending', 'processing', 'captured']);
    expect(history[2]).toMatchObject({ actor: 'provider:mock', cause: 'authorize:succeeded' });
    expect((await attemptsOf(db(), p.id))[0]?.status).toBe('succeeded');
    expect((await ledgerOf(h, p.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
  });

  it('tok_async_fail: the provider’s failure webhook fails the payment and nothing is charged', async () => {
    const p = await create({ payment_method_token: 'tok_async_fail' });
    expect(p.status).toBe('processing');
    const after = await waitFor(async () => {
      const r = await paymentRow(db(), p.id);
      return r.status === 'processing' ? undefined : r;
    }, 15_000, 'the failure webhook');
    expect(after).toMatchObject({ status: 'failed', failure_code: 'card_declined' });
    expect(await ledgerOf(h, p.id)).toEqual([]);
    const [event] = (await db().query<{ status: string; type: string }>('SELECT status, type FROM provider_events WHERE payment_id = $1', [p.id])).rows;
    expect(event).toEqual({ status: 'processed', type: 'failed' });
  });
});

describe('signed events for a payment in processing', () => {
  it('a valid signed event settles the open attempt and the payment', async () => {
    const [p] = await processing(1);
    const e = succeeded(p!, 'captured');
    ok(await sendEvent(h, e));
    expect(await paymentRow(db(), p!.id)).toMatchObject({ status: 'captured', amount_captured: p!.amount, provider_reference: p!.chargeId });
    const [attempt] = await attemptsOf(db(), p!.id);
    expect(attempt).toMatchObject({ status: 'succeeded', provider_reference: p!.chargeId, provider_status: 'captured' });
    const [row] = await providerEvents(db(), e.id);
    expect(row).toMatchObject({ status: 'processed', type: 'captured', payment_id: p!.id, process_attempts: 1, error: null });
    expect(row!.result).toContain(`authorize attempt ${p!.attemptId} succeeded`);
    expect(row!.processed_at).toBeInstanceOf(Date);
    // The provider charged once; our records agree.
    expect((await ledgerOf(h, p!.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
  });

  it('bad, missing or stale signatures and tampered bodies answer 400 and change nothing', async () => {
    const [p] = await processing(1);
    const before = await paymentRow(db(), p!.id);
    const history = await historyOf(db(), p!.id);
    const e = succeeded(p!, 'captured');
    const now = Math.floor(Date.now() / 1000);
    const tampered = JSON.stringify({ ...e, data: { ...e.data, amount: 1 } });

    const refusals = [
      await sendEvent(h, e, { secret: 'not_the_provider_secret' }),
      await sendEvent(h, e, { sentBody: tampered }),
      await sendEvent(h, e, { timestamp: now - 301 }),
      await sendEvent(h, e, { timestamp: now + 301 }),
      await sendEvent(h, e, { signature: null }),
      await sendEvent(h, e, { signature: 'garbage' }),
      await sendEvent(h, e, { signature: `t=${now},v1=${'0'.repeat(64)}` }),
      // No body at all.
      await call(h, 'POST', '/v1/connectors/mock/webhooks', { headers: { 'mock-signature': `t=${now},v1=${'a'.repeat(64)}` } }),
    ];
    for (const res of refusals) expectError(res, 400, 'WEBHOOK_SIGNATURE_INVALID');

    expect(await providerEvents(db(), e.id)).toEqual([]);
    expect(await paymentRow(db(), p!.id)).toEqual(before);
    expect(await historyOf(db(), p!.id)).toEqual(history);
    expect((await attemptsOf(db(), p!.id))[0]?.status).toBe('unknown');

    // The very same event, signed within the tolerance, is accepted: the refusals were the signature's.
    ok(await sendEvent(h, e, { timestamp: now - 290 }));
    expect((await paymentRow(db(), p!.id)).status).toBe('captured');
  });

  it('a signed body that is not a provider event answers 400 INVALID_JSON and stores nothing', async () => {
    const before = (await db().query<{ n: number }>('SELECT count(*)::int AS n FROM provider_events')).rows[0]!.n;
    expectError(await sendEvent(h, 'this is not json'), 400, 'INVALID_JSON');
    expectError(await sendEvent(h, JSON.stringify({ type: 'charge.succeeded', data: {} })), 400, 'INVALID_JSON');
    expectError(await sendEvent(h, '[]'), 400, 'INVALID_JSON');
    expect((await db().query<{ n: number }>('SELECT count(*)::int AS n FROM provider_events')).rows[0]!.n).toBe(before);
  });

  it('an unknown connector answers 404', async () => {
    const e = mockEvent('charge.succeeded', { charge_id: 'ch_x', status: 'captured' });
    expectError(await sendEvent(h, e, { connector: 'nosuchconnector' }), 404, 'RESOURCE_NOT_FOUND');
    expect(await providerEvents(db(), e.id)).toEqual([]);
  });

  it('the same event twice: the second answers 200 and changes nothing', async () => {
    const [p] = await processing(1);
    const e = succeeded(p!, 'captured');
    ok(await sendEvent(h, e));
    const after = await paymentRow(db(), p!.id);
    const history = await historyOf(db(), p!.id);
    const events = await eventTypes(db(), p!.id);

    ok(await sendEvent(h, e), { ok: true, received: 1, duplicates: 1, failed: 0 });
    expect(await paymentRow(db(), p!.id)).toEqual(after);
    expect(await historyOf(db(), p!.id)).toEqual(history);
    expect(await eventTypes(db(), p!.id)).toEqual(events);
    expect(await providerEvents(db(), e.id)).toHaveLength(1);
  });

  it('20 copies of one event sent concurrently have exactly one effect', async () => {
    const [p] = await processing(1);
    const e = succeeded(p!, 'captured');
    const raw = JSON.stringify(e);
    const responses = await Promise.all(Array.from({ length: 20 }, () => sendEvent(h, raw)));
    for (const res of responses) {
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({ ok: true, received: 1, failed: 0 });
    }
    const rows = await providerEvents(db(), e.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'processed', type: 'captured', process_attempts: 1 });

    const history = await historyOf(db(), p!.id);
    expect(history.filter((x) => x.to_status === 'captured')).toHaveLength(1);
    expect(history.map((x) => x.to_status)).toEqual(['pending', 'processing', 'captured']);
    expect((await eventTypes(db(), p!.id)).filter((t) => t === 'payment.captured')).toHaveLength(1);
    expect(await paymentRow(db(), p!.id)).toMatchObject({ status: 'captured', amount_captured: p!.amount });
  });

  it('captured delivered before authorized: ends captured, the path is valid, the late event is ignored as stale', async () => {
    const [p] = await processing(1);
    const capturedEvent = mockEvent('charge.captured', { charge_id: p!.chargeId, payment_id: p!.id, idempotency_key: p!.attemptId, amount: p!.amount, status: 'captured' });
    const authorizedEvent = succeeded(p!, 'authorized');
    ok(await sendEvent(h, capturedEvent));
    ok(await sendEvent(h, authorizedEvent));

    const after = await paymentRow(db(), p!.id);
    expect(after).toMatchObject({ status: 'captured', amount_captured: p!.amount, amount_capturable: 0 });
    const history = await historyOf(db(), p!.id);
    expect(isValidPath(history)).toBe(true);
    expect(history.map((x) => x.to_status)).toEqual(['pending', 'processing', 'captured']);
    const [late] = await providerEvents(db(), authorizedEvent.id);
    expect(late).toMatchObject({ status: 'ignored', payment_id: p!.id });
    expect(late!.result).toMatch(/^stale: provider reports authorized, payment is already captured/);
    expect((await providerEvents(db(), capturedEvent.id))[0]?.status).toBe('processed');
  });
});

describe('late and contradicting events', () => {
  it('a failure webhook after success (captured) is ignored and recorded; the payment is unchanged', async () => {
    const p = await placed({ payment_method_token: 'tok_success' });
    const before = await paymentRow(db(), p.id);
    expect(before.status).toBe('captured');
    const e = mockEvent('charge.failed', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, amount: p.amount, status: 'failed', failure_code: 'card_declined' });
    ok(await sendEvent(h, e));
    const [row] = await providerEvents(db(), e.id);
    expect(row).toMatchObject({ status: 'ignored', payment_id: p.id });
    expect(row!.result).toMatch(/stale/);
    expect(await paymentRow(db(), p.id)).toEqual(before);
  });

  it('a failure webhook after a successful authorization (authorized) is ignored; the payment stays authorized', async () => {
    const p = await placed({ payment_method_token: 'tok_success', capture_method: 'manual' });
    const before = await paymentRow(db(), p.id);
    expect(before.status).toBe('authorized');
    const history = await historyOf(db(), p.id);
    const e = mockEvent('charge.failed', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, amount: p.amount, status: 'failed', failure_code: 'card_declined' });
    ok(await sendEvent(h, e));
    const [row] = await providerEvents(db(), e.id);
    expect(row, JSON.stringify(row)).toMatchObject({ status: 'ignored', payment_id: p.id, result: 'stale: provider reports failed, payment is already authorized' });
    expect(await paymentRow(db(), p.id)).toEqual(before);
    expect(await historyOf(db(), p.id)).toEqual(history);
    // The authorization still stands: it can be captured, once, at the provider.
    const captured = await call(h, 'POST', `/v1/payments/${p.id}/capture`, { key: m.key });
    expect(captured.status, JSON.stringify(captured.body)).toBe(200);
    expect(captured.body.status).toBe('captured');
    expect((await ledgerOf(h, p.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
  });

  it('a provider-reported capture of a canceled payment goes to manual review; the status stays canceled', async () => {
    const p = await placed({ payment_method_token: 'tok_success', capture_method: 'manual' });
    const canceled = await call(h, 'POST', `/v1/payments/${p.id}/cancel`, { key: m.key });
    expect(canceled.status, JSON.stringify(canceled.body)).toBe(200);
    expect(canceled.body.status).toBe('canceled');
    const history = await historyOf(db(), p.id);

    const e = mockEvent('charge.captured', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, amount: p.amount, status: 'captured' });
    ok(await sendEvent(h, e));
    const after = await paymentRow(db(), p.id);
    expect(after).toMatchObject({ status: 'canceled', reconciliation_status: 'manual_review', amount_captured: 0 });
    expect(await historyOf(db(), p.id)).toEqual(history);
    const types = await eventTypes(db(), p.id);
    expect(types.filter((t) => t === 'payment.reconciliation_required')).toHaveLength(1);
    const [row] = await providerEvents(db(), e.id);
    expect(row).toMatchObject({ status: 'processed', payment_id: p.id });
    expect(row!.result).toMatch(/contradiction: provider reports captured, payment is canceled/);

    const listed = await call(h, 'GET', '/v1/admin/reconciliation?status=manual_review&limit=100', { key: ADMIN_KEY });
    expect(listed.status).toBe(200);
    const entry = (listed.body.data as Json[]).find((x) => x.id === p.id);
    expect(entry).toMatchObject({ id: p.id, status: 'canceled', reconciliation_status: 'manual_review', merchant_id: m.id });
    const events = await call(h, 'GET', `/v1/payments/${p.id}/events`, { key: m.key });
    expect((events.body.data as Json[]).some((x) => x.type === 'payment.reconciliation_required')).toBe(true);

    // A second provider event saying the same thing flags nothing twice.
    ok(await sendEvent(h, mockEvent('charge.captured', { ...e.data })));
    expect(await paymentRow(db(), p.id)).toEqual(after);
    expect((await eventTypes(db(), p.id)).filter((t) => t === 'payment.reconciliation_required')).toHaveLength(1);
  });

  it('a provider-reported authorization of a declined payment goes to manual review too', async () => {
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_decline' }) });
    expect(res.status).toBe(402);
    const paymentId = res.body.error.details.payment_id as string;
    const [attempt] = await attemptsOf(db(), paymentId);
    const e = mockEvent('charge.succeeded', { charge_id: attempt!.provider_reference!, payment_id: paymentId, idempotency_key: attempt!.id, status: 'authorized' });
    ok(await sendEvent(h, e));
    expect(await paymentRow(db(), paymentId)).toMatchObject({ status: 'failed', reconciliation_status: 'manual_review' });
    expect(await eventTypes(db(), paymentId)).toContain('payment.reconciliation_required');
  });

  it('a provider-reported failure of a canceled payment is stale and ignored (no money moved)', async () => {
    const p = await placed({ payment_method_token: 'tok_success', capture_method: 'manual' });
    expect((await call(h, 'POST', `/v1/payments/${p.id}/cancel`, { key: m.key })).status).toBe(200);
    const before = await paymentRow(db(), p.id);
    const e = mockEvent('charge.failed', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, status: 'failed' });
    ok(await sendEvent(h, e));
    expect((await providerEvents(db(), e.id))[0]).toMatchObject({ status: 'ignored', result: 'stale: provider reports failed, payment is already canceled' });
    expect(await paymentRow(db(), p.id)).toEqual(before);
  });
});

describe('events that speak about the payment rather than an open attempt', () => {
  // Events without our attempt id (a provider that names only our payment or its own charge):
  // they move the payment through the state machine by themselves.
  it('authorized, with no charge id: processing → authorized, the whole amount capturable', async () => {
    const [p] = await processing(1, { capture_method: 'manual' });
    const e = mockEvent('charge.succeeded', { payment_id: p!.id, status: 'authorized' });
    ok(await sendEvent(h, e));
    expect(await paymentRow(db(), p!.id)).toMatchObject({ status: 'authorized', amount_capturable: p!.amount, provider_reference: null });
    expect((await historyOf(db(), p!.id)).at(-1)).toMatchObject({ from_status: 'processing', to_status: 'authorized', cause: 'provider_event:authorized', actor: 'provider:mock' });
    // The attempt itself stays open for the janitor, which asks the provider.
    expect((await attemptsOf(db(), p!.id))[0]?.status).toBe('unknown');

    // Captured with no amount: what was capturable is captured.
    const c = mockEvent('charge.captured', { payment_id: p!.id, status: 'captured' });
    ok(await sendEvent(h, c));
    expect(await paymentRow(db(), p!.id)).toMatchObject({ status: 'captured', amount_captured: p!.amount, amount_capturable: 0 });
    // Captured again: the payment is already there.
    const again = mockEvent('charge.captured', { payment_id: p!.id, status: 'captured' });
    ok(await sendEvent(h, again));
    expect((await providerEvents(db(), again.id))[0]).toMatchObject({ status: 'ignored', result: 'payment already captured' });
  });

  it('captured with no amount for a payment in processing captures its amount', async () => {
    const [p] = await processing(1);
    const e = mockEvent('charge.captured', { payment_id: p!.id, status: 'captured' });
    ok(await sendEvent(h, e));
    expect(await paymentRow(db(), p!.id)).toMatchObject({ status: 'captured', amount_captured: p!.amount, amount_capturable: 0 });
  });

  it('failed with and without a failure code', async () => {
    const [a, b] = await processing(2);
    ok(await sendEvent(h, mockEvent('charge.failed', { payment_id: a!.id, status: 'failed', failure_code: 'expired_card' })));
    ok(await sendEvent(h, mockEvent('charge.failed', { payment_id: b!.id, status: 'failed' })));
    expect(await paymentRow(db(), a!.id)).toMatchObject({ status: 'failed', failure_code: 'expired_card', failure_message: 'The provider reported the payment failed.' });
    expect(await paymentRow(db(), b!.id)).toMatchObject({ status: 'failed', failure_code: 'provider_failed' });
  });

  it('voided: an authorized payment becomes canceled', async () => {
    const p = await placed({ payment_method_token: 'tok_success', capture_method: 'manual' });
    const e = mockEvent('charge.voided', { charge_id: p.chargeId, payment_id: p.id, status: 'voided' });
    ok(await sendEvent(h, e));
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'canceled', amount_capturable: 0 });
    expect((await providerEvents(db(), e.id))[0]?.result).toBe('payment authorized → canceled');
  });

  it('events that change no status (refunded, unknown types, or saying nothing about the open attempt) are ignored', async () => {
    const [p] = await processing(1);
    const before = await paymentRow(db(), p!.id);
    const refunded = mockEvent('charge.refunded', { charge_id: p!.chargeId, payment_id: p!.id, idempotency_key: p!.attemptId, status: 'refunded' });
    const disputed = mockEvent('charge.disputed', { payment_id: p!.id });
    ok(await sendEvent(h, refunded));
    ok(await sendEvent(h, disputed));
    expect((await providerEvents(db(), refunded.id))[0]).toMatchObject({ status: 'ignored', result: "event type 'refunded' changes no payment status" });
    expect((await providerEvents(db(), disputed.id))[0]).toMatchObject({ status: 'ignored', type: 'other', result: "event type 'other' changes no payment status" });
    expect(await paymentRow(db(), p!.id)).toEqual(before);
    expect((await attemptsOf(db(), p!.id))[0]?.status).toBe('unknown');
  });
});

describe('an event for a payment not yet known', () => {
  /**
   * The provider's webhook overtakes its own API answer: the attempt is committed and sent, the
   * provider has charged, but our side has not yet recorded the outcome (the payment has no
   * connector or provider reference yet). The webhook names only the charge and our payment id.
   * A row lock on the payment holds the API's outcome back so that window is certain.
   */
  async function eventInTheWindow(): Promise<{ paymentId: string; chargeId: string; amount: number; event: MockEvent; created: Json }> {
    const ref = reference('early');
    const creating = call(h, 'POST', '/v1/payments', { key: m.key, body: body({ reference_id: ref, payment_method_token: 'tok_timeout_charged' }) });
    const found = await waitFor(async () => {
      const r = await db().query<{ id: string }>('SELECT id FROM payments WHERE merchant_id = $1 AND reference_id = $2', [m.id, ref]);
      const id = r.rows[0]?.id;
      if (!id) return undefined;
      const [charge] = await chargesOf(db(), id);
      return charge ? { paymentId: id, chargeId: charge.id } : undefined;
    }, 10_000, 'the provider to charge');
    const holder = await db().connect();
    let event: MockEvent;
    let amount: number;
    try {
      await holder.query('BEGIN');
      const locked = await holder.query<{ status: string; connector: string | null; amount: number }>(
        'SELECT status, connector, amount FROM payments WHERE id = $1 FOR UPDATE',
        [found.paymentId],
      );
      // Our side has not recorded anything from the provider yet.
      expect(locked.rows[0]).toMatchObject({ status: 'pending', connector: null });
      amount = locked.rows[0]!.amount;
      event = mockEvent('charge.succeeded', { charge_id: found.chargeId, payment_id: found.paymentId, amount, status: 'captured' });
      ok(await sendEvent(h, event));
      const [row] = await providerEvents(db(), event.id);
      expect(row).toMatchObject({ status: 'unmatched', payment_id: found.paymentId, process_attempts: 1, processed_at: null });
      expect(row!.result).toBe('no payment or attempt matches this event yet');
      expect(row!.next_retry_at!.getTime()).toBeGreaterThan(Date.now() - 2_000);
      await holder.query('COMMIT');
    } catch (err) {
      await holder.query('ROLLBACK');
      throw err;
    } finally {
      holder.release();
    }
    const created = await creating;
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return { ...found, amount, event, created: created.body };
  }

  it('is kept unmatched, listed, and applied by the admin reprocess once the payment is known', async () => {
    const w = await eventInTheWindow();
    expect(w.created.status).toBe('processing');
    const [row] = await providerEvents(db(), w.event.id);
    expect(row?.status).toBe('unmatched');

    const listed = await call(h, 'GET', '/v1/admin/provider_events?status=unmatched&limit=100', { key: ADMIN_KEY });
    expect(listed.status).toBe(200);
    const entry = (listed.body.data as Json[]).find((x) => x.id === row!.id);
    expect(entry).toMatchObject({ object: 'provider_event', connector: 'mock', provider_event_id: w.event.id, type: 'captured', status: 'unmatched', payment_id: w.paymentId, attempt_id: null, provider_reference: w.chargeId, processed_at: null });
    expect(typeof entry!.next_retry_at).toBe('string');

    const re = await call(h, 'POST', `/v1/admin/provider_events/${row!.id}/reprocess`, { key: ADMIN_KEY });
    expect(re.status, JSON.stringify(re.body)).toBe(200);
    expect(re.body).toMatchObject({ id: row!.id, status: 'processed', payment_id: w.paymentId, process_attempts: 2, error: null, next_retry_at: null });
    expect(typeof re.body.processed_at).toBe('string');
    expect(await paymentRow(db(), w.paymentId)).toMatchObject({ status: 'captured', amount_captured: w.amount, provider_reference: w.chargeId, connector: 'mock' });
    expect(isValidPath(await historyOf(db(), w.paymentId))).toBe(true);
    expect((await ledgerOf(h, w.paymentId)).filter((l) => l.operation === 'authorize')).toHaveLength(1);

    // Reprocessing an event already applied changes nothing.
    const again = await call(h, 'POST', `/v1/admin/provider_events/${row!.id}/reprocess`, { key: ADMIN_KEY });
    expect(again.body).toMatchObject({ status: 'processed', process_attempts: 2 });

    // The payment now carries the provider's reference, so a later event naming only the charge
    // (or a payment id we do not know) finds it by that reference.
    const byRef = mockEvent('charge.captured', { charge_id: w.chargeId, status: 'captured' });
    ok(await sendEvent(h, byRef));
    expect((await providerEvents(db(), byRef.id))[0]).toMatchObject({ status: 'ignored', payment_id: w.paymentId, result: 'payment already captured' });
    const wrongId = mockEvent('charge.captured', { charge_id: w.chargeId, payment_id: 'pay_not_ours', idempotency_key: 'att_not_ours', status: 'captured' });
    ok(await sendEvent(h, wrongId));
    expect((await providerEvents(db(), wrongId.id))[0]).toMatchObject({ status: 'ignored', payment_id: w.paymentId });
  });

  it('is applied by the worker’s reprocessDueEvents once its retry time has come', async () => {
    const w = await eventInTheWindow();
    const [row] = await providerEvents(db(), w.event.id);
    // Not due yet (5 s backoff): left alone.
    await reprocessDueEvents(db());
    expect((await providerEvents(db(), w.event.id))[0]).toMatchObject({ status: 'unmatched', process_attempts: 1 });
    // Its time comes (moved by SQL rather than waited for).
    await db().query("UPDATE provider_events SET next_retry_at = now() - interval '1 second' WHERE id = $1", [row!.id]);
    const r = await reprocessDueEvents(db());
    expect(r.processed).toBeGreaterThanOrEqual(1);
    expect((await providerEvents(db(), w.event.id))[0]).toMatchObject({ status: 'processed', payment_id: w.paymentId, process_attempts: 2 });
    expect((await paymentRow(db(), w.paymentId)).status).toBe('captured');
  });

  it('an event nothing ever matches stays unmatched and backs off', async () => {
    const e = mockEvent('charge.succeeded', { charge_id: 'ch_nobody', payment_id: 'pay_nobody', idempotency_key: 'att_nobody', status: 'captured' });
    ok(await sendEvent(h, e));
    const [first] = await providerEvents(db(), e.id);
    expect(first).toMatchObject({ status: 'unmatched', process_attempts: 1 });
    const re = await call(h, 'POST', `/v1/admin/provider_events/${first!.id}/reprocess`, { key: ADMIN_KEY });
    expect(re.body).toMatchObject({ status: 'unmatched', process_attempts: 2 });
    const [second] = await providerEvents(db(), e.id);
    // 5 s after the first look, 10 s after the second.
    expect(second!.next_retry_at!.getTime() - first!.next_retry_at!.getTime()).toBeGreaterThan(3_000);

    // An event for a mock payment sent to the flaky connector's endpoint matches nothing either.
    const p = await placed({ payment_method_token: 'tok_success' });
    const other = mockEvent('charge.failed', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, status: 'failed' });
    ok(await sendEvent(h, other, { connector: 'flaky' }));
    expect((await providerEvents(db(), other.id))[0]).toMatchObject({ connector: 'flaky', status: 'unmatched' });
    expect((await paymentRow(db(), p.id)).status).toBe('captured');
  });
});

describe('processing failures: a dead letter, then reprocessed', () => {
  /**
   * How a failure is forced without mocks: a CHECK constraint (NOT VALID, so existing rows are
   * untouched) makes the database itself refuse these payments becoming `captured`. Processing the
   * event then fails inside its transaction exactly as any database refusal would; dropping the
   * constraint is the transient cause going away.
   */
  const constraint = `prv_refuse_capture_${process.pid}`;
  let ps: Awaited<ReturnType<typeof placed>>[];
  let events: MockEvent[];

  beforeAll(async () => {
    ps = await Promise.all([0, 1, 2].map(() => placed({ payment_method_token: 'tok_success', capture_method: 'manual' })));
    const ids = ps.map((p) => `'${p.id}'`).join(',');
    await db().query(`ALTER TABLE payments ADD CONSTRAINT ${constraint} CHECK (id NOT IN (${ids}) OR status <> 'captured') NOT VALID`);
    events = ps.map((p) => mockEvent('charge.captured', { charge_id: p.chargeId, payment_id: p.id, idempotency_key: p.attemptId, amount: p.amount, status: 'captured' }));
  });
  afterAll(async () => {
    await db().query(`ALTER TABLE payments DROP CONSTRAINT IF EXISTS ${constraint}`);
  });

  it('answers 500 WEBHOOK_PROCESSING_FAILED, stores the event as failed with its error, and changes nothing', async () => {
    for (const [i, e] of events.entries()) {
      const before = await paymentRow(db(), ps[i]!.id);
      const history = await historyOf(db(), ps[i]!.id);
      expectError(await sendEvent(h, e), 500, 'WEBHOOK_PROCESSING_FAILED');
      const [row] = await providerEvents(db(), e.id);
      expect(row).toMatchObject({ status: 'failed', process_attempts: 1, processed_at: null });
      expect(row!.error).toContain(`violates check constraint "${constraint}"`);
      expect(row!.next_retry_at!.getTime()).toBeGreaterThan(Date.now() - 2_000);
      expect(await paymentRow(db(), ps[i]!.id)).toEqual(before);
      expect(await historyOf(db(), ps[i]!.id)).toEqual(history);
    }
    const listed = await call(h, 'GET', '/v1/admin/provider_events?status=failed&limit=100', { key: ADMIN_KEY });
    const ids = (listed.body.data as Json[]).map((x) => x.provider_event_id);
    for (const e of events) expect(ids).toContain(e.id);
    expect((listed.body.data as Json[]).every((x) => x.status === 'failed' && typeof x.error === 'string')).toBe(true);
  });

  it('while the cause persists, every retry path fails again and counts it', async () => {
    const [row] = await providerEvents(db(), events[0]!.id);
    // The provider retries (its copy is a failed event, so it is processed again, not a duplicate).
    expectError(await sendEvent(h, events[0]!), 500, 'WEBHOOK_PROCESSING_FAILED');
    const re = await call(h, 'POST', `/v1/admin/provider_events/${row!.id}/reprocess`, { key: ADMIN_KEY });
    expect(re.status).toBe(200);
    expect(re.body).toMatchObject({ status: 'failed', process_attempts: 3 });
    expect(re.body.error).toContain('violates check constraint');
    // The worker's pass: made due by SQL, it fails again and reports it.
    await db().query("UPDATE provider_events SET next_retry_at = now() - interval '1 second' WHERE id = $1", [row!.id]);
    const r = await reprocessDueEvents(db());
    expect(r.failed).toBeGreaterThanOrEqual(1);
    expect((await providerEvents(db(), events[0]!.id))[0]).toMatchObject({ status: 'failed', process_attempts: 4 });
    expect((await paymentRow(db(), ps[0]!.id)).status).toBe('authorized');
  });

  it('once the cause is gone: the provider’s retry, the admin reprocess and reprocessDueEvents each apply it once', async () => {
    await db().query(`ALTER TABLE payments DROP CONSTRAINT ${constraint}`);

    // 1. The provider sends it again.
    ok(await sendEvent(h, events[0]!));
    expect(await paymentRow(db(), ps[0]!.id)).toMatchObject({ status: 'captured', amount_captured: ps[0]!.amount, amount_capturable: 0 });

    // 2. An operator reprocesses it.
    const [row1] = await providerEvents(db(), events[1]!.id);
    const re = await call(h, 'POST', `/v1/admin/provider_events/${row1!.id}/reprocess`, { key: ADMIN_KEY });
    expect(re.status).toBe(200);
    expect(re.body).toMatchObject({ status: 'processed', error: null, process_attempts: 2 });
    expect((await paymentRow(db(), ps[1]!.id)).status).toBe('captured');

    // 3. The worker's pass, once the backoff has passed.
    const [row2] = await providerEvents(db(), events[2]!.id);
    await db().query("UPDATE provider_events SET next_retry_at = now() - interval '1 second' WHERE id = $1", [row2!.id]);
    await reprocessDueEvents(db());
    expect((await providerEvents(db(), events[2]!.id))[0]).toMatchObject({ status: 'processed', error: null });
    expect((await paymentRow(db(), ps[2]!.id)).status).toBe('captured');

    for (const p of ps) {
      const history = await historyOf(db(), p.id);
      expect(history.filter((x) => x.to_status === 'captured')).toHaveLength(1);
      expect(isValidPath(history)).toBe(true);
    }
    // A later copy from the provider is a duplicate now.
    ok(await sendEvent(h, events[0]!), { ok: true, received: 1, duplicates: 1, failed: 0 });
  });
});

describe('admin: provider events', () => {
  it('needs the admin key', async () => {
    expectError(await call(h, 'GET', '/v1/admin/provider_events'), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(h, 'GET', '/v1/admin/provider_events', { key: m.key }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(h, 'POST', '/v1/admin/provider_events/pe_x/reprocess', { key: m.key }), 401, 'AUTH_INVALID_API_KEY');
  });

  it('lists newest first with a cursor, filters by status, refuses unknown statuses', async () => {
    const all = await call(h, 'GET', '/v1/admin/provider_events?limit=100', { key: ADMIN_KEY });
    expect(all.status).toBe(200);
    const data = all.body.data as Json[];
    expect(data.length).toBeGreaterThan(3);
    const ids = data.map((x) => x.id as string);
    expect([...ids].sort().reverse()).toEqual(ids);

    const page1 = await call(h, 'GET', '/v1/admin/provider_events?limit=2', { key: ADMIN_KEY });
    expect(page1.body).toMatchObject({ object: 'list', has_more: true });
    expect((page1.body.data as Json[]).map((x) => x.id)).toEqual(ids.slice(0, 2));
    const page2 = await call(h, 'GET', `/v1/admin/provider_events?limit=2&starting_after=${ids[1]}`, { key: ADMIN_KEY });
    expect((page2.body.data as Json[]).map((x) => x.id)).toEqual(ids.slice(2, 4));

    const ignored = await call(h, 'GET', '/v1/admin/provider_events?status=ignored&limit=100', { key: ADMIN_KEY });
    expect((ignored.body.data as Json[]).length).toBeGreaterThan(0);
    expect((ignored.body.data as Json[]).every((x) => x.status === 'ignored')).toBe(true);

    expectError(await call(h, 'GET', '/v1/admin/provider_events?status=bogus', { key: ADMIN_KEY }), 400, 'SCHEMA_INVALID_FIELD');
  });

  it('reprocessing an unknown event answers 404', async () => {
    expectError(await call(h, 'POST', '/v1/admin/provider_events/pe_does_not_exist/reprocess', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
    // And the stored-event processor itself treats a vanished row as nothing to do.
    expect(await processStoredEvent(db(), 'pe_does_not_exist', null)).toBe('done');
  });
});
