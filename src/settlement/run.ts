/**
 * The settlement runner (SPEC §13). A batch settles `captured` payments captured before its cutoff,
 * in id order, one chunk per transaction:
 *
 *   lock the batch row → read the checkpoint → lock up to chunk_size eligible payments past it
 *   (FOR UPDATE SKIP LOCKED) → per payment, under a SAVEPOINT: captured → settled (payment, history
 *   row and outbox event via `transition`) and a settlement_items row, or on failure roll back to
 *   the savepoint and record a settlement_errors row → advance the checkpoint and the counters → COMMIT.
 *
 * So a crash between chunks resumes from the checkpoint, a crash mid-chunk rolls that whole chunk
 * back, and nothing is settled twice: the checkpoint moves in the same transaction as the items,
 * the batch row lock serialises two runners of one batch even if their leases ever overlapped,
 * only `captured` payments are picked (settled ones never are again), and settlement_items.payment_id
 * is UNIQUE. The lease `settlement:<id>` keeps a second worker from even trying.
 *
 * "Captured before the cutoff" is read from the audit trail: the payment_status_history row of its
 * transition to `captured` must be older than the cutoff. `updated_at` is not used because it moves
 * with later changes (a partial refund, a reconciliation flag) that do not change when the money
 * was captured; the history row is immutable and written in the capture's own transaction.
 */
import { AppError, isAppError } from '../domain/errors.js';
import type { Db, Tx } from '../db/pool.js';
import { withTx } from '../db/pool.js';
import type { Logger } from '../lib/logger.js';
import { metrics } from '../observability/metrics.js';
import { transition } from '../payments/store.js';
import type { Actor, PaymentRow } from '../payments/types.js';
import { withLease, type LeaseSignal } from '../worker/lease.js';
import { findSettlement, getSettlement, type SettlementRow } from './store.js';

export const SETTLEMENT_ACTOR: Actor = { actor: 'worker:settlement', requestId: null };

export interface RunOptions {
  /** How many times a failed chunk is retried before the batch is marked failed (default 3: 4 tries). */
  chunkRetries?: number;
  /** Wait before the first retry of a chunk, doubled for each further one (default 1000 ms). */
  retryDelayMs?: number;
  /** TTL of the batch's lease, renewed every third of it (default 60 s). */
  leaseSeconds?: number;
  /** Stops the run between chunks (shutdown); the batch stays `running` and is resumed later. */
  signal?: AbortSignal;
  log?: Logger;
}

export const DEFAULT_RUN_OPTIONS = { chunkRetries: 3, retryDelayMs: 1000, leaseSeconds: 60 } as const;

export function settlementLeaseName(id: string): string {
  return `settlement:${id}`;
}

/** An item the batch refuses to settle for a business reason; recorded like any other item failure. */
class ItemRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// Errors that say nothing about the item but about the transaction or the connection: the chunk
// fails (and is retried) instead of the payment being recorded as an item error.
const CHUNK_LEVEL_SQLSTATE = /^(08|40|53|57|58|XX)/;

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function describeItemError(err: unknown): { code: string; message: string } {
  if (err instanceof ItemRefused) return { code: err.code, message: err.message };
  if (isAppError(err)) return { code: err.code, message: err.message };
  const state = sqlState(err);
  const message = err instanceof Error ? err.message : String(err);
  if (state) return { code: 'DATABASE_ERROR', message: `${message} (SQLSTATE ${state})` };
  return { code: 'INTERNAL_ERROR', message };
}

const ELIGIBLE_SQL = `
  SELECT p.* FROM payments p
   WHERE p.status = 'captured'
     AND p.id > COALESCE($1::text, '')
     AND EXISTS (SELECT 1 FROM payment_status_history h
                  WHERE h.payment_id = p.id AND h.to_status = 'captured' AND h.created_at < $2)
   ORDER BY p.id
   LIMIT $3
   FOR UPDATE OF p SKIP LOCKED`;

async function settleOne(tx: Tx, s: SettlementRow, p: PaymentRow): Promise<void> {
  if (p.reconciliation_status === 'manual_review') {
    // The provider contradicted this payment's state; a human decides before any money moves.
    throw new ItemRefused('PAYMENT_MANUAL_REVIEW', 'The payment is under manual review and is not settled until it is resolved.');
  }
  const settled = await transition(tx, p, { to: 'settled', cause: `settlement:${s.id}`, by: SETTLEMENT_ACTOR });
  await tx.query(
    `INSERT INTO settlement_items (settlement_id, payment_id, merchant_id, currency, amount_captured, amount_refunded)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [s.id, settled.id, settled.merchant_id, settled.currency, settled.amount_captured, settled.amount_refunded],
  );
}

export interface ChunkResult {
  row: SettlementRow;
  /** Payments looked at in this chunk (settled + errors). */
  processed: number;
  settled: number;
  errors: number;
  /** The batch is no longer running: completed by this chunk, or completed / failed by someone else. */
  done: boolean;
  /** This chunk completed the batch. */
  completed: boolean;
}

/**
 * One chunk in one transaction. Returns done when the batch is no longer running (completed by
 * this chunk, or completed / failed by someone else).
 */
export async function runChunk(db: Db, id: string): Promise<ChunkResult> {
  const result = await withTx(db, async (tx): Promise<ChunkResult> => {
    const s = (await tx.query<SettlementRow>('SELECT * FROM settlements WHERE id = $1 FOR UPDATE', [id])).rows[0];
    if (!s) throw new AppError('RESOURCE_NOT_FOUND', `No such settlement: '${id}'.`);
    if (s.status !== 'running') return { row: s, processed: 0, settled: 0, errors: 0, done: true, completed: false };

    const payments = (await tx.query<PaymentRow>(ELIGIBLE_SQL, [s.last_payment_id, s.cutoff, s.chunk_size])).rows;
    let settled = 0;
    let errors = 0;
    for (const p of payments) {
      await tx.query('SAVEPOINT settlement_item');
      try {
        await settleOne(tx, s, p);
        await tx.query('RELEASE SAVEPOINT settlement_item');
        settled += 1;
      } catch (err) {
        const state = sqlState(err);
        if (state && CHUNK_LEVEL_SQLSTATE.test(state)) throw err;
        // Undo whatever this item wrote (status, history, event, item row); keep the rest of the chunk.
        await tx.query('ROLLBACK TO SAVEPOINT settlement_item');
        await tx.query('RELEASE SAVEPOINT settlement_item');
        const e = describeItemError(err);
        await tx.query(
          `INSERT INTO settlement_errors (settlement_id, payment_id, merchant_id, code, error) VALUES ($1, $2, $3, $4, $5)`,
          [s.id, p.id, p.merchant_id, e.code, e.message.slice(0, 2000)],
        );
        errors += 1;
      }
    }
    // Fewer than a full chunk: nothing eligible is left past the checkpoint.
    const done = payments.length < s.chunk_size;
    const r = await tx.query<SettlementRow>(
      `UPDATE settlements
          SET last_payment_id = $2, settled_count = settled_count + $3, error_count = error_count + $4,
              chunks_completed = chunks_completed + $5,
              status = CASE WHEN $6 THEN 'completed' ELSE status END,
              completed_at = CASE WHEN $6 THEN now() ELSE completed_at END,
              error = CASE WHEN $6 THEN NULL ELSE error END,
              updated_at = now()
        WHERE id = $1 RETURNING *`,
      [id, payments.at(-1)?.id ?? s.last_payment_id, settled, errors, payments.length > 0 ? 1 : 0, done],
    );
    return { row: r.rows[0]!, processed: payments.length, settled, errors, done, completed: done };
  });
  // Counted once committed.
  if (result.settled > 0) metrics.settlement.inc({ outcome: 'settled' }, result.settled);
  if (result.errors > 0) metrics.settlement.inc({ outcome: 'error' }, result.errors);
  return result;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function markStarted(db: Db, id: string): Promise<SettlementRow | null> {
  const r = await db.query<SettlementRow>(
    `UPDATE settlements SET status = 'running', started_at = COALESCE(started_at, now()), error = NULL, updated_at = now()
      WHERE id = $1 AND status IN ('pending','running','failed') RETURNING *`,
    [id],
  );
  return r.rows[0] ?? null;
}

async function chunkFailed(db: Db, id: string, message: string, final: boolean): Promise<void> {
  await db
    .query(
      `UPDATE settlements SET chunk_failures = chunk_failures + 1, error = $2,
              status = CASE WHEN $3 THEN 'failed' ELSE status END, updated_at = now()
        WHERE id = $1 AND status = 'running'`,
      [id, message.slice(0, 2000), final],
    )
    // The database itself may be what failed: the batch then stays `running` and is resumed.
    .catch(() => undefined);
}

/** False when the batch turned out to be completed already (nothing was run). */
async function runChunks(db: Db, id: string, lease: LeaseSignal, opts: RunOptions): Promise<boolean> {
  const retries = opts.chunkRetries ?? DEFAULT_RUN_OPTIONS.chunkRetries;
  const delay = opts.retryDelayMs ?? DEFAULT_RUN_OPTIONS.retryDelayMs;
  const log = opts.log;
  const started = await markStarted(db, id);
  if (!started) return false; // completed meanwhile
  log?.info({ job: 'settlement', settlement_id: id, checkpoint: started.last_payment_id }, 'settlement running');
  for (;;) {
    if (lease.lost || opts.signal?.aborted) {
      log?.warn({ job: 'settlement', settlement_id: id, lease_lost: lease.lost }, 'settlement stopped between chunks; it will be resumed');
      return true;
    }
    let failures = 0;
    let result: ChunkResult;
    for (;;) {
      try {
        result = await runChunk(db, id);
        break;
      } catch (err) {
        failures += 1;
        const message = err instanceof Error ? err.message : String(err);
        const final = failures > retries;
        await chunkFailed(db, id, message, final);
        log?.warn({ job: 'settlement', settlement_id: id, failures, final, err: message }, final ? 'settlement chunk failed; batch failed' : 'settlement chunk failed; retrying');
        if (final) {
          metrics.settlement.inc({ outcome: 'failed' });
          return true;
        }
        await pause(delay * 2 ** (failures - 1), opts.signal);
        if (lease.lost || opts.signal?.aborted) return true;
      }
    }
    log?.debug({ job: 'settlement', settlement_id: id, processed: result.processed, checkpoint: result.row.last_payment_id }, 'settlement chunk');
    if (result.done) {
      if (result.completed) {
        metrics.settlement.inc({ outcome: 'completed' });
        log?.info({ job: 'settlement', settlement_id: id, settled: result.row.settled_count, errors: result.row.error_count }, 'settlement completed');
      }
      return true;
    }
  }
}

export interface RunOutcome {
  row: SettlementRow;
  /** True when this call ran the batch (some or all of it); false when another runner held its lease or it was already completed. */
  ran: boolean;
}

/** runSettlement, also saying whether this call did the running. */
export async function runSettlementOnce(db: Db, id: string, opts: RunOptions = {}): Promise<RunOutcome> {
  const before = await getSettlement(db, id);
  if (before.status === 'completed') return { row: before, ran: false };
  const ran = await withLease(db, settlementLeaseName(id), opts.leaseSeconds ?? DEFAULT_RUN_OPTIONS.leaseSeconds, (lease) => runChunks(db, id, lease, opts));
  return { row: (await findSettlement(db, id))!, ran: ran === true };
}

/**
 * Runs (or resumes from its checkpoint) one batch to the end and answers its row. Idempotent: a
 * completed batch is answered as it is; a batch another runner holds the lease of is answered as
 * it is now, untouched. A `failed` batch is run again from its checkpoint (an operator's retry).
 */
export async function runSettlement(db: Db, id: string, opts: RunOptions = {}): Promise<SettlementRow> {
  return (await runSettlementOnce(db, id, opts)).row;
}

export interface ResumeResult {
  /** Unfinished batches found. */
  found: number;
  /** Batches this call ran. */
  ran: number;
  /** Batches another runner held. */
  busy: number;
}

/**
 * Runs every `pending` or `running` batch whose lease is free, oldest first (worker start and on
 * a schedule): a batch left by a process that died is finished by whoever comes next.
 */
export async function resumeUnfinishedSettlements(db: Db, opts: RunOptions = {}): Promise<ResumeResult> {
  const r = await db.query<{ id: string }>(`SELECT id FROM settlements WHERE status IN ('pending','running') ORDER BY id`);
  const result: ResumeResult = { found: r.rows.length, ran: 0, busy: 0 };
  for (const { id } of r.rows) {
    if (opts.signal?.aborted) break;
    const outcome = await runSettlementOnce(db, id, opts);
    if (outcome.ran) result.ran += 1;
    else if (outcome.row.status !== 'completed') result.busy += 1;
  }
  return result;
}
