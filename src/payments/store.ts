/**
 * The payment store: every SQL statement the payment use cases run. Transitions write the payment,
 * the audit row and the outbox event in the caller's transaction, so they commit or vanish together.
 */
import { AppError } from '../domain/errors.js';
import { canTransition, type PaymentStatus } from '../domain/state-machine.js';
import type { Queryable, Tx } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { metrics } from '../observability/metrics.js';
import { currentTraceparent } from '../observability/tracing.js';
import { paymentToApi, refundToApi, type Actor, type AttemptRow, type PaymentRow, type RefundRow } from './types.js';

export async function getPayment(q: Queryable, merchantId: string, id: string): Promise<PaymentRow | null> {
  const r = await q.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 AND merchant_id = $2', [id, merchantId]);
  return r.rows[0] ?? null;
}

/** Row-locks the payment for the rest of the transaction; 404 for unknown or foreign ids. */
export async function lockPayment(tx: Tx, merchantId: string, id: string): Promise<PaymentRow> {
  const r = await tx.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 AND merchant_id = $2 FOR UPDATE', [id, merchantId]);
  const p = r.rows[0];
  if (!p) throw new AppError('RESOURCE_NOT_FOUND', `No such payment: '${id}'.`);
  return p;
}

export type PaymentPatch = Partial<
  Pick<
    PaymentRow,
    | 'amount_capturable'
    | 'amount_captured'
    | 'amount_refunded'
    | 'connector'
    | 'provider_reference'
    | 'failure_code'
    | 'failure_message'
    | 'reconciliation_status'
    | 'metadata'
  >
>;

const PATCHABLE = [
  'amount_capturable',
  'amount_captured',
  'amount_refunded',
  'connector',
  'provider_reference',
  'failure_code',
  'failure_message',
  'reconciliation_status',
  'metadata',
] as const;

/** Updates non-status fields with a version bump (no event, no history). */
export async function patchPayment(tx: Tx, p: PaymentRow, patch: PaymentPatch): Promise<PaymentRow> {
  const sets: string[] = [];
  const values: unknown[] = [p.id];
  for (const key of PATCHABLE) {
    if (patch[key] === undefined) continue;
    values.push(key === 'metadata' ? JSON.stringify(patch[key]) : patch[key]);
    sets.push(`${key} = $${values.length}`);
  }
  const r = await tx.query<PaymentRow>(
    `UPDATE payments SET ${[...sets, 'version = version + 1', 'updated_at = now()'].join(', ')} WHERE id = $1 RETURNING *`,
    values,
  );
  return r.rows[0]!;
}

export interface TransitionInput {
  to: PaymentStatus;
  cause: string;
  by: Actor;
  patch?: PaymentPatch;
}

/**
 * Moves a (locked) payment to a new status: payment row, history row and outbox event in the
 * caller's transaction. A transition the state machine forbids is refused, never forced.
 */
export async function transition(tx: Tx, p: PaymentRow, input: TransitionInput): Promise<PaymentRow> {
  if (!canTransition(p.status, input.to)) {
    throw new AppError('PAYMENT_INVALID_STATE', `A payment in status '${p.status}' cannot become '${input.to}'.`, {
      details: { payment_id: p.id, status: p.status },
    });
  }
  const patch = input.patch ?? {};
  const sets = ['status = $2', 'version = version + 1', 'updated_at = now()'];
  const values: unknown[] = [p.id, input.to];
  for (const key of PATCHABLE) {
    if (patch[key] === undefined) continue;
    values.push(key === 'metadata' ? JSON.stringify(patch[key]) : patch[key]);
    sets.push(`${key} = $${values.length}`);
  }
  values.push(p.version);
  const r = await tx.query<PaymentRow>(
    `UPDATE payments SET ${sets.join(', ')} WHERE id = $1 AND version = $${values.length} RETURNING *`,
    values,
  );
  const updated = r.rows[0];
  // The row is locked by the caller, so a version mismatch means a programming error, not a race.
  if (!updated) throw new Error(`payment ${p.id} changed under its row lock`);
  await tx.query(
    `INSERT INTO payment_status_history (payment_id, from_status, to_status, cause, actor, request_id)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [p.id, p.status, input.to, input.cause, input.by.actor, input.by.requestId],
  );
  metrics.paymentTransitions.inc({ from: p.status, to: input.to });
  return emitPaymentEvent(tx, updated, `payment.${input.to}`, p.status, input.by.requestId);
}

/** Writes an outbox event for the payment with the next per-payment sequence number. */
export async function emitPaymentEvent(
  tx: Tx,
  p: PaymentRow,
  type: string,
  previousStatus: string | null,
  correlationId: string | null,
  object?: Record<string, unknown>,
): Promise<PaymentRow> {
  const r = await tx.query<PaymentRow>(
    'UPDATE payments SET event_sequence = event_sequence + 1 WHERE id = $1 RETURNING *',
    [p.id],
  );
  const updated = r.rows[0]!;
  await tx.query(
    `INSERT INTO events (id, merchant_id, payment_id, type, sequence, previous_status, correlation_id, data, trace_context)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      newId('evt'),
      p.merchant_id,
      p.id,
      type,
      updated.event_sequence,
      previousStatus,
      correlationId,
      JSON.stringify({ object: object ?? paymentToApi(updated) }),
      currentTraceparent(),
    ],
  );
  return updated;
}

export async function emitRefundEvent(tx: Tx, p: PaymentRow, refund: RefundRow, type: string, correlationId: string | null): Promise<PaymentRow> {
  return emitPaymentEvent(tx, p, type, p.status, correlationId, refundToApi(refund));
}

export interface NewAttempt {
  paymentId: string;
  merchantId: string;
  operation: AttemptRow['operation'];
  connector: string;
  amount: number | null;
  refundId?: string | null;
  request: unknown;
  /** The sending request's claim on the attempt (see PaymentDeps.claimSeconds). */
  claimSeconds: number;
}

export async function insertAttempt(tx: Tx, a: NewAttempt): Promise<AttemptRow> {
  const r = await tx.query<AttemptRow>(
    `INSERT INTO payment_attempts (id, payment_id, merchant_id, refund_id, operation, connector, status, amount, request, claimed_until)
     VALUES ($1, $2, $3, $4, $5, $6, 'started', $7, $8, now() + make_interval(secs => $9::float8)) RETURNING *`,
    [newId('att'), a.paymentId, a.merchantId, a.refundId ?? null, a.operation, a.connector, a.amount, JSON.stringify(a.request), a.claimSeconds],
  );
  return r.rows[0]!;
}

export interface AttemptCompletion {
  status: 'succeeded' | 'failed' | 'unknown';
  providerReference?: string | null;
  providerStatus?: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
  response?: unknown;
}

/** Completes an attempt that is still open; returns null when someone else completed it first. */
export async function completeAttempt(tx: Tx, attemptId: string, c: AttemptCompletion): Promise<AttemptRow | null> {
  const r = await tx.query<AttemptRow>(
    `UPDATE payment_attempts
        SET status = $2, provider_reference = COALESCE($3, provider_reference), provider_status = $4,
            error_code = $5, error_message = $6, response = $7,
            completed_at = CASE WHEN $2 = 'unknown' THEN NULL ELSE now() END
      WHERE id = $1 AND status IN ('started','unknown')
      RETURNING *`,
    [attemptId, c.status, c.providerReference ?? null, c.providerStatus ?? null, c.errorCode ?? null, c.errorMessage ?? null, JSON.stringify(c.response ?? null)],
  );
  return r.rows[0] ?? null;
}

export async function openAttempts(q: Queryable, paymentId: string): Promise<AttemptRow[]> {
  const r = await q.query<AttemptRow>(
    `SELECT * FROM payment_attempts WHERE payment_id = $1 AND status IN ('started','unknown') ORDER BY id`,
    [paymentId],
  );
  return r.rows;
}

/**
 * Claims an open attempt for `seconds` before sending it again: while the claim holds, the
 * janitor will not conclude "the provider has no record". Re-sending needs no exclusivity — the
 * provider idempotency key makes a second send of the same attempt harmless — so it always wins.
 */
export async function claimAttempt(q: Queryable, attemptId: string, seconds: number): Promise<void> {
  await q.query(
    `UPDATE payment_attempts SET claimed_until = GREATEST(COALESCE(claimed_until, now()), now() + make_interval(secs => $2::float8))
      WHERE id = $1 AND status IN ('started','unknown')`,
    [attemptId, seconds],
  );
}

export async function getAttempt(q: Queryable, id: string): Promise<AttemptRow | null> {
  const r = await q.query<AttemptRow>('SELECT * FROM payment_attempts WHERE id = $1', [id]);
  return r.rows[0] ?? null;
}
