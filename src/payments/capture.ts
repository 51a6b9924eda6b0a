import { AppError } from '../domain/errors.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { failedAttemptError, runSecondStep } from './second-step.js';
import { insertAttempt } from './store.js';
import type { PaymentRow } from './types.js';

/**
 * POST /v1/payments/{id}/capture: captures `amount` (default: all) of an authorized payment;
 * a partial capture releases the rest.
 */
export async function capturePayment(deps: PaymentDeps, ctx: OperationContext, paymentId: string, amount: number | undefined, recovery: Recovery | null): Promise<PaymentRow> {
  const { payment, attempt } = await runSecondStep(deps, ctx, paymentId, recovery, async (tx, p) => {
    if (p.status !== 'authorized') {
      throw new AppError('PAYMENT_INVALID_STATE', `Only an authorized payment can be captured; this one is '${p.status}'.`, {
        details: { payment_id: p.id, status: p.status },
      });
    }
    const toCapture = amount ?? p.amount_capturable;
    if (toCapture > p.amount_capturable) {
      throw new AppError('RULE_CAPTURE_AMOUNT_EXCEEDS', `Capture amount ${toCapture} exceeds the capturable amount ${p.amount_capturable}.`, {
        details: { amount_capturable: p.amount_capturable },
      });
    }
    const attempt = await insertAttempt(tx, {
        claimSeconds: deps.claimSeconds,
      paymentId: p.id,
      merchantId: p.merchant_id,
      operation: 'capture',
      connector: p.connector ?? 'mock',
      amount: toCapture,
      request: { amount: toCapture },
    });
    return { kind: 'attempt', attempt };
  });
  const refused = failedAttemptError(attempt, payment);
  if (refused) throw refused;
  return payment;
}
