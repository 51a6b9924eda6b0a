import { AppError } from '../domain/errors.js';
import { newId } from '../lib/ids.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { runSecondStep } from './second-step.js';
import { emitRefundEvent, insertAttempt } from './store.js';
import type { RefundRow } from './types.js';

/**
 * POST /v1/payments/{id}/refunds. The payment row lock serialises refunds of one payment, so the
 * sum of pending and succeeded refunds can never pass the captured amount, however many race.
 */
export async function refundPayment(
  deps: PaymentDeps,
  ctx: OperationContext,
  paymentId: string,
  input: { amount?: number | undefined; reason?: string | undefined },
  recovery: Recovery | null,
): Promise<RefundRow> {
  let refundId: string | null = null;
  const { payment, attempt } = await runSecondStep(deps, ctx, paymentId, recovery, async (tx, p) => {
    if (p.status !== 'captured' && p.status !== 'settled') {
      throw new AppError('PAYMENT_INVALID_STATE', `Only a captured or settled payment can be refunded; this one is '${p.status}'.`, {
        details: { payment_id: p.id, status: p.status },
      });
    }
    const committed = await tx.query<{ total: number }>(
      `SELECT COALESCE(sum(amount), 0)::bigint AS total FROM refunds WHERE payment_id = $1 AND status IN ('pending','succeeded')`,
      [p.id],
    );
    const available = p.amount_captured - committed.rows[0]!.total;
    const amount = input.amount ?? available;
    if (amount <= 0 || amount > available) {
      throw new AppError('RULE_REFUND_AMOUNT_EXCEEDS', `Refund amount ${amount} exceeds the refundable amount ${available}.`, {
        details: { refundable: available },
      });
    }
    const r = await tx.query<RefundRow>(
      `INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, reason)
       VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING *`,
      [newId('re'), p.id, p.merchant_id, amount, p.currency, input.reason ?? null],
    );
    const refund = r.rows[0]!;
    refundId = refund.id;
    await emitRefundEvent(tx, p, refund, 'refund.created', ctx.requestId);
    const attempt = await insertAttempt(tx, {
        claimSeconds: deps.claimSeconds,
      paymentId: p.id,
      merchantId: p.merchant_id,
      operation: 'refund',
      connector: p.connector ?? 'mock',
      amount,
      refundId: refund.id,
      request: { amount, reason: input.reason ?? null },
    });
    return { kind: 'attempt', attempt };
  });
  const id = attempt?.refund_id ?? refundId;
  const refund = (await deps.db.query<RefundRow>('SELECT * FROM refunds WHERE id = $1', [id])).rows[0];
  if (!refund) throw new AppError('RESOURCE_NOT_FOUND', 'The refund of this request no longer exists.');
  // A refund the provider refused is answered as the refund object in status `failed`.
  void payment;
  return refund;
}
