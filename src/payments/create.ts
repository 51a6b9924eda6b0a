/**
 * POST /v1/payments: layers 2–5 of the validation pipeline, the double-charge guard and the insert,
 * in one transaction; then, with confirm, the authorization.
 */
import { AppError } from '../domain/errors.js';
import { businessLayer, complianceLayer, entityLayer } from '../domain/validation.js';
import type { PaymentMethod } from '../domain/merchant.js';
import { withTx, type Tx } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { authorizePayment, firstConnector, insertAuthorizeAttempt } from './authorize.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { merchantActor } from './context.js';
import { getPayment, insertEvent } from './store.js';
import { releaseVelocity, reserveVelocity } from './velocity.js';
import { metrics } from '../observability/metrics.js';
import type { AttemptRow, PaymentRow } from './types.js';

export interface CreatePaymentInput {
  amount: number;
  currency: string;
  payment_method: PaymentMethod;
  payment_method_token: string;
  reference_id: string;
  customer: { email: string; phone: string; name?: string | undefined };
  capture_method?: 'automatic' | 'manual' | undefined;
  confirm?: boolean | undefined;
  description?: string | undefined;
  metadata?: Record<string, string> | undefined;
}

export interface CreatePaymentResult {
  payment: PaymentRow;
  created: boolean;
}

/** The live payment holding a reference, or null when it is no longer live. */
async function livePayment(tx: Tx, merchantId: string, referenceId: string): Promise<{ id: string; status: string } | null> {
  const r = await tx.query<{ id: string; status: string }>(
    `SELECT id, status FROM payments WHERE merchant_id = $1 AND reference_id = $2 AND status NOT IN ('failed','canceled') LIMIT 1`,
    [merchantId, referenceId],
  );
  return r.rows[0] ?? null;
}

export async function createPayment(
  deps: PaymentDeps,
  ctx: OperationContext,
  input: CreatePaymentInput,
  recovery: Recovery | null,
): Promise<CreatePaymentResult> {
  const m = ctx.merchant;
  if (recovery?.resourceId) {
    // A retry of a request that died after the insert: resume at the authorization.
    const existing = await getPayment(deps.db, m.id, recovery.resourceId);
    if (!existing) throw new AppError('RESOURCE_NOT_FOUND', 'The payment of this idempotency key no longer exists.');
    const payment = input.confirm === false ? existing : await authorizePayment(deps, ctx, existing.id, { resume: true });
    return { payment, created: true };
  }

  const draft = { amount: input.amount, currency: input.currency, payment_method: input.payment_method };
  const refused = entityLayer(m) ?? businessLayer(m, draft);
  if (refused) throw refused;
  const flags = complianceLayer(m, draft);

  // Risk: a place in the merchant's velocity window, taken outside the create transaction so
  // that one merchant's payments are not serialised behind each other's commits.
  const reserved = await reserveVelocity(deps.db, m);
  if (reserved instanceof AppError) throw reserved;

  // With confirm, the first attempt commits with the payment: one transaction fewer per payment.
  // Nothing is sent before it commits, and a crash after it leaves an open attempt that the retry
  // of this request settles, exactly as after the authorization's own transaction.
  const connector = input.confirm === false ? null : firstConnector(deps, ctx);
  let payment: PaymentRow;
  let attempt: AttemptRow | null = null;
  try {
    payment = await withTx(deps.db, async (tx) => {
      const metadata: Record<string, unknown> = { ...(input.metadata ?? {}), compliance_flags: flags };
      // event_sequence starts at 1: the payment.created event below is its first.
      const values = [
        newId('pay'),
        m.id,
        input.amount,
        input.currency,
        input.payment_method,
        input.payment_method_token,
        input.reference_id,
        JSON.stringify(input.customer),
        input.capture_method ?? 'automatic',
        input.description ?? null,
        JSON.stringify(metadata),
      ];
      // The double-charge guard is the partial unique index itself: a concurrent insert for the
      // same reference waits for the other to commit or roll back, then conflicts or goes ahead.
      // No lock and no separate check: two round trips fewer per payment.
      let p: PaymentRow | undefined;
      for (let tries = 0; !p; tries++) {
        const inserted = await tx.query<PaymentRow>(
          `INSERT INTO payments (id, merchant_id, status, amount, currency, payment_method, payment_method_token,
                                 reference_id, customer, capture_method, description, metadata, event_sequence)
           VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, 1)
           ON CONFLICT (merchant_id, reference_id) WHERE status NOT IN ('failed','canceled') DO NOTHING
           RETURNING *`,
          values,
        );
        p = inserted.rows[0];
        if (p) break;
        const live = await livePayment(tx, m.id, input.reference_id);
        // Gone between the conflict and the look (it failed or was canceled): insert again.
        if (!live && tries < 3) continue;
        throw new AppError('PAYMENT_REFERENCE_IN_USE', `Payment ${live?.id ?? '(unknown)'} already exists for reference '${input.reference_id}'.`, {
          details: { payment_id: live?.id ?? null, status: live?.status ?? null },
        });
      }
      const by = merchantActor(ctx);
      await insertEvent(tx, p, 'payment.created', null, ctx.requestId, undefined, { cause: 'created', actor: by.actor });
      if (connector) attempt = await insertAuthorizeAttempt(tx, deps, p, connector);
      await recovery?.record(tx, p.id);
      metrics.paymentTransitions.inc({ from: 'none', to: 'pending' });
      return p;
    });
  } catch (err) {
    await releaseVelocity(deps.db, reserved).catch(() => undefined);
    throw err;
  }

  if (input.confirm === false) return { payment, created: true };
  const started = attempt ? { attempt, payment } : undefined;
  return { payment: await authorizePayment(deps, ctx, payment.id, { resume: false, ...(started ? { started } : {}) }), created: true };
}
