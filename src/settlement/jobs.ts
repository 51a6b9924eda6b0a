/**
 * Settlement on the job engine: a daily batch (cron, default 02:00 UTC) that settles everything
 * captured before the moment it runs, and a frequent resume sweep that finishes batches left
 * unfinished by a process that died (or started by the API, which does not supervise them).
 * pg-boss runs each scheduled tick once across all workers; the batch lease makes a duplicate
 * delivery of a job harmless.
 */
import type { Db } from '../db/pool.js';
import type { Logger } from '../lib/logger.js';
import type { PgBoss } from '../worker/queue.js';
import { DEFAULT_RUN_OPTIONS, resumeUnfinishedSettlements, runSettlementOnce, type RunOptions } from './run.js';
import { createSettlement, DEFAULT_CHUNK_SIZE } from './store.js';

export const SETTLEMENT_QUEUE = {
  daily: 'settlement',
  resume: 'settlement-resume',
} as const;

export interface SettlementSettings {
  /** SETTLEMENT_CRON: when the scheduled batch runs. */
  cron: string;
  /** SETTLEMENT_RESUME_CRON: how often unfinished batches are looked for. */
  resumeCron: string;
  /** SETTLEMENT_TZ: time zone of both crons. */
  tz: string;
  /** SETTLEMENT_CHUNK_SIZE */
  chunkSize: number;
  /** SETTLEMENT_CHUNK_RETRIES */
  chunkRetries: number;
  /** SETTLEMENT_RETRY_DELAY_MS */
  retryDelayMs: number;
  /** SETTLEMENT_LEASE_SECONDS */
  leaseSeconds: number;
}

export const DEFAULT_SETTLEMENT_SETTINGS: SettlementSettings = {
  cron: '0 2 * * *',
  resumeCron: '*/5 * * * *',
  tz: 'UTC',
  chunkSize: DEFAULT_CHUNK_SIZE,
  chunkRetries: DEFAULT_RUN_OPTIONS.chunkRetries,
  retryDelayMs: DEFAULT_RUN_OPTIONS.retryDelayMs,
  leaseSeconds: DEFAULT_RUN_OPTIONS.leaseSeconds,
};

export interface SettlementJobs {
  /** Asks running batches to stop after their current chunk and waits for them; call before boss.stop(). */
  stop(): Promise<void>;
}

/**
 * Creates the queues, the schedules and the handlers. Also queues one resume sweep at once, so a
 * batch interrupted by the previous worker's death is finished when a worker starts.
 */
export async function registerSettlementJobs(
  boss: PgBoss,
  db: Db,
  log: Logger,
  settings: Partial<SettlementSettings> = {},
): Promise<SettlementJobs> {
  const s = { ...DEFAULT_SETTLEMENT_SETTINGS, ...settings };
  const controller = new AbortController();
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };
  const runOptions: RunOptions = {
    chunkRetries: s.chunkRetries,
    retryDelayMs: s.retryDelayMs,
    leaseSeconds: s.leaseSeconds,
    signal: controller.signal,
    log,
  };
  // A batch can outlast a job's expiry; an expired job that is retried finds the lease held and the
  // same batch (by job id), and leaves it to its runner.
  const queue = { policy: 'singleton' as const, retryLimit: 3, retryDelay: 60, retryBackoff: true, expireInSeconds: 6 * 3600 };
  await boss.createQueue(SETTLEMENT_QUEUE.daily, { name: SETTLEMENT_QUEUE.daily, ...queue });
  await boss.createQueue(SETTLEMENT_QUEUE.resume, { name: SETTLEMENT_QUEUE.resume, ...queue });

  await boss.work(SETTLEMENT_QUEUE.daily, async (jobs) => {
    for (const job of jobs) {
      if (controller.signal.aborted) return;
      await track(
        (async () => {
          const batch = await createSettlement(db, { chunkSize: s.chunkSize, jobId: job.id });
          const { row, ran } = await runSettlementOnce(db, batch.id, runOptions);
          log.info(
            { job: 'settlement', settlement_id: row.id, status: row.status, ran, settled: row.settled_count, errors: row.error_count },
            'job',
          );
        })(),
      );
    }
  });
  await boss.work(SETTLEMENT_QUEUE.resume, async () => {
    if (controller.signal.aborted) return;
    const r = await track(resumeUnfinishedSettlements(db, runOptions));
    if (r.found > 0) log.info({ job: 'settlement-resume', ...r }, 'job');
  });
  await boss.schedule(SETTLEMENT_QUEUE.daily, s.cron, {}, { tz: s.tz });
  await boss.schedule(SETTLEMENT_QUEUE.resume, s.resumeCron, {}, { tz: s.tz });
  await boss.send(SETTLEMENT_QUEUE.resume, {});

  return {
    async stop() {
      controller.abort();
      await Promise.allSettled([...inFlight]);
    },
  };
}
