/**
 * Back-pressure (SPEC §12): once an endpoint's backlog of pending deliveries passes the threshold,
 * its non-critical events (payment.created, payment.processing) are marked `dropped`; critical
 * ones are never dropped, and another, healthy endpoint of the same merchant is not affected.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY, Receiver, allDeliveries, createPayment, finishedDeliveries, registerEndpoint, type Json } from './helpers.js';

const THRESHOLD = 5;

/** switchyard_webhook_deliveries_total{outcome="dropped"} from GET /metrics (0 before the first drop). */
async function droppedCounter(h: Harness): Promise<number> {
  const res = await fetch(`${h.url}/metrics`);
  expect(res.status).toBe(200);
  const m = /^switchyard_webhook_deliveries_total\{[^}]*outcome="dropped"[^}]*\} (\d+)/m.exec(await res.text());
  return m ? Number(m[1]) : 0;
}
const DROPPABLE = new Set(['payment.created', 'payment.processing']);

let h: Harness;
const receivers: Receiver[] = [];

beforeAll(async () => {
  h = await startHarness(
    {
      WEBHOOK_BACKLOG_THRESHOLD: String(THRESHOLD),
      // After a first failure a delivery waits 10 minutes: it stays in the backlog for the whole test.
      WEBHOOK_RETRY_SCHEDULE: '0,600,600',
    },
    { worker: true },
  );
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await h?.close();
});

describe('back-pressure', () => {
  it('beyond the threshold, droppable events of a backed-up endpoint are dropped; critical ones never; a healthy endpoint is unaffected', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    let down = true;
    const sick = await Receiver.start(() => (down ? { status: 503, body: 'maintenance' } : { status: 200 }));
    const healthy = await Receiver.start();
    receivers.push(sick, healthy);
    const D = await registerEndpoint(h, m.key, sick.url, ['*']);
    const H = await registerEndpoint(h, m.key, healthy.url, ['*']);
    const since = new Date(Date.now() - 1000).toISOString();
    const droppedBefore = await droppedCounter(h);

    const eventIds: string[] = [];
    const settle = async () => {
      const res = await call(h, 'GET', '/v1/events?limit=100', { key: m.key });
      const ids = (res.body.data as Json[]).map((e) => e.id as string);
      // The healthy endpoint received everything so far (its backlog is back to zero), and the
      // relay has given the sick endpoint a delivery (pending or dropped) for every event.
      await waitFor(
        async () => {
          if (!ids.every((id) => healthy.count(id) >= 1)) return undefined;
          const onD = await allDeliveries(h, m.key, { endpoint_id: D.id });
          return onD.length === ids.length ? true : undefined;
        },
        15_000,
        'the relay and the healthy endpoint to catch up',
      );
      for (const id of ids) if (!eventIds.includes(id)) eventIds.push(id);
    };

    const payments: Json[] = [];
    for (let i = 0; i < 6; i++) {
      payments.push(await createPayment(h, m.key));
      await settle();
    }
    for (const p of payments.slice(0, 2)) {
      const refund = await call(h, 'POST', `/v1/payments/${p.id}/refunds`, { key: m.key, body: { amount: 10_000 } });
      expect(refund.status, JSON.stringify(refund.body)).toBe(201);
      await settle();
    }
    // Two more payments after the refunds: still dropped, the backlog only grew.
    for (let i = 0; i < 2; i++) {
      payments.push(await createPayment(h, m.key));
      await settle();
    }

    const events = new Map<string, Json>();
    for (const p of payments) {
      const res = await call(h, 'GET', `/v1/payments/${p.id}/events`, { key: m.key });
      for (const e of res.body.data as Json[]) events.set(e.id as string, e);
    }
    expect(events.size).toBe(eventIds.length);
    expect(events.size).toBe(8 * 3 + 2 * 2); // 8 payments; 2 partial refunds: refund.created + refund.succeeded each

    // The relay handles events in id order, and the sick endpoint's backlog never shrinks: what it
    // must have decided follows exactly.
    const expected = new Map<string, string>();
    let backlog = 0;
    for (const id of [...events.keys()].sort()) {
      const type = events.get(id)!.type as string;
      if (backlog >= THRESHOLD && DROPPABLE.has(type)) expected.set(id, 'dropped');
      else {
        expected.set(id, 'pending');
        backlog += 1;
      }
    }
    const onD = await allDeliveries(h, m.key, { endpoint_id: D.id });
    expect(onD).toHaveLength(events.size);
    const actual = new Map(onD.map((d) => [d.event_id as string, d.status as string]));
    expect(actual).toEqual(expected);

    const dropped = await allDeliveries(h, m.key, { status: 'dropped', endpoint_id: D.id });
    expect(dropped.length).toBeGreaterThanOrEqual(8);
    for (const d of dropped) {
      expect(DROPPABLE.has(d.event_type as string), d.event_type as string).toBe(true);
      expect(d.attempts).toBe(0);
      // A dropped delivery was never sent.
      expect(sick.count(d.event_id as string)).toBe(0);
    }
    // Dropped deliveries are counted.
    expect((await droppedCounter(h)) - droppedBefore).toBe(dropped.length);
    const critical = onD.filter((d) => !DROPPABLE.has(d.event_type as string));
    expect(new Set(critical.map((d) => d.event_type))).toEqual(new Set(['payment.captured', 'refund.created', 'refund.succeeded']));
    for (const d of critical) expect(d.status).toBe('pending');

    // The healthy endpoint: everything delivered, nothing dropped.
    const onH = await finishedDeliveries(h, m.key, { endpoint_id: H.id }, events.size);
    for (const d of onH) expect(d.status).toBe('succeeded');
    expect(await allDeliveries(h, m.key, { status: 'dropped', endpoint_id: H.id })).toEqual([]);
    expect(healthy.ids()).toEqual(new Set(events.keys()));

    // Once the endpoint is back, a recovery replays the dropped deliveries.
    down = false;
    const recovered = await call(h, 'POST', `/v1/webhook_endpoints/${D.id}/recover`, { key: m.key, body: { since } });
    expect(recovered.status, JSON.stringify(recovered.body)).toBe(200);
    expect(recovered.body.replayed).toBe(dropped.length);
    await waitFor(async () => (dropped.every((d) => sick.count(d.event_id as string) === 1) ? true : undefined), 15_000, 'the dropped deliveries to be replayed');
    await waitFor(async () => ((await allDeliveries(h, m.key, { status: 'dropped' })).length === 0 ? true : undefined));
    const replayed = await finishedDeliveries(h, m.key, { endpoint_id: D.id, status: 'succeeded' }, dropped.length);
    expect(new Set(replayed.map((d) => d.id))).toEqual(new Set(dropped.map((d) => d.id)));
  });

  it("the backlog is counted per endpoint: another merchant's idle endpoint drops nothing", async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const r = await Receiver.start();
    receivers.push(r);
    const ep = await registerEndpoint(h, m.key, r.url, ['*']);
    const p = await createPayment(h, m.key);
    const res = await call(h, 'GET', `/v1/payments/${p.id}/events`, { key: m.key });
    const ids = (res.body.data as Json[]).map((e) => e.id as string);
    await waitFor(async () => (ids.every((id) => r.count(id) === 1) ? true : undefined), 10_000, 'delivery');
    const onEp = await finishedDeliveries(h, m.key, { endpoint_id: ep.id }, ids.length);
    expect(onEp.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });
});
