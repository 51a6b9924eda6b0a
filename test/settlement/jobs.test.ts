/**
 * Settlement on pg-boss: the daily schedule, the job that creates and runs a batch, and the resume
 * sweep that a starting worker runs at once to finish a batch nobody is running.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerSettlementJobs, SETTLEMENT_QUEUE, type SettlementJobs } from '../../src/settlement/jobs.js';
import { createSettlement, getSettlement, type SettlementRow } from '../../src/settlement/store.js';
import { startBoss, type PgBoss } from '../../src/worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { waitFor } from '../support/harness.js';
import { captureLogger, expectSettledOnce, minutesAgo, seedMerchant, seedPayments } from './helpers.js';

let t: TestDatabase;
let boss: PgBoss | undefined;
let jobs: SettlementJobs | undefined;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await jobs?.stop();
  await boss?.stop({ graceful: false, wait: true });
  await t?.drop();
});

describe('registerSettlementJobs', () => {
  it('resumes an orphaned batch at start, schedules the daily batch, and runs it as a job', async () => {
    const db = t.db;
    const merchant = await seedMerchant(db);
    // A batch started by an API process that died before running it.
    const orphanIds = await seedPayments(db, merchant, 5, { capturedAt: minutesAgo(30) });
    const orphan = await createSettlement(db, { chunkSize: 2 });

    boss = await startBoss({ connectionString: t.url, worker: true, deliveryExpireSeconds: 60 });
    const { log, lines } = captureLogger('info');
    jobs = await registerSettlementJobs(boss, db, log, { chunkSize: 3, retryDelayMs: 10 });

    const resumed = await waitFor(async () => {
      const s = await getSettlement(db, orphan.id);
      return s.status === 'completed' ? s : undefined;
    }, 30_000, 'the orphaned batch to be resumed');
    expect(resumed).toMatchObject({ settled_count: 5, chunks_completed: 3 });
    await expectSettledOnce(db, orphan.id, orphanIds);
    await waitFor(async () => (lines.some((l) => l.job === 'settlement-resume' && l.ran === 1) ? true : undefined), 10_000, 'the resume job log line');

    const schedules = (await boss.getSchedules()) as { name: string; cron: string; timezone: string }[];
    expect(schedules.map((s) => [s.name, s.cron, s.timezone]).sort()).toEqual([
      [SETTLEMENT_QUEUE.daily, '0 2 * * *', 'UTC'],
      [SETTLEMENT_QUEUE.resume, '*/5 * * * *', 'UTC'],
    ]);

    // The daily job (as the schedule sends it): a new batch with cutoff = now, run to the end.
    const dailyIds = await seedPayments(db, merchant, 4, { capturedAt: minutesAgo(1) });
    const jobId = await boss.send(SETTLEMENT_QUEUE.daily, {});
    expect(jobId).toBeTruthy();
    const daily = await waitFor(async () => {
      const r = await db.query<SettlementRow>(`SELECT * FROM settlements WHERE job_id = $1 AND status = 'completed'`, [jobId]);
      return r.rows[0];
    }, 30_000, 'the daily batch');
    expect(daily).toMatchObject({ chunk_size: 3, settled_count: 4, error_count: 0, chunks_completed: 2 });
    await expectSettledOnce(db, daily.id, dailyIds);
    await waitFor(async () => (lines.some((l) => l.job === 'settlement' && l.settlement_id === daily.id && l.ran === true) ? true : undefined), 10_000, 'the job log line');
    const all = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM settlements');
    expect(all.rows[0]!.n).toBe(2);
  });
});
