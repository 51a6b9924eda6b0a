/**
 * Applies what a connector said about one attempt to the attempt and its payment, in one
 * transaction. Used after a live call, after a sync (resume, reconciliation) and by provider
 * webhooks, so every path reaches the same state for the same provider fact.
 */
import { pathTo, type PaymentStatus } from '../domain/state-machine.js';
import type { Tx } from '../db/pool.js';
import type { ConnectorOutcome } from '../connectors/port.js';
import { completeAttempt, emitPaymentEvent, emitRefundEvent, getAttempt, patchPayment, transitionPath, type PaymentPatch } from './store.js';
import { paymentToApi, type Actor, type AttemptRow, type PaymentRow, type RefundRow } from './types.js';

/** Row-locks the payment an attempt belongs to. */
async function lockAttemptPayment(tx: Tx, attemptId: string): Promise<PaymentRow> {
  const r = await tx.query<PaymentRow>(
    'SELECT * FROM payments WHERE id = (SELECT payment_id FROM payment_attempts WHERE id = $1) FOR UPDATE',
    [attemptId],
  );
  return r.rows[0]!;
}

/** Walks the allowed path to `target`; a contradiction of a terminal state goes to manual review. */
export async function moveTo(tx: Tx, p: PaymentRow, target: PaymentStatus, cause: string, by: Actor, patch: PaymentPatch = {}): Promise<PaymentRow> {
  const path = pathTo(p.status, target);
  if (path === null) return flagForReview(tx, p, `provider reported '${target}' for a payment in status '${p.status}' (${cause})`, by);
  if (path.length === 0) return Object.keys(patch).length > 0 ? patchPayment(tx, p, patch) : p;
  return transitionPath(tx, p, path, { cause, by, patch });
}

/** Marks a failed attempt succeeded; null when the database refuses (another attempt already succeeded). */
async function reviveAttempt(tx: Tx, a: AttemptRow, outcome: Extract<ConnectorOutcome, { outcome: 'succeeded' }>): Promise<AttemptRow | null> {
  await tx.query('SAVEPOINT revive_attempt');
  try {
    const r = await tx.query<AttemptRow>(
      `UPDATE payment_attempts SET status = 'succeeded', provider_reference = $2, provider_status = $3,
              error_message = 'recorded as failed, then reported succeeded by the provider: ' || COALESCE(error_code, ''),
              error_code = NULL, response = $4, completed_at = now()
        WHERE id = $1 AND status = 'failed' RETURNING *`,
      [a.id, outcome.providerReference, outcome.providerStatus, JSON.stringify(outcome.raw ?? null)],
    );
    await tx.query('RELEASE SAVEPOINT revive_attempt');
    return r.rows[0] ?? null;
  } catch (err) {
    await tx.query('ROLLBACK TO SAVEPOINT revive_attempt');
    if ((err as { code?: string }).code === '23505') return null; // a second success: a human must look
    throw err;
  }
}

async function flagForReview(tx: Tx, p: PaymentRow, reason: string, by: Actor): Promise<PaymentRow> {
  if (p.reconciliation_status === 'manual_review') return p;
  const flagged = await patchPayment(tx, p, { reconciliation_status: 'manual_review' });
  return emitPaymentEvent(tx, flagged, 'payment.reconciliation_required', p.status, by.requestId, { ...paymentToApi(flagged), reconciliation_reason: reason });
}

export interface Applied {
  payment: PaymentRow;
  attempt: AttemptRow;
  /** False when the attempt had already been completed by someone else; nothing was changed. */
  changed: boolean;
}

export async function applyOutcome(tx: Tx, attemptId: string, outcome: ConnectorOutcome, by: Actor): Promise<Applied> {
  const payment = await lockAttemptPayment(tx, attemptId);
  const completion =
    outcome.outcome === 'succeeded'
      ? { status: 'succeeded' as const, providerReference: outcome.providerReference, providerStatus: outcome.providerStatus, response: outcome.raw }
      : outcome.outcome === 'pending'
        ? { status: 'unknown' as const, providerReference: outcome.providerReference, providerStatus: 'pending', response: outcome.raw }
        : outcome.outcome === 'declined'
          ? { status: 'failed' as const, providerReference: outcome.providerReference ?? null, errorCode: outcome.code, errorMessage: outcome.message, response: outcome.raw }
          : outcome.outcome === 'error'
            ? { status: 'failed' as const, errorCode: outcome.code, errorMessage: outcome.message, response: outcome.raw }
            : { status: 'unknown' as const, errorCode: outcome.reason, errorMessage: outcome.message };
  let attempt = await completeAttempt(tx, attemptId, completion);
  if (!attempt) {
    const settled = (await getAttempt(tx, attemptId))!;
    // The provider says it acted on an attempt we had already judged "not charged" (a sync that
    // found nothing yet, a refused connection that got through after all). Its fact wins: money
    // moved, so it must be recorded — never dropped, never followed by a charge elsewhere.
    if (outcome.outcome !== 'succeeded' || settled.status !== 'failed') return { payment, attempt: settled, changed: false };
    attempt = await reviveAttempt(tx, settled, outcome);
    if (!attempt) {
      const flagged = await flagForReview(tx, payment, `provider reports ${settled.operation} attempt ${settled.id} succeeded after it was recorded as failed`, by);
      return { payment: flagged, attempt: settled, changed: true };
    }
  }

  const cause = `${attempt.operation}:${outcome.outcome}`;
  let p = payment;
  switch (attempt.operation) {
    case 'authorize':
      p = await applyAuthorize(tx, p, attempt, outcome, cause, by);
      break;
    case 'capture':
      if (outcome.outcome === 'succeeded') {
        p = await moveTo(tx, p, 'captured', cause, by, {
          amount_captured: attempt.amount ?? p.amount_capturable,
          amount_capturable: 0,
        });
      }
      break;
    case 'void':
      if (outcome.outcome === 'succeeded') p = await moveTo(tx, p, 'canceled', cause, by, { amount_capturable: 0 });
      break;
    case 'refund':
      p = await applyRefund(tx, p, attempt, outcome, by);
      break;
  }
  return { payment: p, attempt, changed: true };
}

async function applyAuthorize(tx: Tx, p: PaymentRow, attempt: AttemptRow, outcome: ConnectorOutcome, cause: string, by: Actor): Promise<PaymentRow> {
  switch (outcome.outcome) {
    case 'succeeded': {
      const captured = outcome.providerStatus === 'captured';
      return moveTo(tx, p, captured ? 'captured' : 'authorized', cause, by, {
        connector: attempt.connector,
        provider_reference: outcome.providerReference,
        amount_capturable: captured ? 0 : p.amount,
        amount_captured: captured ? p.amount : 0,
      });
    }
    case 'pending':
      return moveTo(tx, p, 'processing', cause, by, { connector: attempt.connector, provider_reference: outcome.providerReference });
    case 'unknown':
      return moveTo(tx, p, 'processing', cause, by, { connector: attempt.connector });
    case 'declined':
      return moveTo(tx, p, 'failed', cause, by, {
        connector: attempt.connector,
        failure_code: outcome.code,
        failure_message: outcome.message,
      });
    case 'error':
      // Certainly not charged: the payment stays where it was, free to go to another connector.
      return p;
  }
}

async function applyRefund(tx: Tx, p: PaymentRow, attempt: AttemptRow, outcome: ConnectorOutcome, by: Actor): Promise<PaymentRow> {
  if (outcome.outcome === 'unknown' || outcome.outcome === 'pending') return p;
  const succeeded = outcome.outcome === 'succeeded';
  // A refund recorded as failed can still turn out succeeded (its attempt was revived above).
  const r = await tx.query<RefundRow>(
    `UPDATE refunds SET status = $2, failure_code = $3, failure_message = $4, provider_reference = $5, updated_at = now()
      WHERE id = $1 AND (status = 'pending' OR (status = 'failed' AND $2 = 'succeeded')) RETURNING *`,
    [
      attempt.refund_id,
      succeeded ? 'succeeded' : 'failed',
      succeeded ? null : outcome.code,
      succeeded ? null : outcome.message,
      succeeded ? outcome.providerReference : null,
    ],
  );
  const refund = r.rows[0];
  if (!refund) return p;
  let current = p;
  if (succeeded) {
    const refunded = p.amount_refunded + refund.amount;
    if (refunded > p.amount_captured) {
      // Only possible when a refund judged failed succeeded after its amount was refunded again.
      return flagForReview(tx, p, `provider refunds exceed the captured amount after refund ${refund.id} was revived`, by);
    }
    current =
      refunded >= p.amount_captured
        ? await moveTo(tx, p, 'refunded', `refund:${refund.id}`, by, { amount_refunded: refunded })
        : await patchPayment(tx, p, { amount_refunded: refunded });
  }
  return emitRefundEvent(tx, current, refund, succeeded ? 'refund.succeeded' : 'refund.failed', by.requestId);
}
