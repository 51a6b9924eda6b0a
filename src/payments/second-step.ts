/**
 * The shape shared by capture, cancel (void) and refund: lock the payment, check the state, commit
 * an attempt (plus anything the operation creates), call the connector outside the transaction,
 * apply the outcome. A resumed request settles the attempt its predecessor left open instead.
 */
import { AppError } from '../domain/errors.js';
import { withTx, type Tx } from '../db/pool.js';
import { executeAttempt, resolveAttempt } from './attempts.js';
import type { Applied } from './apply-outcome.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { merchantActor } from './context.js';
import { getAttempt, lockPayment, openAttempts } from './store.js';
import type { AttemptRow, PaymentRow } from './types.js';

export type Prepared =
  | { kind: 'attempt'; attempt: AttemptRow }
  /** Finished without a connector call (e.g. canceling a payment nothing was sent for). */
  | { kind: 'done'; payment: PaymentRow };

export async function runSecondStep(
  deps: PaymentDeps,
  ctx: OperationContext,
  paymentId: string,
  recovery: Recovery | null,
  prepare: (tx: Tx, p: PaymentRow) => Promise<Prepared>,
): Promise<{ payment: PaymentRow; attempt: AttemptRow | null; applied: Applied | null }> {
  const by = merchantActor(ctx);
  if (recovery?.resourceId) {
    const attempt = await getAttempt(deps.db, recovery.resourceId);
    if (attempt && attempt.payment_id === paymentId) {
      if (attempt.status === 'started' || attempt.status === 'unknown') {
        const applied = await resolveAttempt(deps, attempt, by);
        return { payment: applied.payment, attempt: applied.attempt, applied };
      }
      const payment = await withTx(deps.db, (tx) => lockPayment(tx, ctx.merchant.id, paymentId));
      return { payment, attempt, applied: null };
    }
  }
  const prepared = await withTx(deps.db, async (tx) => {
    const p = await lockPayment(tx, ctx.merchant.id, paymentId);
    if ((await openAttempts(tx, p.id)).length > 0) {
      throw new AppError('PAYMENT_INVALID_STATE', 'Another operation on this payment is in progress; retry once it has finished.', {
        details: { payment_id: p.id, status: p.status },
      });
    }
    const result = await prepare(tx, p);
    if (result.kind === 'attempt') await recovery?.record(tx, result.attempt.id);
    return result;
  });
  if (prepared.kind === 'done') return { payment: prepared.payment, attempt: null, applied: null };
  const applied = await executeAttempt(deps, prepared.attempt, by);
  return { payment: applied.payment, attempt: applied.attempt, applied };
}

/** Maps a completed attempt that the provider refused to an API error; open or succeeded ones pass. */
export function failedAttemptError(attempt: AttemptRow | null, payment: PaymentRow): AppError | null {
  if (!attempt || attempt.status !== 'failed') return null;
  return new AppError('CONNECTOR_ERROR', `The provider refused the ${attempt.operation}: ${attempt.error_message ?? attempt.error_code ?? 'unknown error'}.`, {
    details: { payment_id: payment.id, attempt_id: attempt.id, provider_code: attempt.error_code },
  });
}
