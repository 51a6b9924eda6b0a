/**
 * Shared checks for the race and crash tests: what the database and the mock provider's own ledger
 * say about one payment. Every figure comes from SQL, so a test never trusts the API's word alone.
 */
import type { Queryable } from '../../src/db/pool.js';
import { ADMIN_KEY, call, waitFor } from '../support/harness.js';

export interface LedgerRow {
  operation: 'authorize' | 'capture' | 'void' | 'refund';
  amount: number;
  idempotency_key: string;
}

/** The provider ledger as the admin API reports it. */
export async function apiLedger(h: { url: string }, paymentId: string): Promise<LedgerRow[]> {
  const res = await call<{ data: LedgerRow[] }>(h, 'GET', `/v1/admin/connectors/mock/ledger?payment_id=${encodeURIComponent(paymentId)}`, {
    key: ADMIN_KEY,
  });
  if (res.status !== 200) throw new Error(`ledger read failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data;
}

/** The provider ledger straight from its table. */
export async function dbLedger(db: Queryable, paymentId: string): Promise<LedgerRow[]> {
  const r = await db.query<LedgerRow>(
    'SELECT operation, amount::bigint AS amount, idempotency_key FROM mock_provider_ledger WHERE payment_id = $1 ORDER BY id',
    [paymentId],
  );
  return r.rows;
}

export function ofOperation(rows: LedgerRow[], operation: LedgerRow['operation']): LedgerRow[] {
  return rows.filter((r) => r.operation === operation);
}

export function total(rows: { amount: number }[]): number {
  return rows.reduce((s, r) => s + Number(r.amount), 0);
}

export interface PaymentState {
  id: string;
  status: string;
  amount: number;
  amount_captured: number;
  amount_refunded: number;
  amount_capturable: number;
}

export async function paymentsForReference(db: Queryable, merchantId: string, referenceId: string): Promise<PaymentState[]> {
  const r = await db.query<PaymentState>(
    `SELECT id, status, amount, amount_captured, amount_refunded, amount_capturable
       FROM payments WHERE merchant_id = $1 AND reference_id = $2 ORDER BY id`,
    [merchantId, referenceId],
  );
  return r.rows;
}

export async function paymentState(db: Queryable, id: string): Promise<PaymentState> {
  const r = await db.query<PaymentState>(
    'SELECT id, status, amount, amount_captured, amount_refunded, amount_capturable FROM payments WHERE id = $1',
    [id],
  );
  if (!r.rows[0]) throw new Error(`no payment ${id}`);
  return r.rows[0];
}

export interface AttemptState {
  id: string;
  operation: string;
  status: string;
  amount: number | null;
  refund_id: string | null;
}

export async function attemptsOf(db: Queryable, paymentId: string): Promise<AttemptState[]> {
  const r = await db.query<AttemptState>(
    'SELECT id, operation, status, amount, refund_id FROM payment_attempts WHERE payment_id = $1 ORDER BY id',
    [paymentId],
  );
  return r.rows;
}

export interface RefundState {
  id: string;
  amount: number;
  status: string;
}

export async function refundsOf(db: Queryable, paymentId: string): Promise<RefundState[]> {
  const r = await db.query<RefundState>('SELECT id, amount, status FROM refunds WHERE payment_id = $1 ORDER BY id', [paymentId]);
  return r.rows;
}

/** Error code of an API error body, or undefined. */
export function errorCode(body: unknown): string | undefined {
  const e = (body as { error?: { code?: unknown } } | null)?.error;
  return typeof e?.code === 'string' ? e.code : undefined;
}

/** Counts of each "status code" (e.g. `409 IDEMPOTENCY_KEY_IN_USE`) in a set of responses, for readable failures. */
export function tally(responses: { status: number; body: unknown }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of responses) {
    const label = `${r.status}${errorCode(r.body) ? ` ${errorCode(r.body)}` : ''}`;
    out[label] = (out[label] ?? 0) + 1;
  }
  return out;
}

let refSeq = 0;

/**
 * A reference_id with no long digit run. (The harness's paymentBody puts Date.now() — 13 digits —
 * into its reference, and one timestamp in ten is Luhn-valid, which the card-number guard rightly
 * refuses with 400 SCHEMA_SENSITIVE_DATA; the race tests must not flake on that.)
 */
export function reference(tag: string): string {
  refSeq += 1;
  // Underscores (not spaces or dashes) between the parts: no digit run can span two of them.
  return `${tag}_${process.pid.toString(36)}_${Date.now().toString(36)}_${refSeq.toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Waits until no live request holds the idempotency key (finished, released, or its lease lapsed). */
export async function keyReleased(db: Queryable, merchantId: string, key: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () => {
      const r = await db.query<{ held: boolean }>(
        `SELECT state = 'in_progress' AND locked_until > now() AS held FROM idempotency_keys WHERE merchant_id = $1 AND key = $2`,
        [merchantId, key],
      );
      return r.rows[0]?.held ? undefined : true;
    },
    timeoutMs,
    'the idempotency key to be released',
  );
}
