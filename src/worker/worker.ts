/**
 * The worker process: the outbox relay (woken by NOTIFY on commit, with a slow poll as a safety
 * net), webhook delivery jobs, and housekeeping on a schedule. Any number may run on one database.
 */
import pg from 'pg';
import type { Config } from '../config/config.js';
import type { Db } from '../db/pool.js';
import type { Logger } from '../lib/logger.js';
import { DEFAULT_DROPPABLE_TYPES } from '../domain/event-filter.js';
import { dispatchBatch } from '../webhooks/dispatch.js';
import { OutcomeWriter, createWebhookAgent, deliverBatch } from '../webhooks/deliver.js';
import { parseSchedule } from '../webhooks/retry-schedule.js';
import { QUEUE, startBoss, withSetupLock, type PgBoss } from './queue.js';
import { runHousekeeping } from './housekeeping.js';
import { queuePartition, queueVacuum } from './queue-vacuum.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import { attemptClaimSeconds, buildConnectors, closeConnectors, slowestCallSeconds } from '../runtime/connectors.js';
import { reconcileDue } from '../reconciliation/sweep.js';
import { reprocessDueEvents } from '../inbound/receive.js';
import { registerSettlementJobs } from '../settlement/jobs.js';

export interface WorkerHandle {
  boss: PgBoss;
  /** Runs the relay now (tests, and after an API-side change). */
  kick(): void;
  /** Resolves when no vacuum of the delivery queue is running (tests). */
  queueVacuumIdle(): Promise<void>;
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** Share the API's connectors (and circuit breakers) when both run in one process. */
  connectors?: ConnectorRegistry;
}

/** Runs `task` every `intervalMs`, never two at once; errors are logged, not thrown. */
function every(intervalMs: number, log: Logger, name: string, task: () => Promise<unknown>) {
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = task()
      .then((r) => {
        if (r && typeof r === 'object' && Object.values(r).some((v) => typeof v === 'number' && v > 0)) log.info({ job: name, ...r }, 'job');
      })
      .catch((err: unknown) => log.warn({ job: name, err: (err as Error).message }, 'job failed; will run again'))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, intervalMs);
  tick();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

export async function startWorker(config: Config, db: Db, databaseUrl: string, log: Logger, opts: WorkerOptions = {}): Promise<WorkerHandle> {
  const ownConnectors = opts.connectors ? null : buildConnectors(config, config.MOCK_PROVIDER_URL ?? `http://127.0.0.1:${config.PORT}/mock-provider`);
  const connectors = opts.connectors ?? ownConnectors!;
  const boss = await startBoss({
    connectionString: databaseUrl,
    worker: true,
    maintenanceIntervalSeconds: config.WORKER_MAINTENANCE_SECONDS,
    deliveryExpireSeconds: config.WEBHOOK_JOB_EXPIRE_SECONDS,
  });
  const agent = createWebhookAgent(config.SWITCHYARD_MODE, config.WEBHOOK_TIMEOUT_MS);
  const delivery = {
    mode: config.SWITCHYARD_MODE,
    schedule: parseSchedule(config.WEBHOOK_RETRY_SCHEDULE),
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    leaseSeconds: config.WEBHOOK_LEASE_SECONDS,
  };
  const droppable = config.WEBHOOK_DROPPABLE_TYPES.split(',').map((t) => t.trim()).filter(Boolean);
  const dispatchSettings = {
    backlogThreshold: config.WEBHOOK_BACKLOG_THRESHOLD,
    droppableTypes: droppable.length > 0 ? droppable : DEFAULT_DROPPABLE_TYPES,
    batchSize: config.OUTBOX_BATCH_SIZE,
  };

  // One outcome writer for the process: outcomes finishing together across all batches share a commit.
  const outcomes = new OutcomeWriter(db, boss);
  const partition = config.WEBHOOK_QUEUE_VACUUM_JOBS > 0 ? await queuePartition(db, QUEUE.delivery) : null;
  const vacuum = partition ? queueVacuum(db, partition, config.WEBHOOK_QUEUE_VACUUM_JOBS, log) : null;
  const workerIds: string[] = [];
  for (let i = 0; i < config.WEBHOOK_CONCURRENCY; i++) {
    let id = '';
    workerIds.push(
      (id = await boss.work<{ delivery_id: string }>(QUEUE.delivery, { batchSize: config.WEBHOOK_BATCH_SIZE, pollingIntervalSeconds: config.WEBHOOK_POLL_MS / 1000 }, async (jobs) => {
        // A full batch means more are waiting: fetch again at once instead of sleeping a poll interval.
        if (jobs.length === config.WEBHOOK_BATCH_SIZE) setImmediate(() => boss.notifyWorker(id));
        let results;
        try {
          results = await deliverBatch(db, boss, agent, delivery, jobs.map((job) => job.data.delivery_id), outcomes);
        } catch (err) {
          // Nothing was leased or sent: pg-boss fails the batch's jobs and offers them again.
          log.warn({ job: 'webhook-delivery', jobs: jobs.length, err: (err as Error).message }, 'delivery batch could not be leased; its jobs will run again');
          throw err;
        }
        vacuum?.finished(jobs.length);
        for (const job of jobs) {
          const r = results.get(job.data.delivery_id)!;
          // One delivery's trouble must not fail its batch-mates; its lease lapses and the
          // follow-up job or a replay sends it.
          if (r.error) log.warn({ job: 'webhook-delivery', delivery_id: job.data.delivery_id, err: r.error.message }, 'delivery attempt failed');
          else log.info({ job: 'webhook-delivery', delivery_id: job.data.delivery_id, outcome: r.outcome, ms: r.ms }, 'job');
        }
      })),
    );
  }

  // The relay: one run at a time per process, re-run while there was work or a wake-up arrived.
  let stopping = false;
  let running = false;
  let again = false;
  const relay = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const r = await dispatchBatch(db, boss, dispatchSettings);
        if (r.deliveries > 0) for (const id of workerIds) boss.notifyWorker(id);
        if (r.events > 0) log.info({ job: 'outbox-relay', ...r }, 'job');
        if (r.events === dispatchSettings.batchSize) again = true;
      } while (again && !stopping);
    } catch (err) {
      log.warn({ job: 'outbox-relay', err: (err as Error).message }, 'relay failed; will retry');
    } finally {
      running = false;
    }
  };
  const kick = () => void relay();

  const listener = new pg.Client({ connectionString: databaseUrl, application_name: 'switchyard-outbox-listener' });
  listener.on('error', (err) => log.warn({ err: err.message }, 'outbox listener lost its connection; polling until it is back'));
  listener.on('notification', kick);
  const listen = async () => {
    await listener.connect();
    await listener.query('LISTEN switchyard_outbox');
  };
  await listen();
  const poll = setInterval(kick, config.OUTBOX_POLL_MS);
  kick();

  const reconciliation = every(config.RECONCILE_INTERVAL_MS, log, 'reconciliation', () =>
    reconcileDue(
      { db, connectors, claimSeconds: attemptClaimSeconds(config) },
      {
        thresholdSeconds: Math.max(config.RECONCILE_THRESHOLD_SECONDS, slowestCallSeconds(config)),
        asyncThresholdSeconds: config.RECONCILE_ASYNC_THRESHOLD_SECONDS,
        maxBackoffSeconds: config.RECONCILE_MAX_BACKOFF_SECONDS,
        batchSize: 50,
        claimSeconds: attemptClaimSeconds(config),
      },
    ),
  );
  const reprocessing = every(config.RECONCILE_INTERVAL_MS, log, 'provider-event-reprocess', () => reprocessDueEvents(db));

  await boss.work(QUEUE.housekeeping, async () => {
    const r = await runHousekeeping(db);
    log.info({ job: 'housekeeping', ...r }, 'job');
  });
  const settlement = await withSetupLock(databaseUrl, async () => {
    await boss.schedule(QUEUE.housekeeping, config.HOUSEKEEPING_CRON);
    return registerSettlementJobs(boss, db, log, {
      cron: config.SETTLEMENT_CRON,
      resumeCron: config.SETTLEMENT_RESUME_CRON,
      tz: config.SETTLEMENT_TZ,
      chunkSize: config.SETTLEMENT_CHUNK_SIZE,
      chunkRetries: config.SETTLEMENT_CHUNK_RETRIES,
      retryDelayMs: config.SETTLEMENT_RETRY_DELAY_MS,
      leaseSeconds: config.SETTLEMENT_LEASE_SECONDS,
    });
  });

  return {
    boss,
    kick,
    queueVacuumIdle: () => vacuum?.idle() ?? Promise.resolve(),
    async stop() {
      stopping = true;
      clearInterval(poll);
      await reconciliation.stop();
      await reprocessing.stop();
      await settlement.stop();
      await listener.end().catch(() => undefined);
      await boss.stop({ graceful: true, timeout: 30_000, wait: true });
      await vacuum?.idle();
      while (running) await new Promise((r) => setTimeout(r, 10));
      await agent.close();
      if (ownConnectors) await closeConnectors(ownConnectors);
    },
  };
}
