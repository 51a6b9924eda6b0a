/**
 * POST /v1/payments: layers 2–5 of the validation pipeline, the double-charge guard and the insert,
 * in one transaction; then, with confirm, the authorization.
 */
import { AppError } from '../domain/errors.js';
import { businessLayer, complianceLayer, entityLayer, riskLayer } from '../domain/validation.js';
import type { PaymentMethod } from '../domain/merchant.js';
import { withTx, type Tx } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { authorizePayment } from './authorize.js';
import type { OperationContext, PaymentDeps, Recovery } from './context.js';
import { merchantActor } from './context.js';
import { emitPaymentEvent, getPayment } from './store.js';
import { metrics } from '../observability/metrics.js';
import type { PaymentRow } from './types.js';

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

async function lockKey(tx: Tx, key: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key]);
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

  const payment = await withTx(deps.db, async (tx) => {
    // Risk: serialise the merchant's creations so the sliding-window count is exact.
    await lockKey(tx, `velocity:${m.id}`);
    // Counts per merchant-second (the window is exact to the second); the bucket of this payment
    // is incremented in this transaction, so a payment that is refused or rolled back never counts.
    const v = await tx.query<{ n: number; oldest_age: number | null }>(
      `SELECT COALESCE(sum(n), 0)::int AS n, (extract(epoch FROM now())::bigint - min(second))::float8 AS oldest_age
         FROM velocity_buckets WHERE merchant_id = $1 AND second > extract(epoch FROM now())::bigint - $2`,
      [m.id, m.limits.velocity.window_seconds],
    );
    const risk = riskLayer(m, v.rows[0]!.n, v.rows[0]!.oldest_age ?? 0);
    if (risk) throw risk;
    await tx.query(
      `INSERT INTO velocity_buckets (merchant_id, second, n) VALUES ($1, extract(epoch FROM now())::bigint, 1)
       ON CONFLICT (merchant_id, second) DO UPDATE SET n = velocity_buckets.n + 1`,
      [m.id],
    );

    // The double-charge guard; the partial unique index backs it if this check were ever bypassed.
    await lockKey(tx, `reference:${m.id}:${input.reference_id}`);
    const live = await tx.query<{ id: string; status: string }>(
      `SELECT id, status FROM payments WHERE merchant_id = $1 AND reference_id = $2 AND status NOT IN ('failed','canceled') LIMIT 1`,
      [m.id, input.reference_id],
    );
    if (live.rows[0]) {
      throw new AppError('PAYMENT_REFERENCE_IN_USE', `Payment ${live.rows[0].id} already exists for reference '${input.reference_id}'.`, {
        details: { payment_id: live.rows[0].id, status: live.rows[0].status },
      });
    }

    const metadata: Record<string, unknown> = { ...(input.metadata ?? {}), compliance_flags: flags };
    const inserted = await tx.query<PaymentRow>(
      `INSERT INTO payments (id, merchant_id, status, amount, currency, payment_method, payment_method_token,
                             reference_id, customer, capture_method, description, metadata)
       VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
      [
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
      ],
    );
    const p = inserted.rows[0]!;
    const by = merchantActor(ctx);
    await tx.query(
      `INSERT INTO payment_status_history (payment_id, from_status, to_status, cause, actor, request_id)
       VALUES ($1, NULL, 'pending', 'created', $2, $3)`,
      [p.id, by.actor, by.requestId],
    );
    const withEvent = await emitPaymentEvent(tx, p, 'payment.created', null, ctx.requestId);
    await recovery?.record(tx, p.id);
    metrics.paymentTransitions.inc({ from: 'none', to: 'pending' });
    return withEvent;
  });

  if (input.confirm === false) return { payment, created: true };
  return { payment: await authorizePayment(deps, ctx, payment.id, { resume: false }), created: true };
}
