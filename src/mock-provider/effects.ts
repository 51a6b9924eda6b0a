import type { Db, Tx } from '../db/pool.js';
import { withTx } from '../db/pool.js';
import type { ChargeRow, ProviderMode } from './charges.js';
import { chargeView, insertCharge, lockCharge, updateCharge } from './charges.js';
import { newChargeId, newRefundId } from './ids.js';
import { recordEffect } from './ledger.js';
import type { EffectResult } from './operations.js';
import type { MockWebhookEvent } from './webhooks.js';
import { chargeEvent } from './webhooks.js';

/**
 * What the provider does for each operation, inside the transaction that claimed the
 * idempotency key. Every result here is stored and replayed, declines and refusals included.
 */
export interface FollowUp {
  /** Sent only when the provider is configured to report every effect by webhook. */
  events: MockWebhookEvent[];
  /** An accepted-pending charge to settle later. */
  settleChargeId?: string;
}

export type Effect = EffectResult<FollowUp>;

const DECLINES: Record<string, { code: string; message: string }> = {
  tok_decline: { code: 'card_declined', message: 'The card was declined.' },
  tok_insufficient_funds: { code: 'insufficient_funds', message: 'The card has insufficient funds.' },
};
const ASYNC_TOKENS = new Set(['tok_async', 'tok_async_fail']);
const ASYNC_FAILURE = { code: 'card_declined', message: 'The asynchronous payment failed.' };

export function apiError(code: string, message: string, extra: Record<string, unknown> = {}) {
  return { error: { code, message, ...extra } };
}

function refusal(status: number, code: string, message: string, charge: ChargeRow | null): Effect {
  return {
    status,
    body: apiError(code, message),
    paymentId: charge?.payment_id ?? null,
    chargeId: charge?.id ?? null,
  };
}

export interface AuthorizeInput {
  key: string;
  mode: ProviderMode;
  paymentId: string;
  amount: number;
  currency: string;
  token: string;
  capture: boolean;
}

export async function authorizeCharge(tx: Tx, input: AuthorizeInput): Promise<Effect> {
  const decline = DECLINES[input.token];
  const isAsync = ASYNC_TOKENS.has(input.token);
  const status = decline ? 'failed' : isAsync ? 'pending' : input.capture ? 'captured' : 'authorized';
  const charge = await insertCharge(tx, {
    id: newChargeId(),
    paymentId: input.paymentId,
    amount: input.amount,
    currency: input.currency,
    status,
    capturedAmount: status === 'captured' ? input.amount : 0,
    token: input.token,
    captureRequested: input.capture,
    idempotencyKey: input.key,
    mode: input.mode,
    failureCode: decline?.code ?? null,
  });
  const ids = { paymentId: charge.payment_id, chargeId: charge.id };
  if (decline) {
    return {
      status: 402,
      body: apiError(decline.code, decline.message, { charge_id: charge.id }),
      ...ids,
      followUp: { events: [chargeEvent('charge.failed', charge, input.key, charge.amount)] },
    };
  }
  if (isAsync) {
    return { status: 202, body: chargeView(charge), ...ids, followUp: { events: [], settleChargeId: charge.id } };
  }
  await recordAuthorization(tx, charge, input.key);
  return {
    status: 200,
    body: chargeView(charge),
    ...ids,
    followUp: { events: [chargeEvent('charge.succeeded', charge, input.key, charge.amount)] },
  };
}

async function recordAuthorization(tx: Tx, charge: ChargeRow, key: string): Promise<void> {
  const base = { chargeId: charge.id, paymentId: charge.payment_id, currency: charge.currency, idempotencyKey: key, providerReference: charge.id };
  await recordEffect(tx, { ...base, operation: 'authorize', amount: charge.amount });
  if (charge.status === 'captured') await recordEffect(tx, { ...base, operation: 'capture', amount: charge.captured_amount });
}

export interface ChargeOperationInput {
  key: string;
  chargeId: string;
  amount?: number;
  currency?: string;
}

export async function captureCharge(tx: Tx, input: ChargeOperationInput): Promise<Effect> {
  const charge = await lockCharge(tx, input.chargeId);
  if (!charge) return refusal(404, 'charge_not_found', `No charge ${input.chargeId}.`, null);
  if (charge.status !== 'authorized') {
    return refusal(409, 'charge_not_capturable', `The charge is ${charge.status}; only an authorized charge can be captured.`, charge);
  }
  if (input.currency !== undefined && input.currency !== charge.currency) {
    return refusal(400, 'currency_mismatch', `The charge is in ${charge.currency}.`, charge);
  }
  const amount = input.amount ?? charge.amount;
  if (amount > charge.amount) {
    return refusal(422, 'amount_too_large', `At most ${charge.amount} can be captured.`, charge);
  }
  // A partial capture releases the rest, as card networks do.
  const captured = await updateCharge(tx, charge.id, { status: 'captured', capturedAmount: amount });
  await recordEffect(tx, {
    chargeId: charge.id, paymentId: charge.payment_id, operation: 'capture', amount,
    currency: charge.currency, idempotencyKey: input.key, providerReference: charge.id,
  });
  return {
    status: 200,
    body: chargeView(captured),
    paymentId: charge.payment_id,
    chargeId: charge.id,
    followUp: { events: [chargeEvent('charge.captured', captured, input.key, amount)] },
  };
}

export async function voidCharge(tx: Tx, input: ChargeOperationInput): Promise<Effect> {
  const charge = await lockCharge(tx, input.chargeId);
  if (!charge) return refusal(404, 'charge_not_found', `No charge ${input.chargeId}.`, null);
  if (charge.status !== 'authorized') {
    return refusal(409, 'charge_not_voidable', `The charge is ${charge.status}; only an authorized charge can be voided.`, charge);
  }
  const voided = await updateCharge(tx, charge.id, { status: 'voided' });
  await recordEffect(tx, {
    chargeId: charge.id, paymentId: charge.payment_id, operation: 'void', amount: charge.amount,
    currency: charge.currency, idempotencyKey: input.key, providerReference: charge.id,
  });
  return {
    status: 200,
    body: chargeView(voided),
    paymentId: charge.payment_id,
    chargeId: charge.id,
    followUp: { events: [chargeEvent('charge.voided', voided, input.key, charge.amount)] },
  };
}

export async function refundCharge(tx: Tx, input: ChargeOperationInput): Promise<Effect> {
  const charge = await lockCharge(tx, input.chargeId);
  if (!charge) return refusal(404, 'charge_not_found', `No charge ${input.chargeId}.`, null);
  if (charge.status !== 'captured') {
    return refusal(409, 'charge_not_refundable', `The charge is ${charge.status}; only a captured charge can be refunded.`, charge);
  }
  if (input.currency !== undefined && input.currency !== charge.currency) {
    return refusal(400, 'currency_mismatch', `The charge is in ${charge.currency}.`, charge);
  }
  const refundable = charge.captured_amount - charge.refunded_amount;
  const amount = input.amount ?? refundable;
  if (amount <= 0 || amount > refundable) {
    return refusal(422, 'refund_exceeds_captured', `At most ${refundable} can still be refunded.`, charge);
  }
  const refundId = newRefundId();
  const updated = await updateCharge(tx, charge.id, { refundedAmount: charge.refunded_amount + amount });
  await recordEffect(tx, {
    chargeId: charge.id, paymentId: charge.payment_id, operation: 'refund', amount,
    currency: charge.currency, idempotencyKey: input.key, providerReference: refundId,
  });
  return {
    status: 200,
    body: {
      id: refundId,
      object: 'refund',
      charge_id: charge.id,
      payment_id: charge.payment_id,
      amount,
      currency: charge.currency,
      status: 'succeeded',
      charge: chargeView(updated),
    },
    paymentId: charge.payment_id,
    chargeId: charge.id,
    followUp: { events: [chargeEvent('charge.refunded', updated, input.key, amount, { status: 'refunded', refund_id: refundId })] },
  };
}

/**
 * Settles an accepted-pending charge. Safe to run from any number of processes at once: only the
 * one that still finds it pending under the row lock acts; the others get null.
 */
export async function settlePendingCharge(db: Db, chargeId: string): Promise<{ charge: ChargeRow; event: MockWebhookEvent } | null> {
  return withTx(db, async (tx) => {
    const charge = await lockCharge(tx, chargeId);
    if (!charge || charge.status !== 'pending') return null;
    if (charge.token === 'tok_async_fail') {
      const failed = await updateCharge(tx, charge.id, { status: 'failed', failureCode: ASYNC_FAILURE.code });
      return { charge: failed, event: chargeEvent('charge.failed', failed, charge.idempotency_key, charge.amount) };
    }
    const settled = await updateCharge(tx, charge.id, charge.capture_requested
      ? { status: 'captured', capturedAmount: charge.amount }
      : { status: 'authorized' });
    await recordAuthorization(tx, settled, charge.idempotency_key);
    return { charge: settled, event: chargeEvent('charge.succeeded', settled, charge.idempotency_key, charge.amount) };
  });
}
