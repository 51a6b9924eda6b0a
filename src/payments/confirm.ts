import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { authorizePayment } from './authorize.js';
import type { PaymentRow } from './types.js';

/** POST /v1/payments/{id}/confirm: a pending payment goes to its connector. */
export async function confirmPayment(deps: PaymentDeps, ctx: OperationContext, paymentId: string, recovery: Recovery | null): Promise<PaymentRow> {
  return authorizePayment(deps, ctx, paymentId, { resume: recovery?.resumed ?? false });
}
