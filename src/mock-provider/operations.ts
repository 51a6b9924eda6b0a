import { createHash } from 'node:crypto';
import type { Db, Queryable, Tx } from '../db/pool.js';
import { withTx } from '../db/pool.js';
import type { ChargeRow, ProviderMode } from './charges.js';
import type { LedgerOperation } from './ledger.js';

/**
 * The provider's idempotency: one row per key, claimed and completed in the same transaction as
 * the effect. A concurrent request with the same key blocks on the primary key until the first
 * commits (then replays its response) or rolls back (then performs the effect itself), so
 * however many arrive at once, exactly one effect happens.
 */
export interface Claim {
  key: string;
  operation: LedgerOperation;
  mode: ProviderMode;
  /** Everything the request asked for that must match on a replay. */
  request: unknown[];
}

export interface EffectResult<F> {
  status: number;
  body: unknown;
  paymentId: string | null;
  chargeId: string | null;
  /** Work for after the commit (webhooks, settlement); dropped on a replay. */
  followUp?: F;
}

export type IdempotentResult<F> =
  | { kind: 'performed'; status: number; body: unknown; followUp?: F }
  | { kind: 'replayed'; status: number; body: unknown }
  | { kind: 'conflict' };

export function fingerprint(operation: string, request: unknown[]): string {
  return createHash('sha256').update(JSON.stringify([operation, ...request])).digest('hex');
}

export async function runIdempotent<F>(
  db: Db,
  claim: Claim,
  effect: (tx: Tx) => Promise<EffectResult<F>>,
): Promise<IdempotentResult<F>> {
  const print = fingerprint(claim.operation, claim.request);
  return withTx(db, async (tx) => {
    const claimed = await tx.query(
      `INSERT INTO mock_provider_operations (idempotency_key, operation, mode, fingerprint)
       VALUES ($1, $2, $3, $4)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING idempotency_key`,
      [claim.key, claim.operation, claim.mode, print],
    );
    if (claimed.rowCount === 0) {
      // The insert waited for the holder of the key to commit; its row is now visible.
      const stored = await tx.query<{ fingerprint: string; response_status: number; response_body: unknown }>(
        'SELECT fingerprint, response_status, response_body FROM mock_provider_operations WHERE idempotency_key = $1',
        [claim.key],
      );
      const row = stored.rows[0]!;
      if (row.fingerprint !== print) return { kind: 'conflict' };
      return { kind: 'replayed', status: row.response_status, body: row.response_body };
    }
    const result = await effect(tx);
    await tx.query(
      `UPDATE mock_provider_operations
          SET response_status = $2, response_body = $3, payment_id = $4, charge_id = $5
        WHERE idempotency_key = $1`,
      [claim.key, result.status, JSON.stringify(result.body), result.paymentId, result.chargeId],
    );
    return { kind: 'performed', status: result.status, body: result.body, followUp: result.followUp };
  });
}

export interface StoredOperation {
  idempotency_key: string;
  operation: LedgerOperation;
  mode: ProviderMode;
  payment_id: string | null;
  charge_id: string | null;
  response_status: number;
  response_body: unknown;
  created_at: Date;
  charge: ChargeRow | null;
}

/** The operation with its charge as it is now: an accepted-pending charge may have settled since. */
export async function findOperation(db: Queryable, key: string): Promise<StoredOperation | null> {
  const res = await db.query<Omit<StoredOperation, 'charge'> & { charge: (Omit<ChargeRow, 'created_at' | 'updated_at'> & { created_at: string; updated_at: string }) | null }>(
    `SELECT o.idempotency_key, o.operation, o.mode, o.payment_id, o.charge_id, o.response_status,
            o.response_body, o.created_at,
            CASE WHEN c.id IS NULL THEN NULL ELSE to_jsonb(c) END AS charge
       FROM mock_provider_operations o
       LEFT JOIN mock_provider_charges c ON c.id = o.charge_id
      WHERE o.idempotency_key = $1`,
    [key],
  );
  const row = res.rows[0];
  if (!row) return null;
  const charge = row.charge
    ? { ...row.charge, created_at: new Date(row.charge.created_at), updated_at: new Date(row.charge.updated_at) }
    : null;
  return { ...row, charge };
}
