/**
 * The job engine: pg-boss on the same PostgreSQL. Jobs are inserted in the caller's transaction
 * (`inTx`), so a job exists exactly when the row it works on does.
 */
import pg from 'pg';
import PgBoss from 'pg-boss';
import type { Tx } from '../db/pool.js';

export const QUEUE = {
  delivery: 'webhook-delivery',
  housekeeping: 'housekeeping',
} as const;

export interface BossOptions {
  connectionString: string;
  /** Only worker processes supervise (expire stuck jobs, run schedules). */
  worker: boolean;
  maintenanceIntervalSeconds?: number;
  /** How long a delivery job may run before pg-boss hands it to another worker. */
  deliveryExpireSeconds: number;
  poolMax?: number;
}

export async function startBoss(opts: BossOptions): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: opts.connectionString,
    max: opts.poolMax ?? (opts.worker ? 4 : 2),
    supervise: opts.worker,
    schedule: opts.worker,
    migrate: true,
    maintenanceIntervalSeconds: opts.maintenanceIntervalSeconds ?? 30,
    application_name: opts.worker ? 'switchyard-worker-boss' : 'switchyard-api-boss',
  });
  // pg-boss reports background errors as events; an unhandled 'error' event would kill the process.
  boss.on('error', () => undefined);
  await withSetupLock(opts.connectionString, () => setUp(boss, opts));
  return boss;
}

const BOSS_SETUP_LOCK = 7_340_002;

/**
 * Processes starting together on a fresh database would race pg-boss's schema install, queue
 * creation and schedules into deadlocks: such setup runs one process at a time, under a session
 * advisory lock.
 */
export async function withSetupLock<T>(connectionString: string, fn: () => Promise<T>): Promise<T> {
  const lock = new pg.Client({ connectionString, application_name: 'switchyard-boss-setup' });
  lock.on('error', () => undefined);
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [BOSS_SETUP_LOCK]);
    return await fn();
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [BOSS_SETUP_LOCK]).catch(() => undefined);
    await lock.end().catch(() => undefined);
  }
}

async function setUp(boss: PgBoss, opts: BossOptions): Promise<void> {
  await boss.start();
  const delivery = {
    name: QUEUE.delivery,
    policy: 'standard' as const,
    // Our own retry schedule lives in the delivery row; these retries only cover a worker that
    // died mid-job (the job expires and is picked up again).
    retryLimit: 1000,
    retryDelay: 1,
    expireInSeconds: opts.deliveryExpireSeconds,
  };
  await boss.createQueue(QUEUE.delivery, delivery);
  // createQueue keeps the options of an existing queue; configuration changes must still apply.
  if (opts.worker) await boss.updateQueue(QUEUE.delivery, delivery);
  await boss.createQueue(QUEUE.housekeeping, { name: QUEUE.housekeeping, policy: 'singleton', retryLimit: 3, expireInSeconds: 300 });
}

export function inTx(tx: Tx): PgBoss.Db {
  return { executeSql: (text, values) => tx.query(text, values) };
}

export async function enqueueDelivery(boss: PgBoss, tx: Tx, deliveryId: string, startAfter?: Date): Promise<void> {
  await boss.send(QUEUE.delivery, { delivery_id: deliveryId }, { db: inTx(tx), ...(startAfter ? { startAfter } : {}) });
}

export type { PgBoss };
