/**
 * Many workers on one database (SPEC §1, §12): two `switchyard worker` processes and the
 * in-process API share one PostgreSQL. 10,000 events are written straight into the outbox; every
 * one must be fanned out and delivered, no webhook-id may ever be in flight twice at once, and every
 * delivery row must end `succeeded`. One event in fifty fails its first attempt, so retries (new
 * jobs, possibly on the other worker) are part of the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signalOutbox } from '../../src/db/pool.js';
import { createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';
import type { Spawned } from '../support/process.js';
import { HIGH_VELOCITY, Receiver, kill, registerEndpoint, startWorkerProcess } from './helpers.js';

const EVENTS = 10_000;
const CHUNKS = 4;
const TYPES = ['payment.captured', 'payment.authorized', 'refund.created', 'refund.succeeded'];

let h: Harness;
const workers: Spawned[] = [];
let receiver: Receiver | undefined;

const failsFirst = (id: string) => Number(id.slice(-6)) % 50 === 0;

beforeAll(async () => {
  h = await startHarness({ WEBHOOK_RETRY_SCHEDULE: '0,1,1,1,1' });
});
afterAll(async () => {
  await Promise.all(workers.map((w) => kill(w)));
  await receiver?.close();
  await h?.close();
});

describe('two worker processes, one database', () => {
  it(`delivers ${EVENTS} events exactly as expected: all of them, never one twice at once, all succeeded`, { timeout: 100_000 }, async () => {
    const started = Date.now();
    const m = await createMerchant(h, HIGH_VELOCITY);
    receiver = await Receiver.start((req) => (failsFirst(req.id) && req.nth === 1 ? { status: 500, body: 'try again' } : { status: 200 }));
    const ep = await registerEndpoint(h, m.key, receiver.url, ['*']);

    const env = { WEBHOOK_RETRY_SCHEDULE: '0,1,1,1,1', LOG_LEVEL: 'info', WEBHOOK_CONCURRENCY: '4', WEBHOOK_BATCH_SIZE: '25' };
    workers.push(...(await Promise.all([startWorkerProcess(h, env), startWorkerProcess(h, env)])));

    const t0 = Date.now();
    const per = EVENTS / CHUNKS;
    for (let c = 0; c < CHUNKS; c++) {
      await h.database.db.query(
        `INSERT INTO events (id, merchant_id, payment_id, type, sequence, previous_status, correlation_id, data)
         SELECT 'evt_bulk_' || lpad(g::text, 6, '0'), $1, NULL, ($4::text[])[1 + g % 4], g, 'processing', 'req_bulk',
                jsonb_build_object('object', jsonb_build_object('id', 'bulk_' || g, 'object', 'payment'))
           FROM generate_series($2::int, $3::int) g`,
        [m.id, c * per + 1, (c + 1) * per, TYPES],
      );
      signalOutbox(h.database.db); // as every writer of events does after its commit
    }
    const inserted = Date.now();
    const ids = Array.from({ length: EVENTS }, (_, i) => `evt_bulk_${String(i + 1).padStart(6, '0')}`);

    await waitFor(async () => (receiver!.ids().size === EVENTS ? true : undefined), 70_000, `all ${EVENTS} events to arrive`);
    const allArrived = Date.now();
    await waitFor(
      async () => {
        const r = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'succeeded'`, [ep.id]);
        return r.rows[0]!.n === EVENTS ? true : undefined;
      },
      15_000,
      'every delivery row to be succeeded',
    );

    // Every event delivered.
    expect(receiver.ids()).toEqual(new Set(ids));
    // Never one webhook-id in flight twice at the same time.
    expect(receiver.overlapping).toEqual([]);
    expect(receiver.maxConcurrentSameId).toBe(1);
    // Each delivery row succeeded, one per event; none dropped, dead or pending.
    const byStatus = await h.database.db.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 GROUP BY status`,
      [ep.id],
    );
    expect(byStatus.rows).toEqual([{ status: 'succeeded', n: EVENTS }]);
    const perEvent = await h.database.db.query<{ n: number }>(
      `SELECT count(DISTINCT event_id)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1`,
      [ep.id],
    );
    expect(perEvent.rows[0]!.n).toBe(EVENTS);
    const undispatched = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE dispatched_at IS NULL');
    expect(undispatched.rows[0]!.n).toBe(0);

    // With no crash, at-least-once is exactly once for an event answered 200 the first time, and
    // twice for one that failed once; the attempt log and counters agree.
    const failing = ids.filter(failsFirst);
    expect(failing.length).toBe(EVENTS / 50);
    const extra = ids.filter((id) => receiver!.count(id) !== (failsFirst(id) ? 2 : 1));
    expect(extra).toEqual([]);
    const attempts = await h.database.db.query<{ attempts: number; n: number }>(
      `SELECT attempts, count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 GROUP BY attempts ORDER BY attempts`,
      [ep.id],
    );
    expect(attempts.rows).toEqual([
      { attempts: 1, n: EVENTS - failing.length },
      { attempts: 2, n: failing.length },
    ]);
    const logged = await h.database.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1`,
      [ep.id],
    );
    expect(logged.rows[0]!.n).toBe(EVENTS + failing.length);

    // Both workers took part.
    const shares = workers.map((w) => (w.output().match(/"job":"webhook-delivery"/g) ?? []).length);
    console.log(
      `[webhooks] multi-worker: ${EVENTS} events inserted in ${inserted - t0} ms; all received ${allArrived - inserted} ms after the insert ` +
        `(${Math.round((EVENTS / (allArrived - inserted)) * 1000)}/s); delivery jobs per worker: ${JSON.stringify(shares)}; whole test ${Date.now() - started} ms`,
    );
    for (const n of shares) expect(n).toBeGreaterThan(0);
  });
});
