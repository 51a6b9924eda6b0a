/**
 * The payment store: every SQL statement the payment use cases run. Transitions write the payment,
 * the audit row and the outbox event in the caller's transaction, so they commit or vanish together.
 */
import { AppError } from '../domain/errors.js';
import { canTransition, type PaymentStatus } from '../domain/state-machine.js';
import { markEventsWritten, type Queryable, type Tx } from '../db/pool.js';
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
  return transitionPath(tx, p, [input.to], input);
}

/**
 * Walks a (locked) payment through `path`, one allowed transition after another, in two
 * statements whatever the path's length: one UPDATE to the last status (the patch applies there),
 * and one statement for every step's history row and event. An automatic capture (pending →
 * processing → captured) costs two round trips instead of four. Each step's event carries the
 * payment as it stood after that step, exactly as separate transitions would have left it.
 */
export async function transitionPath(tx: Tx, p: PaymentRow, path: PaymentStatus[], input: Omit<TransitionInput, 'to'>): Promise<PaymentRow> {
  let from = p.status;
  for (const to of path) {
    if (!canTransition(from, to)) {
      throw new AppError('PAYMENT_INVALID_STATE', `A payment in status '${from}' cannot become '${to}'.`, {
        details: { payment_id: p.id, status: from },
      });
    }
    from = to;
  }
  if (path.length === 0) return p;
  const steps = path.length;
  const patch = input.patch ?? {};
  // The events' sequence numbers are taken in the same UPDATE: one round trip fewer per transition.
  const sets = ['status = $2', `version = version + ${steps}`, `event_sequence = event_sequence + ${steps}`, 'updated_at = now()'];
  const values: unknown[] = [p.id, path[steps - 1]];
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
  // The rows between: the payment before, at each step's status; updated_at is now(), the
  // transaction's time, the same for every step.
  const rows = path.map((to, i): PaymentRow =>
    i === steps - 1 ? updated : { ...p, status: to, version: p.version + i + 1, event_sequence: p.event_sequence + i + 1, updated_at: updated.updated_at },
  );
  await insertEvents(
    tx,
    input.by.requestId,
    rows.map((row, i) => ({ p: row, type: `payment.${row.status}`, previousStatus: i === 0 ? p.status : rows[i - 1]!.status, history: { cause: input.cause, actor: input.by.actor } })),
  );
  for (let i = 0; i < steps; i++) metrics.paymentTransitions.inc({ from: i === 0 ? p.status : path[i - 1]!, to: path[i]! });
  return updated;
}

/** The audit row of a status change, written by the same statement as its event. */
export interface HistoryEntry {
  cause: string;
  actor: string;
}

/**
 * Inserts the outbox event of `p`, whose `event_sequence` already holds the event's number, and
 * with `history` the status-history row of the change (from `previousStatus` to `p.status`).
 */
export async function insertEvent(
  tx: Tx,
  p: PaymentRow,
  type: string,
  previousStatus: string | null,
  correlationId: string | null,
  object?: Record<string, unknown>,
  history?: HistoryEntry,
): Promise<void> {
  await insertEvents(tx, correlationId, [{ p, type, previousStatus, ...(object ? { object } : {}), ...(history ? { history } : {}) }]);
}

export interface NewEvent {
  /** The payment as the event shows it; its event_sequence is the event's number. */
  p: PaymentRow;
  type: string;
  previousStatus: string | null;
  object?: Record<string, unknown>;
  history?: HistoryEntry;
}

/** Events (and their history rows) in one statement, in the order given. */
export async function insertEvents(tx: Tx, correlationId: string | null, events: NewEvent[]): Promise<void> {
  const values: unknown[] = [correlationId, currentTraceparent()];
  const eventRows: string[] = [];
  const historyRows: string[] = [];
  const $ = (v: unknown): string => `$${values.push(v)}`;
  for (const e of events) {
    const paymentId = $(e.p.id);
    const previous = $(e.previousStatus);
    eventRows.push(
      `(${$(newId('evt'))}, ${$(e.p.merchant_id)}, ${paymentId}, ${$(e.type)}, ${$(e.p.event_sequence)}, ${previous}, $1, ${$(JSON.stringify({ object: e.object ?? paymentToApi(e.p) }))}, $2)`,
    );
    if (e.history) historyRows.push(`(${paymentId}, ${previous}, ${$(e.p.status)}, ${$(e.history.cause)}, ${$(e.history.actor)}, $1)`);
  }
  const event = `INSERT INTO events (id, merchant_id, payment_id, type, sequence, previous_status, correlation_id, data, trace_context)
     VALUES ${eventRows.join(', ')}`;
  await tx.query(
    historyRows.length === 0
      ? event
      : `WITH history AS (
           INSERT INTO payment_status_history (payment_id, from_status, to_status, cause, actor, request_id)
           VALUES ${historyRows.join(', ')}
         ) ${event}`,
    values,
  );
  markEventsWritten(tx);
}

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
  await insertEvent(tx, updated, type, previousStatus, correlationId, object);
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
