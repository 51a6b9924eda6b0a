import { AppError } from '../domain/errors.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { merchantActor } from './context.js';
import { failedAttemptError, runSecondStep } from './second-step.js';
import { insertAttempt, transition } from './store.js';
import type { PaymentRow } from './types.js';

/**
 * POST /v1/payments/{id}/cancel: a pending payment (nothing sent to a provider) is canceled at
 * once; an authorized one is voided at its connector first.
 */
export async function cancelPayment(deps: PaymentDeps, ctx: OperationContext, paymentId: string, reason: string | undefined, recovery: Recovery | null): Promise<PaymentRow> {
  const { payment, attempt } = await runSecondStep(deps, ctx, paymentId, recovery, async (tx, p) => {
    if (p.status === 'pending') {
      const canceled = await transition(tx, p, { to: 'canceled', cause: reason ? `canceled: ${reason}` : 'canceled', by: merchantActor(ctx) });
      return { kind: 'done', payment: canceled };
    }
    if (p.status !== 'authorized') {
      throw new AppError('PAYMENT_INVALID_STATE', `Only a pending or authorized payment can be canceled; this one is '${p.status}'.`, {
        details: { payment_id: p.id, status: p.status },
      });
    }
    const attempt = await insertAttempt(tx, {
        claimSeconds: deps.claimSeconds,
      paymentId: p.id,
      merchantId: p.merchant_id,
      operation: 'void',
      connector: p.connector ?? 'mock',
      amount: p.amount_capturable,
      request: { reason: reason ?? null },
    });
    return { kind: 'attempt', attempt };
  });
  const refused = failedAttemptError(attempt, payment);
  if (refused) throw refused;
  return payment;
}
