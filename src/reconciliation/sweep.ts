/**
 * The reconciliation janitor (SPEC §13): attempts whose outcome is still open — left `started` by
 * a process that died, or `unknown` after a timeout — are looked up at their provider and settled
 * through the state machine. First look after a threshold (longer for asynchronous payments), then
 * backing off. Attempts are claimed with a short transaction (SKIP LOCKED) and the provider is asked
 * with no transaction open, so any number of workers can sweep at once.
 */
import { withTx } from '../db/pool.js';
import type { ConnectorOutcome, SyncOutcome } from '../connectors/port.js';
import { applyOutcome } from '../payments/apply-outcome.js';
import type { PaymentDeps } from '../payments/context.js';
import { paymentToApi, type Actor, type AttemptRow, type PaymentRow } from '../payments/types.js';
import { patchPayment } from '../payments/store.js';
import { metrics } from '../observability/metrics.js';

export interface ReconcileSettings {
  thresholdSeconds: number;
  asyncThresholdSeconds: number;
  maxBackoffSeconds: number;
  batchSize: number;
}

export interface SweepResult {
  checked: number;
  settled: number;
  stillOpen: number;
}

const ACTOR: Actor = { actor: 'worker:reconciliation', requestId: null };
const CLAIM_SECONDS = 300;

export function backoffSeconds(settings: ReconcileSettings, reconcileAttempts: number): number {
  return Math.min(settings.maxBackoffSeconds, settings.thresholdSeconds * 2 ** reconcileAttempts);
}

/** What to record when the provider has no trace of an attempt that is old enough to have reached it. */
export function notFoundOutcome(payment: PaymentRow): ConnectorOutcome {
  // A pending payment was never charged anywhere: it stays pending and may be confirmed again.
  if (payment.status === 'pending') {
    return { outcome: 'error', charged: false, code: 'provider_no_record', message: 'The provider has no record of this attempt; nothing was charged.' };
  }
  return { outcome: 'declined', code: 'provider_no_record', message: 'The provider has no record of this payment after the reconciliation threshold; nothing was charged.' };
}

async function claimDue(deps: PaymentDeps, settings: ReconcileSettings): Promise<AttemptRow[]> {
  const r = await deps.db.query<AttemptRow>(
    `UPDATE payment_attempts SET next_reconcile_at = now() + make_interval(secs => $4)
      WHERE id IN (
        SELECT id FROM payment_attempts
         WHERE status IN ('started','unknown')
           AND COALESCE(next_reconcile_at,
                 created_at + make_interval(secs => CASE WHEN provider_status = 'pending' THEN $2::float8 ELSE $1::float8 END)) <= now()
         ORDER BY COALESCE(next_reconcile_at, created_at)
         LIMIT $3
         FOR UPDATE SKIP LOCKED)
      RETURNING *`,
    [settings.thresholdSeconds, settings.asyncThresholdSeconds, settings.batchSize, CLAIM_SECONDS],
  );
  return r.rows;
}

async function settle(deps: PaymentDeps, settings: ReconcileSettings, attempt: AttemptRow): Promise<boolean> {
  const payment = (await deps.db.query<PaymentRow>('SELECT * FROM payments WHERE id = $1', [attempt.payment_id])).rows[0]!;
  const connector = deps.connectors.get(attempt.connector);
  const status: SyncOutcome = connector
    ? await connector.sync({
        attemptId: attempt.id,
        paymentId: attempt.payment_id,
        operation: attempt.operation,
        providerReference: attempt.provider_reference ?? payment.provider_reference,
      })
    : { outcome: 'unknown', reason: 'provider_error', message: `connector '${attempt.connector}' is not configured` };

  if (status.outcome === 'unknown' || status.outcome === 'pending') {
    await withTx(deps.db, async (tx) => {
      await tx.query(
        `UPDATE payment_attempts SET reconcile_attempts = reconcile_attempts + 1,
                next_reconcile_at = now() + make_interval(secs => $2) WHERE id = $1 AND status IN ('started','unknown')`,
        [attempt.id, backoffSeconds(settings, attempt.reconcile_attempts + 1)],
      );
      const p = (await tx.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 FOR UPDATE', [attempt.payment_id])).rows[0]!;
      if (p.reconciliation_status === 'synced') await patchPayment(tx, p, { reconciliation_status: 'pending_reconciliation' });
    });
    return false;
  }
  const outcome = status.outcome === 'not_found' ? notFoundOutcome(payment) : status;
  await withTx(deps.db, async (tx) => {
    const applied = await applyOutcome(tx, attempt.id, outcome, ACTOR);
    if (applied.changed && applied.payment.reconciliation_status === 'manual_review') metrics.reconciliation.inc({ outcome: 'manual_review' });
    if (applied.changed && applied.payment.reconciliation_status === 'pending_reconciliation') {
      await patchPayment(tx, applied.payment, { reconciliation_status: 'synced' });
    }
  });
  return true;
}

export async function reconcileDue(deps: PaymentDeps, settings: ReconcileSettings): Promise<SweepResult> {
  const due = await claimDue(deps, settings);
  let settled = 0;
  for (const attempt of due) {
    const done = await settle(deps, settings, attempt);
    metrics.reconciliation.inc({ outcome: done ? 'settled' : 'still_open' });
    if (done) settled += 1;
  }
  return { checked: due.length, settled, stillOpen: due.length - settled };
}

export async function listForReconciliation(deps: PaymentDeps, status: string, limit: number, startingAfter?: string) {
  const values: unknown[] = [status];
  let cursor = '';
  if (startingAfter) {
    values.push(startingAfter);
    cursor = `AND id < $${values.length}`;
  }
  values.push(limit + 1);
  const r = await deps.db.query<PaymentRow>(
    `SELECT * FROM payments WHERE reconciliation_status = $1 ${cursor} ORDER BY id DESC LIMIT $${values.length}`,
    values,
  );
  return { object: 'list' as const, data: r.rows.slice(0, limit).map((p) => ({ ...paymentToApi(p), merchant_id: p.merchant_id })), has_more: r.rows.length > limit };
}
