/**
 * Group commit for delivery outcomes. Every finished attempt — its attempt-log row and the
 * delivery's new state — is queued here; one flush at a time writes everything queued so far in a
 * single statement (attempt rows inserted, delivery rows updated where this worker still holds the
 * lease). Attempts that finish while a flush is running go into the next one, so under load a
 * flush carries tens of outcomes for one commit, and alone an outcome is written at once.
 *
 * A flush that needs more than that statement — a retry's new job, a 410's endpoint disabling —
 * runs in one transaction, so a pending delivery always has its job (as before batching).
 */
import { withTx, type Db } from '../db/pool.js';
import { enqueueDelivery, type PgBoss } from '../worker/queue.js';
import { metrics } from '../observability/metrics.js';
import { disableEndpoint } from './endpoints.js';

export type DeliveryOutcome = 'succeeded' | 'retry' | 'dead' | 'skipped';

/** One finished attempt, decided; written by the next flush. */
export interface OutcomeRow {
  deliveryId: string;
  endpointId: string;
  /** The lease token: the delivery is updated only while it is still ours. */
  owner: string;
  attempt: number;
  statusCode: number | null;
  latencyMs: number;
  /** The request was sent (its latency counts in the duration histogram). */
  sent: boolean;
  /** The attempt log's error (transport error or the reason it was not sent). */
  error: string | null;
  excerpt: string | null;
  outcome: Exclude<DeliveryOutcome, 'skipped'>;
  nextAttemptAt: Date | null;
  /** The delivery's last_error. */
  lastError: string | null;
  /** The endpoint answered 410 Gone: it is disabled in the same transaction. */
  disableEndpoint: boolean;
}

/** At most this many outcomes per statement; more wait for the next flush. */
const MAX_PER_FLUSH = 500;

/**
 * The attempt rows, and each delivery's new state where this worker still holds the lease. The
 * rows are found by primary key and updated by tuple id, whatever the statistics say (a join on
 * id let the planner scan the whole table when it believed the table small: see LEASE_SQL in
 * deliver.ts). Sorted by id, the row locks are taken in the order the lease takes them.
 */
export const WRITE_SQL = `
  WITH t AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::text[])
      AS t(id, owner, attempt, status_code, latency_ms, error, excerpt, status, next_attempt_at, last_error)
  ), logged AS (
    INSERT INTO webhook_delivery_attempts (delivery_id, attempt, status_code, latency_ms, error, response_excerpt)
    SELECT id, attempt, status_code, latency_ms, error, excerpt FROM t
  ), held AS MATERIALIZED (
    SELECT x.row_ctid, t.*
      FROM (SELECT * FROM t ORDER BY id) t
      CROSS JOIN LATERAL (
        SELECT w.ctid AS row_ctid FROM webhook_deliveries w WHERE w.id = t.id AND w.owner = t.owner LIMIT 1 FOR UPDATE
      ) x
  )
  UPDATE webhook_deliveries d
     SET attempts = h.attempt, status = h.status, next_attempt_at = h.next_attempt_at, last_status_code = h.status_code,
         last_error = h.last_error, locked_until = NULL, owner = NULL, updated_at = now(),
         delivered_at = CASE WHEN h.status = 'succeeded' THEN now() ELSE d.delivered_at END
    FROM held h
   WHERE d.ctid = ANY(ARRAY(SELECT row_ctid FROM held)) AND d.ctid = h.row_ctid
  RETURNING d.id`;

export function writeParams(rows: readonly OutcomeRow[]): unknown[] {
  return [
    rows.map((r) => r.deliveryId),
    rows.map((r) => r.owner),
    rows.map((r) => r.attempt),
    rows.map((r) => r.statusCode),
    rows.map((r) => r.latencyMs),
    rows.map((r) => r.error),
    rows.map((r) => r.excerpt),
    rows.map((r) => (r.outcome === 'retry' ? 'pending' : r.outcome)),
    rows.map((r) => r.nextAttemptAt),
    rows.map((r) => r.lastError),
  ];
}

interface Queued {
  row: OutcomeRow;
  resolve: (o: DeliveryOutcome) => void;
  reject: (err: unknown) => void;
}

export class OutcomeWriter {
  private queue: Queued[] = [];
  private flushing = false;
  /** Statements (or transactions) written, for tests and the benchmark notes. */
  flushes = 0;

  constructor(
    private readonly db: Db,
    private readonly boss: PgBoss,
  ) {}

  /**
   * Resolves once the outcome is committed: its outcome, or 'skipped' when our lease had lapsed and
   * another worker took the delivery over (then their outcome stands; our attempt is only logged).
   */
  write(row: OutcomeRow): Promise<DeliveryOutcome> {
    return new Promise<DeliveryOutcome>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // Outcomes that complete in the same turn of the event loop share the first flush.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_PER_FLUSH);
        try {
          this.settle(batch, await this.commit(batch.map((q) => q.row)));
        } catch (err) {
          if (batch.length === 1) batch[0]!.reject(err);
          // One bad outcome must not sink its batch-mates: each is tried on its own.
          else for (const q of batch) await this.commit([q.row]).then((ids) => this.settle([q], ids), q.reject);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private settle(batch: Queued[], updated: Set<string>): void {
    for (const { row, resolve } of batch) {
      if (!updated.has(row.deliveryId)) {
        resolve('skipped');
        continue;
      }
      metrics.webhookDeliveries.inc({ outcome: row.outcome });
      if (row.sent) metrics.webhookDuration.observe(row.latencyMs / 1000);
      resolve(row.outcome);
    }
  }

  private async commit(rows: OutcomeRow[]): Promise<Set<string>> {
    this.flushes += 1;
    const simple = rows.every((r) => r.outcome !== 'retry' && !r.disableEndpoint);
    if (simple) {
      const r = await this.db.query<{ id: string }>(WRITE_SQL, writeParams(rows));
      return new Set(r.rows.map((x) => x.id));
    }
    return withTx(this.db, async (tx) => {
      for (const endpointId of new Set(rows.filter((r) => r.disableEndpoint).map((r) => r.endpointId))) {
        await disableEndpoint(tx, endpointId, 'the endpoint answered 410 Gone');
      }
      const r = await tx.query<{ id: string }>(WRITE_SQL, writeParams(rows));
      const updated = new Set(r.rows.map((x) => x.id));
      for (const row of rows) {
        if (row.outcome === 'retry' && updated.has(row.deliveryId)) await enqueueDelivery(this.boss, tx, row.deliveryId, row.nextAttemptAt!);
      }
      return updated;
    });
  }
}
