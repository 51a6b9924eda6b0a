/**
 * Sends a pending payment to its connectors in routing order. Failover to the next connector
 * happens only when the previous one certainly did not charge; a timeout stops here with the
 * payment in `processing`.
 */
import { AppError } from '../domain/errors.js';
import { withTx, type Tx } from '../db/pool.js';
import { routeOrder } from '../connectors/registry.js';
import { executeAttempt, resolveAttempt } from './attempts.js';
import type { OperationContext, PaymentDeps } from './context.js';
import { merchantActor } from './context.js';
import { insertAttempt, lockPayment, openAttempts } from './store.js';
import type { AttemptRow, PaymentRow } from './types.js';

export interface AuthorizeOptions {
  /** A resumed request may settle an attempt its predecessor left open; a fresh one may not. */
  resume: boolean;
  /** An attempt already committed with the payment (see createPayment): sent first. */
  started?: { attempt: AttemptRow; payment: PaymentRow };
}

/** The connector to try first for a payment, or null when none is available now. */
export function firstConnector(deps: PaymentDeps, ctx: OperationContext): string | null {
  return routeOrder(ctx.merchant.connectors, deps.connectors)[0] ?? null;
}

export async function authorizePayment(deps: PaymentDeps, ctx: OperationContext, paymentId: string, opts: AuthorizeOptions): Promise<PaymentRow> {
  const by = merchantActor(ctx);
  const tried = new Set<string>();
  let started = opts.started;
  for (;;) {
    const step = started ? { kind: 'execute' as const, ...started } : await withTx(deps.db, async (tx) => {
      const p = await lockPayment(tx, ctx.merchant.id, paymentId);
      const open = (await openAttempts(tx, p.id)).find((a) => a.operation === 'authorize');
      if (open) {
        if (!opts.resume) {
          throw new AppError('PAYMENT_INVALID_STATE', 'An authorization of this payment is already in progress.', {
            details: { payment_id: p.id, status: p.status },
          });
        }
        return { kind: 'resolve' as const, attempt: open };
      }
      if (p.status !== 'pending') {
        if (opts.resume) return { kind: 'done' as const, payment: p };
        throw new AppError('PAYMENT_INVALID_STATE', `Only a pending payment can be confirmed; this one is '${p.status}'.`, {
          details: { payment_id: p.id, status: p.status },
        });
      }
      const candidates = routeOrder(ctx.merchant.connectors, deps.connectors).filter((n) => !tried.has(n));
      const connector = candidates[0];
      if (!connector) {
        const waits = ctx.merchant.connectors.map((c) => deps.connectors.retryAfterSeconds(c.name)).filter((s) => s > 0);
        throw new AppError('CONNECTOR_UNAVAILABLE', 'No payment connector is available for this merchant right now; nothing was charged.', {
          retryAfter: waits.length > 0 ? Math.min(...waits) : 30,
          details: { payment_id: p.id },
        });
      }
      const attempt = await insertAuthorizeAttempt(tx, deps, p, connector);
      return { kind: 'execute' as const, attempt, payment: p };
    });
    if (step.kind === 'done') {
      // A resumed request whose predecessor died after the decline was committed answers as that
      // request would have: 402, not the failed payment as a success.
      if (step.payment.status === 'failed') throw declinedError(step.payment);
      return step.payment;
    }
    started = undefined;
    const applied = step.kind === 'resolve' ? await resolveAttempt(deps, step.attempt, by) : await executeAttempt(deps, step.attempt, by, step.payment);
    tried.add(applied.attempt.connector);
    // A failed attempt on a still-pending payment is a certain non-charge: try the next connector.
    if (applied.attempt.status === 'failed' && applied.payment.status === 'pending') continue;
    const p = applied.payment;
    if (p.status === 'failed') throw declinedError(p);
    return p;
  }
}

/** Opens an authorization attempt of a pending payment on `connector`, in the caller's transaction. */
export function insertAuthorizeAttempt(tx: Tx, deps: PaymentDeps, p: PaymentRow, connector: string): Promise<AttemptRow> {
  return insertAttempt(tx, {
    claimSeconds: deps.claimSeconds,
    paymentId: p.id,
    merchantId: p.merchant_id,
    operation: 'authorize',
    connector,
    amount: p.amount,
    request: { amount: p.amount, currency: p.currency, payment_method: p.payment_method, capture: p.capture_method === 'automatic' },
  });
}

function declinedError(p: PaymentRow): AppError {
  return new AppError('PAYMENT_DECLINED', p.failure_message ?? 'The payment was declined.', {
    details: { payment_id: p.id, decline_code: p.failure_code },
  });
}
