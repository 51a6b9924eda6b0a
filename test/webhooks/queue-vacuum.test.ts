/**
 * The worker vacuums the delivery queue's pg-boss job table after WEBHOOK_QUEUE_VACUUM_JOBS
 * finished jobs (src/worker/queue-vacuum.ts): dead versions of fetched and completed jobs would
 * otherwise slow every job fetch until autovacuum comes by.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE } from '../../src/worker/queue.js';
import { queuePartition } from '../../src/worker/queue-vacuum.js';
import { call, createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY, HookReceiver, body } from '../ops/helpers.js';

let h: Harness;
let receiver: HookReceiver;

beforeAll(async () => {
  h = await startHarness({ WEBHOOK_QUEUE_VACUUM_JOBS: '10' }, { worker: true });
  receiver = await HookReceiver.start(() => 200);
});
afterAll(async () => {
  await receiver?.close();
  await h?.close();
});

async function vacuums(table: string): Promise<number> {
  const r = await h.database.db.query<{ n: number }>(
    `SELECT COALESCE(sum(vacuum_count), 0)::int AS n FROM pg_stat_user_tables WHERE relid = $1::regclass`,
    [table],
  );
  return r.rows[0]!.n;
}

describe('vacuuming the delivery queue', () => {
  it('runs VACUUM on the queue partition once enough deliveries have finished, and deliveries go on', async () => {
    const table = (await queuePartition(h.database.db, QUEUE.delivery))!;
    expect(table).toMatch(/^pgboss\./);
    const before = await vacuums(table);

    const m = await createMerchant(h, HIGH_VELOCITY);
    const ep = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url: `${receiver.url}/hooks`, enabled_events: ['payment.captured'] } });
    expect(ep.status, JSON.stringify(ep.body)).toBe(201);
    for (let i = 0; i < 12; i++) {
      const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    h.worker!.kick();
    await waitFor(async () => (receiver.received.length >= 12 ? true : undefined), 20_000, '12 deliveries');
    await waitFor(async () => ((await vacuums(table)) > before ? true : undefined), 20_000, 'a vacuum of the queue partition');
    await h.worker!.queueVacuumIdle();
    expect(receiver.received).toHaveLength(12);
  });
});
