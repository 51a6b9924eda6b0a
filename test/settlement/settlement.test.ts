/**
 * The settlement batch (SPEC §13) against real PostgreSQL: chunks with checkpoints, the cutoff,
 * idempotent re-runs, racing runners, per-item failures, chunk retries and the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Db } from '../../src/db/pool.js';
import { runChunk, runSettlement, runSettlementOnce, resumeUnfinishedSettlements, settlementLeaseName } from '../../src/settlement/run.js';
import { createSettlement, getSettlement, getSettlementReport, listSettlementErrors } from '../../src/settlement/store.js';
import { acquireLease, releaseLease } from '../../src/worker/lease.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  captureLogger,
  dbNow,
  doubleSettlements,
  expectNotSettled,
  expectSettledOnce,
  minutesAgo,
  seedMerchant,
  seedPayments,
  statusCounts,
} from './helpers.js';

let t: TestDatabase;
let db: Db;
let merchant: string;

beforeAll(async () => {
  t = await createTestDatabase();
  db = t.db;
  merchant = await seedMerchant(db);
});
afterAll(async () => t?.drop());

/** Finishes batches and settles payments earlier tests left behind, so each test starts from a clean slate. */
async function settleLeftovers(): Promise<void> {
  await db.query(`UPDATE payments SET reconciliation_status = 'synced' WHERE status = 'captured' AND reconciliation_status <> 'synced'`);
  await resumeUnfinishedSettlements(db, { retryDelayMs: 0 });
  const s = await createSettlement(db, {});
  expect((await runSettlement(db, s.id, { retryDelayMs: 0 })).status).toBe('completed');
}

describe('a batch in chunks', () => {
  it('settles 3,500 payments in 4 chunks of one transaction each, advancing the checkpoint', async () => {
    await settleLeftovers();
    const cutoff = minutesAgo(10);
    const eligible = [
      ...(await seedPayments(db, merchant, 1750, { capturedAt: minutesAgo(60) })),
      ...(await seedPayments(db, merchant, 1750, { capturedAt: minutesAgo(30) })),
    ];
    const late = await seedPayments(db, merchant, 5, { capturedAt: minutesAgo(5) });
    const atCutoff = await seedPayments(db, merchant, 2, { capturedAt: cutoff });
    const authorized = await seedPayments(db, merchant, 3, { capturedAt: minutesAgo(60), status: 'authorized' });

    const s = await createSettlement(db, { cutoff, chunkSize: 1000 });
    expect(s).toMatchObject({ status: 'pending', chunk_size: 1000, last_payment_id: null, settled_count: 0, error_count: 0 });
    expect(s.id).toMatch(/^stl_[0-9a-z]{26}$/);
    expect(s.cutoff.getTime()).toBe(cutoff.getTime());

    const { log, lines } = captureLogger();
    const done = await runSettlement(db, s.id, { log });
    expect(done).toMatchObject({ status: 'completed', settled_count: 3500, error_count: 0, chunks_completed: 4, chunk_failures: 0, error: null });
    expect(done.last_payment_id).toBe(eligible.at(-1));
    expect(done.started_at).not.toBeNull();
    expect(done.completed_at).not.toBeNull();

    // The checkpoint after each chunk: the 1000th, 2000th, 3000th and last eligible payment.
    const checkpoints = lines.filter((l) => l.msg === 'settlement chunk').map((l) => l.checkpoint);
    expect(checkpoints).toEqual([eligible[999], eligible[1999], eligible[2999], eligible[3499]]);

    // One transaction per chunk: every item of a chunk carries its transaction's now().
    const groups = await db.query<{ n: number; first: string; last: string }>(
      `SELECT count(*)::bigint AS n, min(payment_id) AS first, max(payment_id) AS last
         FROM settlement_items WHERE settlement_id = $1 GROUP BY settled_at ORDER BY settled_at`,
      [s.id],
    );
    expect(groups.rows.map((g) => [Number(g.n), g.first, g.last])).toEqual([
      [1000, eligible[0], eligible[999]],
      [1000, eligible[1000], eligible[1999]],
      [1000, eligible[2000], eligible[2999]],
      [500, eligible[3000], eligible[3499]],
    ]);

    await expectSettledOnce(db, s.id, eligible);
    // Captured after (or exactly at) the cutoff, or not captured at all: untouched.
    await expectNotSettled(db, [...late, ...atCutoff]);
    expect(await statusCounts(db, authorized)).toEqual({ authorized: 3 });

    // Running a completed batch again does nothing.
    const again = await runSettlementOnce(db, s.id, { log });
    expect(again.ran).toBe(false);
    expect(again.row).toEqual(done);
    await expectSettledOnce(db, s.id, eligible);

    // The next batch takes the late ones, and nothing twice.
    const next = await runSettlement(db, (await createSettlement(db, {})).id);
    expect(next).toMatchObject({ status: 'completed', settled_count: 7, chunks_completed: 1 });
    await expectSettledOnce(db, next.id, [...late, ...atCutoff]);
    expect(await doubleSettlements(db)).toEqual([]);
  });

  it('reads "captured before the cutoff" from the capture history row, not updated_at', async () => {
    await settleLeftovers();
    const cutoff = minutesAgo(10);
    // Captured an hour ago, partially refunded a minute ago: updated_at is after the cutoff.
    const [refundedLater] = await seedPayments(db, merchant, 1, { capturedAt: minutesAgo(60), refunded: 2_500 });
    await db.query(`UPDATE payments SET updated_at = now() - interval '1 minute' WHERE id = $1`, [refundedLater]);
    // Created (and last updated) long ago, but captured only after the cutoff.
    const [capturedLate] = await seedPayments(db, merchant, 1, { capturedAt: minutesAgo(120) });
    await db.query(`UPDATE payment_status_history SET created_at = now() - interval '2 minutes' WHERE payment_id = $1 AND to_status = 'captured'`, [capturedLate]);

    const s = await runSettlement(db, (await createSettlement(db, { cutoff, chunkSize: 10 })).id);
    expect(s).toMatchObject({ status: 'completed', settled_count: 1 });
    await expectSettledOnce(db, s.id, [refundedLater!]);
    await expectNotSettled(db, [capturedLate!]);
    const item = await db.query('SELECT amount_captured, amount_refunded FROM settlement_items WHERE payment_id = $1', [refundedLater]);
    expect(item.rows[0]).toEqual({ amount_captured: 10_000, amount_refunded: 2_500 });
  });

  it('completes an empty batch in one chunk', async () => {
    await settleLeftovers();
    const s = await runSettlement(db, (await createSettlement(db, { chunkSize: 5 })).id);
    expect(s).toMatchObject({ status: 'completed', settled_count: 0, error_count: 0, chunks_completed: 0, last_payment_id: null });
  });

  it('ends with an empty chunk when the last chunk was exactly full', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 6, { capturedAt: minutesAgo(30) });
    const s = await runSettlement(db, (await createSettlement(db, { chunkSize: 3 })).id);
    expect(s).toMatchObject({ status: 'completed', settled_count: 6, chunks_completed: 2, last_payment_id: ids[5] });
    await expectSettledOnce(db, s.id, ids);
  });
});

describe('creating a batch', () => {
  it('refuses a cutoff in the future and a chunk size outside 1..10000', async () => {
    await expect(createSettlement(db, { cutoff: new Date(Date.now() + 3_600_000) })).rejects.toMatchObject({ code: 'SCHEMA_INVALID_FIELD', message: 'cutoff must not be in the future.' });
    await expect(createSettlement(db, { chunkSize: 0 })).rejects.toMatchObject({ code: 'SCHEMA_INVALID_FIELD' });
    await expect(createSettlement(db, { chunkSize: 10_001 })).rejects.toMatchObject({ code: 'SCHEMA_INVALID_FIELD' });
    await expect(createSettlement(db, { chunkSize: 1.5 })).rejects.toMatchObject({ code: 'SCHEMA_INVALID_FIELD' });
    await expect(createSettlement(db, { cutoff: new Date('nonsense') })).rejects.toMatchObject({ code: 'SCHEMA_INVALID_FIELD' });
    await expect(getSettlement(db, 'stl_nope')).rejects.toMatchObject({ code: 'RESOURCE_NOT_FOUND' });
  });

  it('defaults the cutoff to the database clock and the chunk size to 1000', async () => {
    const before = await dbNow(db);
    const s = await createSettlement(db);
    const after = await dbNow(db);
    expect(s.chunk_size).toBe(1000);
    expect(s.cutoff.getTime()).toBeGreaterThanOrEqual(before.getTime() - 1);
    expect(s.cutoff.getTime()).toBeLessThanOrEqual(after.getTime());
  });

  it('gives a retried scheduled job its own batch back', async () => {
    const jobs = await Promise.all(Array.from({ length: 5 }, () => createSettlement(db, { jobId: 'job-123' })));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
    expect((await db.query(`SELECT count(*)::int AS n FROM settlements WHERE job_id = 'job-123'`)).rows[0]).toEqual({ n: 1 });
  });
});

describe('two runners on one batch', () => {
  it('settles each payment once when runners race (Promise.all, two pools)', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 1200, { capturedAt: minutesAgo(30) });
    const s = await createSettlement(db, { chunkSize: 150 });
    const second = createPool(t.url, 10);
    try {
      const outcomes = await Promise.all([
        runSettlementOnce(db, s.id),
        runSettlementOnce(second, s.id),
        runSettlementOnce(db, s.id),
        runSettlementOnce(second, s.id),
      ]);
      // Exactly one did the work; the others found the lease held (or the batch done).
      expect(outcomes.filter((o) => o.ran)).toHaveLength(1);
    } finally {
      await second.end();
    }
    const done = await getSettlement(db, s.id);
    expect(done).toMatchObject({ status: 'completed', settled_count: 1200, chunks_completed: 8 });
    await expectSettledOnce(db, s.id, ids);
    expect(await doubleSettlements(db)).toEqual([]);
  });

  it('settles each payment once even if chunks run concurrently without the lease (overlapping leases)', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 900, { capturedAt: minutesAgo(30) });
    const s = await createSettlement(db, { chunkSize: 50 });
    // As if two holders overlapped: mark it running and drive chunks from eight loops at once.
    await db.query(`UPDATE settlements SET status = 'running', started_at = now() WHERE id = $1`, [s.id]);
    const second = createPool(t.url, 10);
    const chunks: { n: number; processed: number; checkpoint: string | null }[] = [];
    try {
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          for (;;) {
            const r = await runChunk(i % 2 ? second : db, s.id);
            if (r.processed > 0) chunks.push({ n: r.row.chunks_completed, processed: r.processed, checkpoint: r.row.last_payment_id });
            if (r.done) return;
          }
        }),
      );
    } finally {
      await second.end();
    }
    // Serialised on the batch row: the k-th committed chunk is exactly the k-th 50 payments.
    expect(chunks.sort((x, y) => x.n - y.n)).toEqual(Array.from({ length: 18 }, (_, k) => ({ n: k + 1, processed: 50, checkpoint: ids[50 * (k + 1) - 1] })));
    const done = await getSettlement(db, s.id);
    expect(done).toMatchObject({ status: 'completed', settled_count: 900, error_count: 0, chunks_completed: 18 });
    await expectSettledOnce(db, s.id, ids);
  });

  it('leaves a batch alone while another runner holds its lease', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 10, { capturedAt: minutesAgo(30) });
    const s = await createSettlement(db, { chunkSize: 100 });
    expect(await acquireLease(db, settlementLeaseName(s.id), 'other-worker', 60)).toBe(true);
    const busy = await runSettlementOnce(db, s.id);
    expect(busy.ran).toBe(false);
    expect(busy.row.status).toBe('pending');
    expect(await resumeUnfinishedSettlements(db)).toEqual({ found: 1, ran: 0, busy: 1 });
    await expectNotSettled(db, ids);
    expect(await releaseLease(db, settlementLeaseName(s.id), 'other-worker')).toBe(true);
    expect(await resumeUnfinishedSettlements(db)).toEqual({ found: 1, ran: 1, busy: 0 });
    await expectSettledOnce(db, s.id, ids);
  });
});

describe('per-item failures', () => {
  it('records a payment under manual review as an error and settles the rest of the chunk', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 10, { capturedAt: minutesAgo(30) });
    const flagged = ids[4]!;
    // The provider contradicted this captured payment (moveTo flags it); a human must look first.
    await db.query(`UPDATE payments SET reconciliation_status = 'manual_review' WHERE id = $1`, [flagged]);

    const s = await runSettlement(db, (await createSettlement(db, { chunkSize: 100 })).id);
    expect(s).toMatchObject({ status: 'completed', settled_count: 9, error_count: 1, chunks_completed: 1 });
    await expectSettledOnce(db, s.id, ids.filter((id) => id !== flagged));
    await expectNotSettled(db, [flagged]);
    const errors = await listSettlementErrors(db, s.id, { limit: 10 });
    expect(errors.data).toEqual([
      expect.objectContaining({ object: 'settlement_error', payment_id: flagged, merchant_id: merchant, code: 'PAYMENT_MANUAL_REVIEW' }),
    ]);
    expect((await getSettlementReport(db, s.id)).counts).toEqual({ settled: 9, errors: 1 });

    // Once resolved, the next batch settles it.
    await db.query(`UPDATE payments SET reconciliation_status = 'synced' WHERE id = $1`, [flagged]);
    const next = await runSettlement(db, (await createSettlement(db, {})).id);
    expect(next).toMatchObject({ settled_count: 1, error_count: 0 });
    await expectSettledOnce(db, next.id, [flagged]);
  });

  it('rolls back only the failing item when the database refuses its write halfway', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 12, { capturedAt: minutesAgo(30) });
    const victim = ids[6]!;
    // A real PostgreSQL error at the item's last write, after `transition` has already updated the
    // payment and written its history row and event: the savepoint must undo those three as well.
    await db.query(`
      CREATE FUNCTION test_refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'storage refused settlement item for %', NEW.payment_id USING ERRCODE = '23514';
      END $$`);
    await db.query(`CREATE TRIGGER test_refuse_item BEFORE INSERT ON settlement_items FOR EACH ROW
                    WHEN (NEW.payment_id = '${victim}') EXECUTE FUNCTION test_refuse_item()`);
    try {
      const s = await runSettlement(db, (await createSettlement(db, { chunkSize: 5 })).id);
      expect(s).toMatchObject({ status: 'completed', settled_count: 11, error_count: 1, chunks_completed: 3 });
      await expectSettledOnce(db, s.id, ids.filter((id) => id !== victim));
      await expectNotSettled(db, [victim]);
      const victimRow = await db.query('SELECT version, event_sequence FROM payments WHERE id = $1', [victim]);
      expect(victimRow.rows[0]).toEqual({ version: 3, event_sequence: 0 });
      const errors = await listSettlementErrors(db, s.id, { limit: 10 });
      expect(errors.data).toHaveLength(1);
      expect(errors.data[0]).toMatchObject({ payment_id: victim, code: 'DATABASE_ERROR' });
      expect(String(errors.data[0]!.error)).toMatch(/storage refused settlement item for pay_.*SQLSTATE 23514/);
    } finally {
      await db.query('DROP TRIGGER test_refuse_item ON settlement_items');
      await db.query('DROP FUNCTION test_refuse_item()');
    }
  });
});

describe('chunk failures', () => {
  // Fails the checkpoint write of a chunk (the last statement of its transaction) while the
  // sequence allows, like a connection lost at the end of a chunk. nextval() is not rolled back.
  async function failCheckpointWrites(times: number): Promise<() => Promise<void>> {
    await db.query(`CREATE SEQUENCE test_checkpoint_faults`);
    await db.query(`
      CREATE FUNCTION test_fail_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('test_checkpoint_faults') <= ${times} THEN
          RAISE EXCEPTION 'checkpoint write failed (injected)';
        END IF;
        RETURN NEW;
      END $$`);
    await db.query(`CREATE TRIGGER test_fail_checkpoint BEFORE UPDATE ON settlements FOR EACH ROW
                    WHEN (NEW.chunks_completed IS DISTINCT FROM OLD.chunks_completed OR NEW.status = 'completed')
                    EXECUTE FUNCTION test_fail_checkpoint()`);
    return async () => {
      await db.query('DROP TRIGGER test_fail_checkpoint ON settlements');
      await db.query('DROP FUNCTION test_fail_checkpoint()');
      await db.query('DROP SEQUENCE test_checkpoint_faults');
    };
  }

  it('retries a failed chunk, whose items were rolled back with it, and settles everything once', async () => {
    await settleLeftovers();
    const ids = await seedPayments(db, merchant, 30, { capturedAt: minutesAgo(30) });
    const s = await createSettlement(db, { chunkSize: 10 });
    const cleanup = await failCheckpointWrites(2);
    try {
      const { log, lines } = captureLogger();
      const done = await runSettlement(db, s.id, { chunkRetries: 3, retryDelayMs: 1, log });
      expect(done).toMatchObject({ status: 'completed', settled_count: 30, chunks_completed: 3, chunk_failures: 2, error: null });
      expect(lines.filter((l) => l.msg === 'settlement chunk failed; retrying')).toHaveLength(2);
    } finally {
      await cleanup();
    }
    await expectSettledOnce(db, s.id, ids);
  });

  it('marks the batch failed after the retries run out, then a re-run resumes it from its checkpoint', async () => {
    await settleLeftovers();
    const first = await seedPayments(db, merchant, 10, { capturedAt: minutesAgo(30) });
    const rest = await seedPayments(db, merchant, 15, { capturedAt: minutesAgo(30) });
    const s = await createSettlement(db, { chunkSize: 10 });
    // The first chunk commits, then the second fails 1 + 2 times.
    await db.query(`UPDATE settlements SET status = 'running' WHERE id = $1`, [s.id]);
    expect((await runChunk(db, s.id)).processed).toBe(10);
    const cleanup = await failCheckpointWrites(3);
    try {
      const failed = await runSettlement(db, s.id, { chunkRetries: 2, retryDelayMs: 1 });
      expect(failed).toMatchObject({ status: 'failed', settled_count: 10, chunks_completed: 1, chunk_failures: 3, last_payment_id: first[9] });
      expect(failed.error).toMatch(/checkpoint write failed/);
      await expectSettledOnce(db, s.id, first);
      await expectNotSettled(db, rest);
      // A failed batch is not resumed by the sweep, only by an explicit re-run.
      expect(await resumeUnfinishedSettlements(db)).toEqual({ found: 0, ran: 0, busy: 0 });
    } finally {
      await cleanup();
    }
    const resumed = await runSettlement(db, s.id, { retryDelayMs: 1 });
    expect(resumed).toMatchObject({ status: 'completed', settled_count: 25, chunks_completed: 3, error: null });
    await expectSettledOnce(db, s.id, [...first, ...rest]);
  });
});

describe('the report', () => {
  it('sums gross, refunded and net per currency, for the batch and per merchant', async () => {
    await settleLeftovers();
    const other = await seedMerchant(db, 'Other Merchant');
    const idle = await seedMerchant(db, 'Idle Merchant');
    const at = minutesAgo(30);
    await seedPayments(db, merchant, 3, { capturedAt: at, currency: 'INR', amount: 150_000 });
    await seedPayments(db, merchant, 2, { capturedAt: at, currency: 'INR', amount: 20_000, refunded: 5_000 });
    await seedPayments(db, merchant, 1, { capturedAt: at, currency: 'USD', amount: 999 });
    await seedPayments(db, other, 4, { capturedAt: at, currency: 'USD', amount: 1_000, refunded: 250 });
    await seedPayments(db, other, 2, { capturedAt: at, currency: 'JPY', amount: 5_000 });
    const [held] = await seedPayments(db, other, 1, { capturedAt: at, currency: 'JPY', amount: 7 });
    await db.query(`UPDATE payments SET reconciliation_status = 'manual_review' WHERE id = $1`, [held]);

    const s = await runSettlement(db, (await createSettlement(db, { chunkSize: 4 })).id);
    const report = await getSettlementReport(db, s.id);
    expect(report).toMatchObject({
      id: s.id,
      object: 'settlement',
      status: 'completed',
      cutoff: s.cutoff.toISOString(),
      counts: { settled: 12, errors: 1 },
      chunk_size: 4,
      checkpoint: s.last_payment_id,
      error: null,
    });
    expect(report.totals).toEqual([
      { currency: 'INR', gross: 490_000, refunded: 10_000, net: 480_000 },
      { currency: 'JPY', gross: 10_000, refunded: 0, net: 10_000 },
      { currency: 'USD', gross: 4_999, refunded: 1_000, net: 3_999 },
    ]);

    const mine = await getSettlementReport(db, s.id, { merchantId: merchant });
    expect(mine).toMatchObject({ merchant_id: merchant, counts: { settled: 6, errors: 0 } });
    expect(mine.totals).toEqual([
      { currency: 'INR', gross: 490_000, refunded: 10_000, net: 480_000 },
      { currency: 'USD', gross: 999, refunded: 0, net: 999 },
    ]);
    expect(mine).not.toHaveProperty('checkpoint');
    expect(mine).not.toHaveProperty('error');

    const theirs = await getSettlementReport(db, s.id, { merchantId: other });
    expect(theirs.counts).toEqual({ settled: 6, errors: 1 });
    expect(theirs.totals).toEqual([
      { currency: 'JPY', gross: 10_000, refunded: 0, net: 10_000 },
      { currency: 'USD', gross: 4_000, refunded: 1_000, net: 3_000 },
    ]);
    await expect(getSettlementReport(db, s.id, { merchantId: idle })).rejects.toMatchObject({ code: 'RESOURCE_NOT_FOUND' });
  });
});
