/**
 * The batched hot path of webhook delivery: a batch of jobs is leased in one statement (which also
 * reads the event and the endpoint's live secrets), and outcomes that finish together are written
 * by one statement of the OutcomeWriter — a transaction only when a retry job or a 410 needs it.
 *
 * Deliveries here are written straight into the tables with no pg-boss job, so the harness's own
 * worker never touches them; the tests drive deliverBatch and the writer themselves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import type { Db } from '../../src/db/pool.js';
import { LEASE_SQL, OutcomeWriter, createWebhookAgent, decideOutcome, deliverBatch, type DeliverySettings } from '../../src/webhooks/deliver.js';
import { WRITE_SQL, writeParams, type OutcomeRow } from '../../src/webhooks/outcome-writer.js';
import { call, createMerchant, startHarness, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, Receiver, registerEndpoint, type Received } from './helpers.js';

let h: Harness;
const receivers: Receiver[] = [];
const settings: DeliverySettings = { mode: 'test', schedule: [0, 60, 60], timeoutMs: 2000, leaseSeconds: 30 };

beforeAll(async () => {
  h = await startHarness({ OUTBOX_POLL_MS: '600000' }, { worker: true });
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await h?.close();
});

async function receiver(behaviour?: (r: Received) => ReturnType<Receiver['behaviour']>): Promise<Receiver> {
  const r = await Receiver.start(behaviour);
  receivers.push(r);
  return r;
}

let seq = 0;

/** Pending deliveries of fresh events to the endpoint, due in `dueInSeconds`, with no job. */
async function deliveries(m: MerchantWithKey, endpointId: string, n: number, dueInSeconds = 0): Promise<{ deliveryIds: string[]; eventIds: string[] }> {
  const tag = `${Date.now().toString(36)}_${(seq += 1)}`;
  const eventIds = Array.from({ length: n }, (_, i) => `evt_batch_${tag}_${i}`);
  const deliveryIds = Array.from({ length: n }, (_, i) => `wd_batch_${tag}_${i}`);
  // One statement, so the relay never sees an event without its delivery.
  await h.database.db.query(
    `WITH e AS (
       INSERT INTO events (id, merchant_id, type, sequence, data, dispatched_at)
       SELECT id, $2, 'payment.captured', ord::int, jsonb_build_object('object', jsonb_build_object('n', ord)), now()
         FROM unnest($1::text[]) WITH ORDINALITY AS t(id, ord)
       RETURNING id
     )
     INSERT INTO webhook_deliveries (id, merchant_id, endpoint_id, event_id, event_type, status, next_attempt_at)
     SELECT d.id, $2, $4, e.id, 'payment.captured', 'pending', now() + make_interval(secs => $5)
       FROM unnest($1::text[], $3::text[]) AS d(event_id, id) JOIN e ON e.id = d.event_id`,
    [eventIds, m.id, deliveryIds, endpointId, dueInSeconds],
  );
  return { deliveryIds, eventIds };
}

async function row(id: string) {
  const r = await h.database.db.query<{ status: string; attempts: number; owner: string | null; locked_until: Date | null; last_status_code: number | null }>(
    'SELECT status, attempts, owner, locked_until, last_status_code FROM webhook_deliveries WHERE id = $1',
    [id],
  );
  return r.rows[0]!;
}

async function attemptsLogged(id: string): Promise<number> {
  const r = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webhook_delivery_attempts WHERE delivery_id = $1', [id]);
  return r.rows[0]!.n;
}

async function jobsFor(id: string): Promise<number> {
  const r = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE data->>'delivery_id' = $1`, [id]);
  return r.rows[0]!.n;
}

/** Leases a delivery for `owner` the way deliverBatch does. */
async function lease(id: string, owner: string): Promise<void> {
  await h.database.db.query(`UPDATE webhook_deliveries SET owner = $2, locked_until = now() + interval '30 seconds' WHERE id = $1`, [id, owner]);
}

/** The nodes of an EXPLAIN (ANALYZE, FORMAT JSON) plan that read or write `relation`. */
function scansOf(plan: unknown, relation: string): Array<{ type: string; index?: string; rows: number; loops: number }> {
  const found: Array<{ type: string; index?: string; rows: number; loops: number }> = [];
  const walk = (node: Record<string, unknown>) => {
    if (node['Relation Name'] === relation) {
      const index = node['Index Name'] as string | undefined;
      found.push({ type: node['Node Type'] as string, ...(index ? { index } : {}), rows: node['Actual Rows'] as number, loops: node['Actual Loops'] as number });
    }
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
  };
  walk((plan as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
  return found;
}

/**
 * Statistics taken while a new endpoint has no pending delivery, then a burst of 3,000 arrives:
 * the planner believes "few pending, small table". Returns the last 50 as a batch.
 */
async function burstOnStaleStatistics(): Promise<{ ep: { id: string }; batch: string[] }> {
  const m = await createMerchant(h, HIGH_VELOCITY);
  const ep = await registerEndpoint(h, m.key, 'http://127.0.0.1:9/unused', ['payment.captured']);
  await h.database.db.query('ANALYZE webhook_deliveries');
  const { deliveryIds } = await deliveries(m, ep.id, 3000);
  return { ep, batch: deliveryIds.slice(-50) };
}

/** The plan of `sql` as it ran (EXPLAIN ANALYZE), in a transaction rolled back: nothing it wrote stays. */
async function explainRolledBack(sql: string, params: unknown[]): Promise<unknown> {
  const client = await h.database.db.connect();
  try {
    await client.query('BEGIN');
    return (await client.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params)).rows[0]!['QUERY PLAN'];
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

/**
 * Each of the n ids looked up by primary key (one row per lookup), the locked rows updated by tuple
 * id: never a scan of the pending deliveries or of the table, which a burst would repeat per batch.
 */
function expectKeyedPlan(plan: unknown, n: number): void {
  const reads = scansOf(plan, 'webhook_deliveries').filter((x) => x.type !== 'ModifyTable');
  expect(reads, JSON.stringify(reads)).toEqual([
    { type: 'Index Scan', index: 'webhook_deliveries_pkey', rows: 1, loops: n },
    { type: 'Tid Scan', rows: n, loops: 1 },
  ]);
}

describe('deliverBatch', () => {
  it('sends each due delivery of the batch once, signed with the live secrets, and skips what is not due; duplicates are one delivery', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const r = await receiver();
    const ep = await registerEndpoint(h, m.key, r.url, ['payment.captured']);
    const due = await deliveries(m, ep.id, 12);
    const later = await deliveries(m, ep.id, 1, 3600);
    const agent = createWebhookAgent('test', settings.timeoutMs);
    try {
      const ids = [...due.deliveryIds, due.deliveryIds[0]!, later.deliveryIds[0]!];
      const results = await deliverBatch(h.database.db, h.worker!.boss, agent, settings, ids);
      for (const id of due.deliveryIds) expect(results.get(id)).toMatchObject({ outcome: 'succeeded', error: null });
      expect(results.get(later.deliveryIds[0]!)).toMatchObject({ outcome: 'skipped', error: null });
    } finally {
      await agent.close();
    }
    for (const id of due.eventIds) expect(r.count(id)).toBe(1);
    expect(r.count(later.eventIds[0]!)).toBe(0);
    for (const id of due.deliveryIds) {
      expect(await row(id)).toMatchObject({ status: 'succeeded', attempts: 1, owner: null, locked_until: null, last_status_code: 200 });
      expect(await attemptsLogged(id)).toBe(1);
    }
    expect(await row(later.deliveryIds[0]!)).toMatchObject({ status: 'pending', attempts: 0, owner: null });
    // The body is the event as stored, signed per Standard Webhooks with the endpoint's secret.
    const got = r.of(due.eventIds[3]!)[0]!;
    expect(new Webhook(ep.secret).verify(got.body, got.headers)).toMatchObject({ id: due.eventIds[3], type: 'payment.captured', sequence: 4, data: { object: { n: 4 } } });
  });

  it('secrets are read with the lease: a rotation committed before the lease signs that very delivery with both secrets', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const r = await receiver();
    const ep = await registerEndpoint(h, m.key, r.url, ['payment.captured']);
    const agent = createWebhookAgent('test', settings.timeoutMs);
    try {
      const first = await deliveries(m, ep.id, 1);
      await deliverBatch(h.database.db, h.worker!.boss, agent, settings, first.deliveryIds);
      expect(r.of(first.eventIds[0]!)[0]!.headers['webhook-signature']!.split(' ')).toHaveLength(1);

      const rotated = await call(h, 'POST', `/v1/webhook_endpoints/${ep.id}/rotate_secret`, { key: m.key, body: { overlap_seconds: 3600 } });
      expect(rotated.status).toBe(200);
      const second = await deliveries(m, ep.id, 1);
      await deliverBatch(h.database.db, h.worker!.boss, agent, settings, second.deliveryIds);
      const got = r.of(second.eventIds[0]!)[0]!;
      expect(got.headers['webhook-signature']!.split(' ')).toHaveLength(2);
      expect(new Webhook(ep.secret).verify(got.body, got.headers)).toMatchObject({ id: second.eventIds[0] });
      expect(new Webhook(rotated.body.secret as string).verify(got.body, got.headers)).toMatchObject({ id: second.eventIds[0] });
    } finally {
      await agent.close();
    }
  });

  it('a batch whose lease cannot be taken throws before anything is sent (the worker lets pg-boss run its jobs again)', async () => {
    const down = { query: () => Promise.reject(new Error('connection terminated')) } as unknown as Db;
    const r = await receiver();
    const agent = createWebhookAgent('test', settings.timeoutMs);
    try {
      await expect(deliverBatch(down, h.worker!.boss, agent, settings, ['wd_a', 'wd_b'])).rejects.toThrow('connection terminated');
    } finally {
      await agent.close();
    }
    expect(r.received).toEqual([]);
  });

  it('the lease reads each delivery by its primary key even when the statistics say nothing is pending (a burst stays linear)', async () => {
    const { batch } = await burstOnStaleStatistics();
    expectKeyedPlan(await explainRolledBack(LEASE_SQL, [batch, 'plan_probe', 30]), batch.length);
    expect(await row(batch[0]!)).toMatchObject({ owner: null, locked_until: null });
  });

  it('the outcome write also finds its rows by primary key when the statistics say the table is small', async () => {
    const { ep, batch } = await burstOnStaleStatistics();
    for (const id of batch) await lease(id, 'plan_owner');
    const rows = batch.map((id) => decideOutcome(settings.schedule, { id, endpoint_id: ep.id, attempts: 0 }, 'plan_owner', { statusCode: 200, retryAfter: null, error: null, excerpt: null, latencyMs: 5 }, null));
    expectKeyedPlan(await explainRolledBack(WRITE_SQL, writeParams(rows)), batch.length);
  });
});

describe('OutcomeWriter', () => {
  function outcome(d: { id: string; endpoint_id: string; attempts: number }, owner: string, statusCode: number): OutcomeRow {
    return decideOutcome(settings.schedule, d, owner, { statusCode, retryAfter: null, error: null, excerpt: 'x', latencyMs: 3 }, null);
  }

  it('outcomes that finish together are written by one statement; a lapsed lease leaves the row to its new holder', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const ep = await registerEndpoint(h, m.key, 'http://127.0.0.1:9/unused', ['payment.captured']);
    const { deliveryIds } = await deliveries(m, ep.id, 30);
    for (const id of deliveryIds) await lease(id, 'ours');
    await lease(deliveryIds[29]!, 'someone-else');
    const writer = new OutcomeWriter(h.database.db, h.worker!.boss);
    const outcomes = await Promise.all(deliveryIds.map((id) => writer.write(outcome({ id, endpoint_id: ep.id, attempts: 0 }, 'ours', 200))));
    expect(writer.flushes).toBe(1);
    expect(outcomes.slice(0, 29)).toEqual(Array(29).fill('succeeded'));
    // Our lease was lost: the attempt is logged, the row stays as its holder has it.
    expect(outcomes[29]).toBe('skipped');
    expect(await row(deliveryIds[29]!)).toMatchObject({ status: 'pending', attempts: 0, owner: 'someone-else' });
    for (const id of deliveryIds) expect(await attemptsLogged(id)).toBe(1);
    expect(await row(deliveryIds[0]!)).toMatchObject({ status: 'succeeded', attempts: 1, owner: null, locked_until: null });
  });

  it('a retry gets its job and a 410 disables the endpoint in the same transaction as the outcome', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const ep = await registerEndpoint(h, m.key, 'http://127.0.0.1:9/unused', ['payment.captured']);
    const other = await registerEndpoint(h, m.key, 'http://127.0.0.1:9/other', ['payment.captured']);
    const a = await deliveries(m, ep.id, 2);
    const b = await deliveries(m, other.id, 1);
    for (const id of [...a.deliveryIds, ...b.deliveryIds]) await lease(id, 'ours');
    const writer = new OutcomeWriter(h.database.db, h.worker!.boss);
    const [retry, ok, gone] = await Promise.all([
      writer.write(outcome({ id: a.deliveryIds[0]!, endpoint_id: ep.id, attempts: 0 }, 'ours', 500)),
      writer.write(outcome({ id: a.deliveryIds[1]!, endpoint_id: ep.id, attempts: 0 }, 'ours', 200)),
      writer.write(outcome({ id: b.deliveryIds[0]!, endpoint_id: other.id, attempts: 0 }, 'ours', 410)),
    ]);
    expect([retry, ok, gone]).toEqual(['retry', 'succeeded', 'dead']);
    expect(writer.flushes).toBe(1);
    const retried = await row(a.deliveryIds[0]!);
    expect(retried).toMatchObject({ status: 'pending', attempts: 1, owner: null, last_status_code: 500 });
    expect(await jobsFor(a.deliveryIds[0]!)).toBe(1);
    expect(await jobsFor(a.deliveryIds[1]!)).toBe(0);
    const eps = await h.database.db.query<{ id: string; status: string }>('SELECT id, status FROM webhook_endpoints WHERE id = ANY($1) ORDER BY id', [[ep.id, other.id]]);
    expect(Object.fromEntries(eps.rows.map((e) => [e.id, e.status]))).toEqual({ [ep.id]: 'enabled', [other.id]: 'disabled' });
  });

  it('an outcome the database refuses fails alone: its batch-mates are written', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const ep = await registerEndpoint(h, m.key, 'http://127.0.0.1:9/unused', ['payment.captured']);
    const { deliveryIds } = await deliveries(m, ep.id, 3);
    for (const id of deliveryIds) await lease(id, 'ours');
    const writer = new OutcomeWriter(h.database.db, h.worker!.boss);
    const results = await Promise.allSettled([
      ...deliveryIds.map((id) => writer.write(outcome({ id, endpoint_id: ep.id, attempts: 0 }, 'ours', 200))),
      // No such delivery: its attempt row breaks the foreign key.
      writer.write(outcome({ id: 'wd_does_not_exist', endpoint_id: ep.id, attempts: 0 }, 'ours', 200)),
    ]);
    expect(results.slice(0, 3)).toEqual(Array(3).fill({ status: 'fulfilled', value: 'succeeded' }));
    expect(results[3]!.status).toBe('rejected');
    for (const id of deliveryIds) expect(await row(id)).toMatchObject({ status: 'succeeded', attempts: 1 });
  });
});
