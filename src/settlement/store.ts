/**
 * Settlement batches: creation, reads and the report (SPEC §13). The batch runner is in run.ts.
 */
import { AppError } from '../domain/errors.js';
import type { Queryable } from '../db/pool.js';
import { newId } from '../lib/ids.js';

export const SETTLEMENT_STATUSES = ['pending', 'running', 'completed', 'failed'] as const;
export type SettlementStatus = (typeof SETTLEMENT_STATUSES)[number];

export const DEFAULT_CHUNK_SIZE = 1000;
export const MAX_CHUNK_SIZE = 10_000;

export interface SettlementRow {
  id: string;
  status: SettlementStatus;
  cutoff: Date;
  chunk_size: number;
  /** The checkpoint: every eligible payment with an id up to this one has been looked at. */
  last_payment_id: string | null;
  settled_count: number;
  error_count: number;
  chunks_completed: number;
  chunk_failures: number;
  job_id: string | null;
  error: string | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  updated_at: Date;
}

export interface NewSettlement {
  /** Payments captured strictly before this instant are settled; default: the database's now(). */
  cutoff?: Date;
  chunkSize?: number;
  /** The scheduled job that asks for it: a retried job gets its own batch back instead of a new one. */
  jobId?: string;
}

/**
 * Records a `pending` batch; nothing is settled until it runs. A cutoff in the future is refused:
 * a batch describes payments already captured.
 */
export async function createSettlement(db: Queryable, input: NewSettlement = {}): Promise<SettlementRow> {
  const chunkSize = input.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    throw new AppError('SCHEMA_INVALID_FIELD', `chunk_size must be an integer from 1 to ${MAX_CHUNK_SIZE}.`, { layer: 'schema', details: { field: 'chunk_size' } });
  }
  if (input.cutoff !== undefined && Number.isNaN(input.cutoff.getTime())) {
    throw new AppError('SCHEMA_INVALID_FIELD', 'cutoff must be a valid date-time.', { layer: 'schema', details: { field: 'cutoff' } });
  }
  if (input.jobId !== undefined) {
    const existing = await db.query<SettlementRow>('SELECT * FROM settlements WHERE job_id = $1', [input.jobId]);
    if (existing.rows[0]) return existing.rows[0];
  }
  const r = await db.query<SettlementRow>(
    `INSERT INTO settlements (id, status, cutoff, chunk_size, job_id)
     SELECT $1, 'pending', COALESCE($2::timestamptz, now()), $3, $4
      WHERE COALESCE($2::timestamptz, now()) <= now()
     ON CONFLICT (job_id) DO NOTHING
     RETURNING *`,
    [newId('stl'), input.cutoff ?? null, chunkSize, input.jobId ?? null],
  );
  if (r.rows[0]) return r.rows[0];
  if (input.jobId !== undefined) {
    // A concurrent delivery of the same job inserted it first.
    const again = await db.query<SettlementRow>('SELECT * FROM settlements WHERE job_id = $1', [input.jobId]);
    if (again.rows[0]) return again.rows[0];
  }
  throw new AppError('SCHEMA_INVALID_FIELD', 'cutoff must not be in the future.', { layer: 'schema', details: { field: 'cutoff' } });
}

export async function findSettlement(db: Queryable, id: string): Promise<SettlementRow | null> {
  const r = await db.query<SettlementRow>('SELECT * FROM settlements WHERE id = $1', [id]);
  return r.rows[0] ?? null;
}

export async function getSettlement(db: Queryable, id: string): Promise<SettlementRow> {
  const s = await findSettlement(db, id);
  if (!s) throw new AppError('RESOURCE_NOT_FOUND', `No such settlement: '${id}'.`);
  return s;
}

function iso(d: Date | null): string | null {
  return d ? d.toISOString() : null;
}

/** The batch as operators see it (admin API). */
export function settlementToApi(s: SettlementRow): Record<string, unknown> {
  return {
    id: s.id,
    object: 'settlement',
    status: s.status,
    cutoff: s.cutoff.toISOString(),
    chunk_size: s.chunk_size,
    checkpoint: s.last_payment_id,
    chunks_completed: s.chunks_completed,
    chunk_failures: s.chunk_failures,
    counts: { settled: s.settled_count, errors: s.error_count },
    error: s.error,
    created_at: s.created_at.toISOString(),
    started_at: iso(s.started_at),
    completed_at: iso(s.completed_at),
  };
}

export interface CurrencyTotal {
  currency: string;
  /** Sum of amount_captured of the settled payments. */
  gross: number;
  /** Sum of what had been refunded of them when they were settled. */
  refunded: number;
  net: number;
}

export interface SettlementReport {
  id: string;
  object: 'settlement';
  status: SettlementStatus;
  cutoff: string;
  counts: { settled: number; errors: number };
  totals: CurrencyTotal[];
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  /** Set on a merchant's view: the figures cover only this merchant's payments. */
  merchant_id?: string;
  /** Operator-only fields (admin view). */
  chunk_size?: number;
  checkpoint?: string | null;
  chunks_completed?: number;
  chunk_failures?: number;
  error?: string | null;
}

/**
 * Counts and gross / refunded / net per currency, computed from the items themselves (not from the
 * batch's running counters). With `merchantId`, only that merchant's items and errors count, and
 * a batch that touched none of its payments is answered as not found: batches span every merchant,
 * and one merchant learns nothing about a batch that did not concern it.
 */
export async function getSettlementReport(db: Queryable, id: string, opts: { merchantId?: string } = {}): Promise<SettlementReport> {
  const s = await getSettlement(db, id);
  const merchantId = opts.merchantId ?? null;
  const totals = await db.query<{ currency: string; items: number; gross: number; refunded: number }>(
    `SELECT currency, count(*)::bigint AS items, sum(amount_captured)::bigint AS gross, sum(amount_refunded)::bigint AS refunded
       FROM settlement_items
      WHERE settlement_id = $1 AND ($2::text IS NULL OR merchant_id = $2)
      GROUP BY currency ORDER BY currency`,
    [id, merchantId],
  );
  const errors = await db.query<{ n: number }>(
    'SELECT count(*)::bigint AS n FROM settlement_errors WHERE settlement_id = $1 AND ($2::text IS NULL OR merchant_id = $2)',
    [id, merchantId],
  );
  const settled = totals.rows.reduce((n, t) => n + Number(t.items), 0);
  const errorCount = Number(errors.rows[0]!.n);
  if (merchantId !== null && settled === 0 && errorCount === 0) {
    throw new AppError('RESOURCE_NOT_FOUND', `No such settlement: '${id}'.`);
  }
  const report: SettlementReport = {
    id: s.id,
    object: 'settlement',
    status: s.status,
    cutoff: s.cutoff.toISOString(),
    counts: { settled, errors: errorCount },
    totals: totals.rows.map((t) => ({ currency: t.currency, gross: Number(t.gross), refunded: Number(t.refunded), net: Number(t.gross) - Number(t.refunded) })),
    created_at: s.created_at.toISOString(),
    started_at: iso(s.started_at),
    completed_at: iso(s.completed_at),
  };
  if (merchantId !== null) return { ...report, merchant_id: merchantId };
  return {
    ...report,
    chunk_size: s.chunk_size,
    checkpoint: s.last_payment_id,
    chunks_completed: s.chunks_completed,
    chunk_failures: s.chunk_failures,
    error: s.error,
  };
}

export async function listSettlements(
  db: Queryable,
  opts: { status?: SettlementStatus; limit: number; startingAfter?: string },
): Promise<{ object: 'list'; data: Record<string, unknown>[]; has_more: boolean }> {
  const r = await db.query<SettlementRow>(
    `SELECT * FROM settlements
      WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR id < $2)
      ORDER BY id DESC LIMIT $3`,
    [opts.status ?? null, opts.startingAfter ?? null, opts.limit + 1],
  );
  return { object: 'list', data: r.rows.slice(0, opts.limit).map(settlementToApi), has_more: r.rows.length > opts.limit };
}

export interface SettlementErrorRow {
  id: number;
  settlement_id: string;
  payment_id: string;
  merchant_id: string;
  code: string;
  error: string;
  created_at: Date;
}

export async function listSettlementErrors(
  db: Queryable,
  id: string,
  opts: { limit: number; startingAfter?: number },
): Promise<{ object: 'list'; data: Record<string, unknown>[]; has_more: boolean }> {
  await getSettlement(db, id);
  const r = await db.query<SettlementErrorRow>(
    `SELECT * FROM settlement_errors WHERE settlement_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
    [id, opts.startingAfter ?? 0, opts.limit + 1],
  );
  return {
    object: 'list',
    data: r.rows.slice(0, opts.limit).map((e) => ({
      object: 'settlement_error',
      id: Number(e.id),
      settlement_id: e.settlement_id,
      payment_id: e.payment_id,
      merchant_id: e.merchant_id,
      code: e.code,
      error: e.error,
      created_at: e.created_at.toISOString(),
    })),
    has_more: r.rows.length > opts.limit,
  };
}
