/**
 * Webhook measurements: a loopback receiver (node:http in the bench process, answering 200), events
 * inserted straight into the `events` outbox table by the bench (created_at = clock_timestamp(),
 * i.e. the insert's own time, a fraction of a millisecond before its commit), and the worker
 * processes of Switchyard doing the rest: relay → delivery rows + pg-boss jobs → signed POST.
 *
 * - latency: events at a fixed rate (open model), commit→received per webhook-id;
 * - throughput: one transaction inserts N events at once; deliveries/s = N / (last received − commit).
 */
import { createServer, type Server } from 'node:http';
import type pg from 'pg';
import { newId } from '../src/lib/ids.js';
import { OUTBOX_CHANNEL, Throttle } from '../src/db/outbox-signal.js';
import { openLoop, percentiles, type Percentiles } from './load.js';
import { sleep } from './procs.js';

export class WebhookReceiver {
  private server: Server | null = null;
  /** webhook-id → epoch ms of its first arrival. */
  readonly firstSeen = new Map<string, number>();
  received = 0;
  duplicates = 0;
  url = '';
  private waiters: { ids: Set<string>; resolve: () => void }[] = [];

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const at = Date.now();
      const id = req.headers['webhook-id'];
      req.on('data', () => undefined);
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        this.received += 1;
        if (typeof id !== 'string') return;
        if (this.firstSeen.has(id)) this.duplicates += 1;
        else {
          this.firstSeen.set(id, at);
          for (const w of this.waiters) {
            w.ids.delete(id);
            if (w.ids.size === 0) w.resolve();
          }
          this.waiters = this.waiters.filter((w) => w.ids.size > 0);
        }
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
  }

  /** Resolves true when every id has arrived, false at the deadline. */
  async waitFor(ids: Iterable<string>, timeoutMs: number): Promise<boolean> {
    const missing = new Set([...ids].filter((id) => !this.firstSeen.has(id)));
    if (missing.size === 0) return true;
    const all = new Promise<void>((resolve) => this.waiters.push({ ids: missing, resolve }));
    return Promise.race([all.then(() => true), sleep(timeoutMs).then(() => false)]);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** Wakes the relay after each commit the way an api process does (throttled NOTIFY after the commit). */
function outboxWakeUp(db: pg.Pool): Throttle {
  return new Throttle(() => db.query(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`), 10);
}

const INSERT_ONE = `INSERT INTO events (id, merchant_id, payment_id, type, sequence, data, created_at)
  VALUES ($1, $2, NULL, 'payment.captured', $3, '{"object":{}}', clock_timestamp())
  RETURNING (extract(epoch FROM created_at) * 1000)::float8 AS ms`;

export interface WebhookLatencyResult {
  offered: number;
  /** Events actually committed per second by the bench's inserter. */
  insertedPerSecond: number;
  warmupSeconds: number;
  measuredSeconds: number;
  measured: number;
  received: number;
  /** Measured events not received within the deadline, plus failed inserts. */
  missing: number;
  insertErrors: number;
  /** created_at (≈ commit) → first arrival at the receiver, ms, measured events only. */
  latencyMs: Percentiles;
}

export async function webhookLatency(
  db: pg.Pool,
  merchantId: string,
  receiver: WebhookReceiver,
  o: { rate: number; warmupMs: number; durationMs: number; waitMs: number },
): Promise<WebhookLatencyResult> {
  const warm = Math.round((o.rate * o.warmupMs) / 1000);
  const measuredN = Math.round((o.rate * o.durationMs) / 1000);
  const total = warm + measuredN;
  const created = new Map<string, number>();
  let insertErrors = 0;
  const pending: Promise<unknown>[] = [];
  const started = performance.now();
  const wake = outboxWakeUp(db);
  await openLoop(o.rate, total, (i) => {
    const id = newId('evt');
    pending.push(
      db.query<{ ms: number }>(INSERT_ONE, [id, merchantId, i]).then(
        (r) => {
          wake.signal();
          if (i >= warm) created.set(id, r.rows[0]!.ms);
        },
        () => {
          if (i >= warm) insertErrors += 1;
        },
      ),
    );
  });
  await Promise.all(pending);
  const insertSeconds = (performance.now() - started) / 1000;
  await receiver.waitFor(created.keys(), o.waitMs);
  const lat: number[] = [];
  for (const [id, ms] of created) {
    const at = receiver.firstSeen.get(id);
    if (at !== undefined) lat.push(at - ms);
  }
  return {
    offered: o.rate,
    insertedPerSecond: total / insertSeconds,
    warmupSeconds: o.warmupMs / 1000,
    measuredSeconds: o.durationMs / 1000,
    measured: measuredN,
    received: lat.length,
    missing: measuredN - lat.length,
    insertErrors,
    latencyMs: percentiles(lat),
  };
}

export interface WebhookThroughputResult {
  events: number;
  received: number;
  /** Seconds from the commit of the batch to the last first-arrival (or to the deadline). */
  seconds: number;
  deliveriesPerSecond: number;
  timedOut: boolean;
  /** Seconds until the outbox relay had fanned every event out (dispatched_at set on all). */
  dispatchSeconds: number | null;
  /** created_at → received over the burst, ms: mostly queueing behind the burst itself. */
  latencyMs: Percentiles;
  duplicates: number;
}

export async function webhookThroughput(
  db: pg.Pool,
  merchantId: string,
  receiver: WebhookReceiver,
  o: { events: number; timeoutMs: number },
): Promise<WebhookThroughputResult> {
  const ids = Array.from({ length: o.events }, () => newId('evt'));
  const created = new Map<string, number>();
  const dupBefore = receiver.duplicates;
  const client = await db.connect();
  let committedAt: number;
  try {
    await client.query('BEGIN');
    for (let k = 0; k < ids.length; k += 5_000) {
      const chunk = ids.slice(k, k + 5_000);
      const r = await client.query<{ id: string; ms: number }>(
        `INSERT INTO events (id, merchant_id, payment_id, type, sequence, data, created_at)
         SELECT id, $2, NULL, 'payment.captured', ord::int, '{"object":{}}', clock_timestamp()
           FROM unnest($1::text[]) WITH ORDINALITY AS t(id, ord)
         RETURNING id, (extract(epoch FROM created_at) * 1000)::float8 AS ms`,
        [chunk, merchantId],
      );
      for (const row of r.rows) created.set(row.id, row.ms);
    }
    await client.query('COMMIT');
    committedAt = Date.now();
    outboxWakeUp(db).signal();
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  // Watch the relay finish fanning out, without holding up the wait for arrivals.
  let dispatchSeconds: number | null = null;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const r = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE dispatched_at IS NULL AND id = ANY($1)', [ids]).catch(() => null);
      if (r && r.rows[0]!.n === 0) {
        dispatchSeconds = (Date.now() - committedAt) / 1000;
        return;
      }
      await sleep(250);
    }
  })();
  const complete = await receiver.waitFor(ids, o.timeoutMs);
  watching = false;
  await watch;
  let last = committedAt;
  const lat: number[] = [];
  for (const id of ids) {
    const at = receiver.firstSeen.get(id);
    if (at === undefined) continue;
    if (at > last) last = at;
    lat.push(at - created.get(id)!);
  }
  const seconds = complete ? (last - committedAt) / 1000 : o.timeoutMs / 1000;
  return {
    events: o.events,
    received: lat.length,
    seconds,
    deliveriesPerSecond: lat.length / Math.max(seconds, 0.001),
    timedOut: !complete,
    dispatchSeconds,
    latencyMs: percentiles(lat),
    duplicates: receiver.duplicates - dupBefore,
  };
}
