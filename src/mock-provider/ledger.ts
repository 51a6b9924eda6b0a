import type { Queryable, Tx } from '../db/pool.js';

export type LedgerOperation = 'authorize' | 'capture' | 'void' | 'refund';

/** One effect the provider actually performed; the shape of the admin ledger endpoint. */
export interface MockLedgerEntry {
  operation: LedgerOperation;
  amount: number;
  currency: string;
  idempotency_key: string;
  provider_reference: string;
  created_at: string;
}

export interface LedgerEffect {
  chargeId: string;
  paymentId: string;
  operation: LedgerOperation;
  amount: number;
  currency: string;
  idempotencyKey: string;
  providerReference: string;
}

/** Must run in the same transaction as the operation row, so an effect and its key commit together. */
export async function recordEffect(tx: Tx, e: LedgerEffect): Promise<void> {
  await tx.query(
    `INSERT INTO mock_provider_ledger
       (charge_id, payment_id, operation, amount, currency, idempotency_key, provider_reference)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [e.chargeId, e.paymentId, e.operation, e.amount, e.currency, e.idempotencyKey, e.providerReference],
  );
}

export async function readMockLedger(db: Queryable, paymentId: string): Promise<MockLedgerEntry[]> {
  const res = await db.query<Omit<MockLedgerEntry, 'created_at'> & { created_at: Date }>(
    `SELECT operation, amount, currency, idempotency_key, provider_reference, created_at
       FROM mock_provider_ledger WHERE payment_id = $1 ORDER BY id`,
    [paymentId],
  );
  return res.rows.map((r) => ({ ...r, created_at: r.created_at.toISOString() }));
}
