/**
 * A worker process killed with SIGKILL while a delivery is in flight (SPEC §16 "a process killed
 * mid-delivery"): the receiver holds the request open, the worker dies, a new worker process
 * takes the job over once pg-boss expires it, and the delivery still completes — at least once,
 * and never again after it succeeded.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';
import type { Spawned } from '../support/process.js';
import { HIGH_VELOCITY, Receiver, createPayment, kill, paymentEvents, registerEndpoint, startWorkerProcess, type Json } from './helpers.js';

// pg-boss expires a job that has been active for 3 s and re-offers it 1 s later; a worker's lease
// on the delivery row is 2 s by default here, longer than its 1.5 s HTTP timeout.
const ENV = {
  WEBHOOK_JOB_EXPIRE_SECONDS: '3',
  WEBHOOK_LEASE_SECONDS: '2',
  WEBHOOK_TIMEOUT_MS: '1500',
  WORKER_MAINTENANCE_SECONDS: '1',
  WEBHOOK_RETRY_SCHEDULE: '0,1,1,1',
};

let h: Harness;
const workers: Spawned[] = [];
const receivers: Receiver[] = [];

beforeAll(async () => {
  // The API creates the delivery queue first, so it must agree on the job expiry.
  h = await startHarness(ENV);
});
// Each scenario starts from no worker at all: a survivor of the previous one would compete for the job.
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => kill(w)));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => kill(w)));
  await Promise.all(receivers.map((r) => r.close()));
  await h?.close();
});

async function worker(env: Record<string, string> = {}): Promise<Spawned> {
  const w = await startWorkerProcess(h, { ...ENV, ...env });
  workers.push(w);
  return w;
}

/** No job for the delivery is waiting or running any more. */
async function noJobLeft(deliveryId: string): Promise<true | undefined> {
  const r = await h.database.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'webhook-delivery' AND data->>'delivery_id' = $1 AND state < 'completed'`,
    [deliveryId],
  );
  return r.rows[0]!.n === 0 ? true : undefined;
}

async function scenario(leaseSeconds: string): Promise<{ first: Spawned; d: Json; r: Receiver; eventId: string }> {
  const m = await createMerchant(h, HIGH_VELOCITY);
  // The first request is held open (the worker is killed while it waits); later ones succeed.
  const r = await Receiver.start((req) => (req.nth === 1 ? 'hang' : { status: 200, body: 'ok' }));
  receivers.push(r);
  await registerEndpoint(h, m.key, r.url, ['payment.captured']);
  expect(workers).toEqual([]);
  const first = await worker({ WEBHOOK_LEASE_SECONDS: leaseSeconds });
  const p = await createPayment(h, m.key);
  const ev = (await paymentEvents(h, m.key, p.id as string)).find((e) => e.type === 'payment.captured')!;
  const eventId = ev.id as string;
  await waitFor(async () => (r.heldCount() === 1 && r.count(eventId) === 1 ? true : undefined), 20_000, 'the delivery to reach the receiver');
  await kill(first);
  expect(first.child.signalCode).toBe('SIGKILL');

  // The row is left as the dead worker had it: leased, pending, no attempt recorded.
  const row = (await h.database.db.query<{ id: string; status: string; attempts: number; owner: string | null }>('SELECT id, status, attempts, owner FROM webhook_deliveries WHERE event_id = $1', [eventId])).rows;
  expect(row).toHaveLength(1);
  expect(row[0]).toMatchObject({ status: 'pending', attempts: 0 });
  expect(row[0]!.owner).not.toBeNull();
  return { first, d: row[0]!, r, eventId };
}

describe('a worker killed mid-delivery', () => {
  it('a new worker completes the delivery after pg-boss expires the job', async () => {
    const { d, r, eventId } = await scenario('2');
    const killedAt = Date.now();
    await worker();
    await waitFor(
      async () => {
        const x = (await h.database.db.query<{ status: string }>('SELECT status FROM webhook_deliveries WHERE id = $1', [d.id])).rows[0]!;
        return x.status === 'succeeded' ? true : undefined;
      },
      30_000,
      'the delivery to succeed',
    );
    console.log(`[webhooks] worker crash: re-delivered ${r.received.at(-1)!.receivedAt - killedAt} ms after the kill`);
    // At least once: the receiver saw the webhook-id twice, the second answered 200.
    expect(r.count(eventId)).toBe(2);
    expect(r.answers.filter((a) => a.id === eventId).map((a) => a.status)).toEqual([200]);
    expect(r.received.every((x) => x.id === eventId)).toBe(true);

    // After success nothing is sent again: no job is left for it, and the count stays.
    await waitFor(() => noJobLeft(d.id as string), 20_000, 'no job left for the delivery');
    expect(r.count(eventId)).toBe(2);
    const row = (await h.database.db.query<{ attempts: number; status: string; last_status_code: number; owner: string | null; locked_until: Date | null }>('SELECT * FROM webhook_deliveries WHERE id = $1', [d.id])).rows[0]!;
    expect(row).toMatchObject({ status: 'succeeded', attempts: 1, last_status_code: 200, owner: null, locked_until: null });
    const attempts = (await h.database.db.query<{ status_code: number }>('SELECT status_code FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY id', [d.id])).rows;
    expect(attempts.map((a) => a.status_code)).toEqual([200]);
  });

  it('also when the dead worker\'s lease outlives the job: the delivery is taken up once the lease lapses', async () => {
    // The killed worker leased the row for 8 s; pg-boss re-offers the job after ~4 s, while the
    // lease still holds. That job must not just give up, or the delivery would stay pending forever.
    const { d, r, eventId } = await scenario('8');
    await worker({ WEBHOOK_LEASE_SECONDS: '8' });
    await waitFor(
      async () => {
        const x = (await h.database.db.query<{ status: string }>('SELECT status FROM webhook_deliveries WHERE id = $1', [d.id])).rows[0]!;
        return x.status === 'succeeded' ? true : undefined;
      },
      40_000,
      'the delivery to succeed after the lease lapsed',
    );
    expect(r.count(eventId)).toBe(2);
    await waitFor(() => noJobLeft(d.id as string), 20_000, 'no job left for the delivery');
    expect(r.count(eventId)).toBe(2);
    expect(r.answers.filter((a) => a.id === eventId).map((a) => a.status)).toEqual([200]);
    // Not before the dead worker's 8 s lease was over.
    const [held, resent] = r.of(eventId);
    expect(resent!.receivedAt - held!.receivedAt).toBeGreaterThanOrEqual(7_500);
    const row = (await h.database.db.query<{ attempts: number; owner: string | null }>('SELECT attempts, owner FROM webhook_deliveries WHERE id = $1', [d.id])).rows[0]!;
    expect(row).toEqual({ attempts: 1, owner: null });
  });
});
