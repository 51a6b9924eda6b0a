/**
 * The reconciliation janitor (SPEC §13): attempts whose outcome is still open — left `started` by
 * a process that died, or `unknown` after a timeout — are looked up at their provider and settled
 * through the state machine. First look after a threshold (longer for asynchronous payments), then
 * backing off. Attempts are claimed with a short transaction (SKIP LOCKED) and the provider is asked
 * with no transaction open, so any number of workers can sweep at once.
 */
import { withTx, type Db } from '../db/pool.js';
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
  /** How long the janitor holds an attempt it is settling (see PaymentDeps.claimSeconds). */
  claimSeconds: number;
}

export interface SweepResult {
  checked: number;
  settled: number;
  stillOpen: number;
}

const ACTOR: Actor = { actor: 'worker:reconciliation', requestId: null };

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

/** The exact claim (as text, to the microsecond) tells our claim from a later one. */
type ClaimedAttempt = AttemptRow & { claim_token: string };

/**
 * Claims the next due attempt — one at a time, so a janitor that dies holds a single attempt for
 * one claim period, not a whole batch.
 */
async function claimNext(deps: PaymentDeps, settings: ReconcileSettings, seen: string[]): Promise<ClaimedAttempt | null> {
  const r = await deps.db.query<ClaimedAttempt>(
    `UPDATE payment_attempts SET claimed_until = now() + make_interval(secs => $3::float8)
      WHERE id = (
        SELECT id FROM payment_attempts
         WHERE status IN ('started','unknown')
           AND (claimed_until IS NULL OR claimed_until <= now())
           AND id <> ALL($4::text[])
           AND COALESCE(next_reconcile_at,
                 created_at + make_interval(secs => CASE WHEN provider_status = 'pending' THEN $2::float8 ELSE $1::float8 END)) <= now()
         ORDER BY COALESCE(next_reconcile_at, created_at)
         LIMIT 1
         FOR UPDATE SKIP LOCKED)
      RETURNING *, claimed_until::text AS claim_token`,
    [settings.thresholdSeconds, settings.asyncThresholdSeconds, settings.claimSeconds, seen],
  );
  return r.rows[0] ?? null;
}

async function settle(deps: PaymentDeps, settings: ReconcileSettings, attempt: ClaimedAttempt): Promise<boolean> {
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
        `UPDATE payment_attempts SET reconcile_attempts = reconcile_attempts + 1, claimed_until = NULL,
                next_reconcile_at = now() + make_interval(secs => $2) WHERE id = $1 AND status IN ('started','unknown')`,
        [attempt.id, backoffSeconds(settings, attempt.reconcile_attempts + 1)],
      );
      const p = (await tx.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 FOR UPDATE', [attempt.payment_id])).rows[0]!;
      if (p.reconciliation_status === 'synced') await patchPayment(tx, p, { reconciliation_status: 'pending_reconciliation' });
    });
    return false;
  }
  const notFound = status.outcome === 'not_found';
  const outcome = notFound ? notFoundOutcome(payment) : status;
  return withTx(deps.db, async (tx) => {
    if (notFound) {
      // "No record" is only a verdict if nobody re-sent the attempt meanwhile: a resumed request
      // re-claims it before sending, and then its answer — not ours — settles the attempt.
      const r = await tx.query<{ ours: boolean }>(
        'SELECT claimed_until::text = $2 AS ours FROM payment_attempts WHERE id = $1 FOR UPDATE',
        [attempt.id, attempt.claim_token],
      );
      if (!r.rows[0]?.ours) return false;
    }
    const applied = await applyOutcome(tx, attempt.id, outcome, ACTOR);
    if (applied.changed && applied.payment.reconciliation_status === 'manual_review') metrics.reconciliation.inc({ outcome: 'manual_review' });
    if (applied.changed && applied.payment.reconciliation_status === 'pending_reconciliation') {
      await patchPayment(tx, applied.payment, { reconciliation_status: 'synced' });
    }
    return true;
  });
}

export async function reconcileDue(deps: PaymentDeps, settings: ReconcileSettings): Promise<SweepResult> {
  let checked = 0;
  let settled = 0;
  const seen: string[] = [];
  for (; checked < settings.batchSize; checked++) {
    const attempt = await claimNext(deps, settings, seen);
    if (!attempt) break;
    seen.push(attempt.id);
    const done = await settle(deps, settings, attempt);
    metrics.reconciliation.inc({ outcome: done ? 'settled' : 'still_open' });
    if (done) settled += 1;
  }
  return { checked, settled, stillOpen: checked - settled };
}

export async function listForReconciliation(db: Db, status: string, limit: number, startingAfter?: string) {
  const values: unknown[] = [status];
  let cursor = '';
  if (startingAfter) {
    values.push(startingAfter);
    cursor = `AND id < $${values.length}`;
  }
  values.push(limit + 1);
  const r = await db.query<PaymentRow>(
    `SELECT * FROM payments WHERE reconciliation_status = $1 ${cursor} ORDER BY id DESC LIMIT $${values.length}`,
    values,
  );
  return { object: 'list' as const, data: r.rows.slice(0, limit).map((p) => ({ ...paymentToApi(p), merchant_id: p.merchant_id })), has_more: r.rows.length > limit };
}
