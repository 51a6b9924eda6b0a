import type { Queryable, Tx } from '../db/pool.js';

export type ChargeStatus = 'authorized' | 'captured' | 'pending' | 'failed' | 'voided';
export type ProviderMode = 'mock' | 'flaky';

export interface ChargeRow {
  id: string;
  payment_id: string;
  amount: number;
  currency: string;
  status: ChargeStatus;
  captured_amount: number;
  refunded_amount: number;
  token: string;
  capture_requested: boolean;
  idempotency_key: string;
  mode: ProviderMode;
  failure_code: string | null;
  created_at: Date;
  updated_at: Date;
}

/** The charge as the provider's API shows it. */
export interface ChargeView {
  id: string;
  object: 'charge';
  payment_id: string;
  amount: number;
  currency: string;
  status: ChargeStatus;
  captured_amount: number;
  refunded_amount: number;
  capture: boolean;
  failure_code: string | null;
  created: number;
}

export function chargeView(c: ChargeRow): ChargeView {
  return {
    id: c.id,
    object: 'charge',
    payment_id: c.payment_id,
    amount: c.amount,
    currency: c.currency,
    status: c.status,
    captured_amount: c.captured_amount,
    refunded_amount: c.refunded_amount,
    capture: c.capture_requested,
    failure_code: c.failure_code,
    created: Math.floor(c.created_at.getTime() / 1000),
  };
}

export interface NewCharge {
  id: string;
  paymentId: string;
  amount: number;
  currency: string;
  status: ChargeStatus;
  capturedAmount: number;
  token: string;
  captureRequested: boolean;
  idempotencyKey: string;
  mode: ProviderMode;
  failureCode: string | null;
}

export async function insertCharge(tx: Tx, c: NewCharge): Promise<ChargeRow> {
  const res = await tx.query<ChargeRow>(
    `INSERT INTO mock_provider_charges
       (id, payment_id, amount, currency, status, captured_amount, token, capture_requested,
        idempotency_key, mode, failure_code)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     RETURNING *`,
    [c.id, c.paymentId, c.amount, c.currency, c.status, c.capturedAmount, c.token, c.captureRequested,
      c.idempotencyKey, c.mode, c.failureCode],
  );
  return res.rows[0]!;
}

/** Row-locks the charge so concurrent captures, voids and refunds of it are serialised. */
export async function lockCharge(tx: Tx, id: string): Promise<ChargeRow | null> {
  const res = await tx.query<ChargeRow>('SELECT * FROM mock_provider_charges WHERE id = $1 FOR UPDATE', [id]);
  return res.rows[0] ?? null;
}

export interface ChargePatch {
  status?: ChargeStatus;
  capturedAmount?: number;
  refundedAmount?: number;
  failureCode?: string | null;
}

export async function updateCharge(tx: Tx, id: string, p: ChargePatch): Promise<ChargeRow> {
  const res = await tx.query<ChargeRow>(
    `UPDATE mock_provider_charges SET
       status          = COALESCE($2, status),
       captured_amount = COALESCE($3, captured_amount),
       refunded_amount = COALESCE($4, refunded_amount),
       failure_code    = CASE WHEN $5::boolean THEN $6 ELSE failure_code END,
       updated_at      = now()
     WHERE id = $1
     RETURNING *`,
    [id, p.status ?? null, p.capturedAmount ?? null, p.refundedAmount ?? null,
      p.failureCode !== undefined, p.failureCode ?? null],
  );
  return res.rows[0]!;
}

export async function findCharge(db: Queryable, id: string): Promise<ChargeRow | null> {
  const res = await db.query<ChargeRow>('SELECT * FROM mock_provider_charges WHERE id = $1', [id]);
  return res.rows[0] ?? null;
}

/** Pending asynchronous charges, oldest first, with how long ago they were accepted. */
export async function listPendingCharges(db: Queryable): Promise<{ id: string; age_ms: number }[]> {
  const res = await db.query<{ id: string; age_ms: number }>(
    `SELECT id, (EXTRACT(EPOCH FROM now() - created_at) * 1000)::float8 AS age_ms
       FROM mock_provider_charges WHERE status = 'pending' ORDER BY created_at LIMIT 10000`,
  );
  return res.rows;
}
