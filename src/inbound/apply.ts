/**
 * What a provider event means for our records. An event about an open attempt settles that attempt
 * (the same path as a live answer or a sync). Otherwise it is a fact about the payment: applied when
 * it moves the payment forward, ignored when it is stale (we are already past it) or a late failure,
 * and sent to manual review when the provider says money moved on a payment we hold as failed or
 * canceled. Nothing is ever overwritten or moved backwards.
 */
import type { ConnectorOutcome, NormalizedProviderEvent } from '../connectors/port.js';
import type { Tx } from '../db/pool.js';
import { pathTo, type PaymentStatus } from '../domain/state-machine.js';
import { applyOutcome, moveTo } from '../payments/apply-outcome.js';
import type { Actor, AttemptRow, PaymentRow } from '../payments/types.js';

export interface ApplyResult {
  status: 'processed' | 'ignored' | 'unmatched';
  result: string;
  paymentId: string | null;
}

type EventType = NormalizedProviderEvent['type'];

/** The outcome an event reports for an attempt of this operation, or null if it says nothing about it. */
export function outcomeFor(operation: AttemptRow['operation'], e: NormalizedProviderEvent): ConnectorOutcome | null {
  const ref = e.providerReference ?? '';
  const declined = (): ConnectorOutcome => ({ outcome: 'declined', code: e.failureCode ?? 'provider_failed', message: `The provider reported ${operation} failed.`, providerReference: ref });
  switch (operation) {
    case 'authorize':
      if (e.type === 'authorized') return { outcome: 'succeeded', providerReference: ref, providerStatus: 'authorized' };
      if (e.type === 'captured') return { outcome: 'succeeded', providerReference: ref, providerStatus: 'captured' };
      return e.type === 'failed' ? declined() : null;
    case 'capture':
      if (e.type === 'captured') return { outcome: 'succeeded', providerReference: ref, providerStatus: 'captured' };
      return e.type === 'failed' ? declined() : null;
    case 'void':
      return e.type === 'voided' ? { outcome: 'succeeded', providerReference: ref, providerStatus: 'voided' } : null;
    case 'refund':
      if (e.type === 'refunded') return { outcome: 'succeeded', providerReference: ref, providerStatus: 'refunded' };
      return e.type === 'refund_failed' ? declined() : null;
  }
}

const PAYMENT_TARGET: Partial<Record<EventType, PaymentStatus>> = {
  authorized: 'authorized',
  captured: 'captured',
  failed: 'failed',
  voided: 'canceled',
};

const MONEY_MOVED: readonly PaymentStatus[] = ['authorized', 'captured'];

async function findAttempt(tx: Tx, connector: string, e: NormalizedProviderEvent): Promise<AttemptRow | null> {
  if (e.attemptId) {
    const r = await tx.query<AttemptRow>('SELECT * FROM payment_attempts WHERE id = $1 AND connector = $2', [e.attemptId, connector]);
    if (r.rows[0]) return r.rows[0];
  }
  if (e.providerReference) {
    const r = await tx.query<AttemptRow>(
      `SELECT * FROM payment_attempts WHERE provider_reference = $1 AND connector = $2 ORDER BY (status IN ('started','unknown')) DESC, id DESC LIMIT 1`,
      [e.providerReference, connector],
    );
    if (r.rows[0]) return r.rows[0];
  }
  return null;
}

async function findPayment(tx: Tx, connector: string, e: NormalizedProviderEvent, attempt: AttemptRow | null): Promise<PaymentRow | null> {
  const byId = attempt?.payment_id ?? e.paymentId;
  if (byId) {
    const r = await tx.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 AND connector = $2 FOR UPDATE', [byId, connector]);
    if (r.rows[0]) return r.rows[0];
  }
  if (e.providerReference) {
    const r = await tx.query<PaymentRow>('SELECT * FROM payments WHERE provider_reference = $1 AND connector = $2 FOR UPDATE', [e.providerReference, connector]);
    if (r.rows[0]) return r.rows[0];
  }
  return null;
}

export async function applyProviderEvent(tx: Tx, connector: string, e: NormalizedProviderEvent, by: Actor): Promise<ApplyResult> {
  const attempt = await findAttempt(tx, connector, e);
  if (attempt && (attempt.status === 'started' || attempt.status === 'unknown')) {
    const outcome = outcomeFor(attempt.operation, e);
    if (outcome) {
      const applied = await applyOutcome(tx, attempt.id, outcome, by);
      return { status: 'processed', result: `${attempt.operation} attempt ${attempt.id} ${outcome.outcome}; payment ${applied.payment.status}`, paymentId: applied.payment.id };
    }
  }
  const payment = await findPayment(tx, connector, e, attempt);
  if (!payment) return { status: 'unmatched', result: 'no payment or attempt matches this event yet', paymentId: null };

  const target = PAYMENT_TARGET[e.type];
  if (!target) return { status: 'ignored', result: `event type '${e.type}' changes no payment status`, paymentId: payment.id };
  if (payment.status === target) return { status: 'ignored', result: `payment already ${target}`, paymentId: payment.id };
  // A failure reported once the provider has authorized is late (a reordered or duplicated
  // delivery of an earlier decline): authorized → failed would drop a hold the provider still has.
  const lateFailure = target === 'failed' && payment.status === 'authorized';
  if (!lateFailure && pathTo(payment.status, target)) {
    const captured = target === 'captured';
    const moved = await moveTo(tx, payment, target, `provider_event:${e.type}`, by, {
      ...(e.providerReference && !payment.provider_reference ? { provider_reference: e.providerReference } : {}),
      ...(captured ? { amount_captured: e.amount ?? (payment.amount_capturable || payment.amount), amount_capturable: 0 } : {}),
      ...(target === 'authorized' ? { amount_capturable: payment.amount } : {}),
      ...(target === 'failed' ? { failure_code: e.failureCode ?? 'provider_failed', failure_message: 'The provider reported the payment failed.' } : {}),
      ...(target === 'canceled' ? { amount_capturable: 0 } : {}),
    });
    return { status: 'processed', result: `payment ${payment.status} → ${moved.status}`, paymentId: payment.id };
  }
  if (MONEY_MOVED.includes(target) && (payment.status === 'failed' || payment.status === 'canceled')) {
    await moveTo(tx, payment, target, `provider_event:${e.type}`, by);
    return { status: 'processed', result: `contradiction: provider reports ${target}, payment is ${payment.status}; sent to manual review`, paymentId: payment.id };
  }
  return { status: 'ignored', result: `stale: provider reports ${target}, payment is already ${payment.status}`, paymentId: payment.id };
}
