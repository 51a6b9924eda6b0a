/**
 * GET /metrics (SPEC §15): Prometheus text format, every family the runbooks rely on, and the
 * counters moving by exactly what a known flow did. The registry belongs to the process (shared by
 * every harness in this file), so each check compares a scrape before with one after; the
 * database-backed gauges are compared with the database itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE } from '../../src/worker/queue.js';
import { call, createMerchant, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, HookReceiver, body, delta, find, scrape, sum, type Scrape } from './helpers.js';

let h: Harness;
const receivers: HookReceiver[] = [];
const others: Harness[] = [];

beforeAll(async () => {
  h = await startHarness(
    {
      RATE_LIMIT_WINDOW_SECONDS: '60',
      RATE_LIMIT_BRONZE: '2',
      // The timed-out payment stays for reconciliation until after this file (tested on its own below).
      RECONCILE_THRESHOLD_SECONDS: '3600',
      // A failed delivery is retried an hour later: it stays pending, in the backlog.
      WEBHOOK_RETRY_SCHEDULE: '0,3600',
      WEBHOOK_TIMEOUT_MS: '2000',
      OUTBOX_POLL_MS: '200',
    },
    { worker: true },
  );
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  for (const o of others) await o.close();
  await h?.close();
});

async function n(sql: string, values: unknown[] = []): Promise<number> {
  return (await h.database.db.query<{ n: number }>(sql, values)).rows[0]!.n;
}

async function endpoint(m: MerchantWithKey, url: string, events: string[]): Promise<string> {
  const res = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url, enabled_events: events } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

function expectFamily(s: Scrape, name: string, type: string): void {
  expect(s.types.get(name), `# TYPE ${name}`).toBe(type);
  expect(s.text).toContain(`# HELP ${name} `);
}

describe('GET /metrics', () => {
  it('counts a known flow: payments (success, decline, timeout), a refund, a replay, a rate-limited request, webhook deliveries', async () => {
    const m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    const bronze = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    const ok = await HookReceiver.start(() => 200);
    const failing = await HookReceiver.start(() => 500);
    receivers.push(ok, failing);
    const okEndpoint = await endpoint(m, `${ok.url}/hooks`, ['*']);
    const failingEndpoint = await endpoint(m, `${failing.url}/hooks`, ['payment.captured']);

    const before = await scrape(h);

    const success = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(success.status, JSON.stringify(success.body)).toBe(201);
    expect(success.body.status).toBe('captured');
    const decline = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_decline' }) });
    expect(decline.status, JSON.stringify(decline.body)).toBe(402);
    const timeout = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_timeout_uncharged' }) });
    expect(timeout.status, JSON.stringify(timeout.body)).toBe(201);
    expect(timeout.body.status).toBe('processing');
    const refund = await call(h, 'POST', `/v1/payments/${success.body.id}/refunds`, { key: m.key, body: { amount: 10_000 } });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
    const b = body();
    const keyed = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': `metrics_${b.reference_id as string}` } });
    expect(keyed.status).toBe(201);
    const replay = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': `metrics_${b.reference_id as string}` } });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect((await call(h, 'GET', '/v1/payments?limit=1', { key: bronze.key })).status).toBe(200);
    expect((await call(h, 'GET', '/v1/payments?limit=1', { key: bronze.key })).status).toBe(200);
    expect((await call(h, 'GET', '/v1/payments?limit=1', { key: bronze.key })).status).toBe(429);

    // The worker delivers every event: to the good endpoint once each, to the failing one once
    // each (then retried an hour later, so those stay pending).
    await waitFor(async () => {
      const undispatched = await n(`SELECT count(*)::int AS n FROM events WHERE merchant_id = $1 AND dispatched_at IS NULL`, [m.id]);
      const okOpen = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'succeeded'`, [okEndpoint]);
      const failingUntried = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND attempts = 0`, [failingEndpoint]);
      const failingTried = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND attempts = 1`, [failingEndpoint]);
      return undispatched === 0 && okOpen === 0 && failingUntried === 0 && failingTried >= 2 ? true : undefined;
    }, 20_000, 'every delivery to be attempted');
    const events = await n(`SELECT count(*)::int AS n FROM events WHERE merchant_id = $1`, [m.id]);
    const succeeded = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'succeeded'`, [okEndpoint]);
    const retrying = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'`, [failingEndpoint]);
    expect(succeeded).toBe(events);
    expect(ok.received.length).toBe(succeeded);
    expect(retrying).toBe(2); // two captured payments
    expect(failing.received.length).toBe(2);

    const after = await scrape(h);

    // --- HTTP latency by route and status
    expectFamily(after, 'switchyard_http_request_duration_seconds', 'histogram');
    const http = (labels: Record<string, string>) => delta(before, after, 'switchyard_http_request_duration_seconds_count', labels);
    expect(http({ method: 'POST', route: '/v1/payments', status: '201' })).toBe(3);
    expect(http({ method: 'POST', route: '/v1/payments', status: '402' })).toBe(1);
    expect(http({ method: 'POST', route: '/v1/payments', status: '200' })).toBe(1);
    expect(http({ method: 'POST', route: '/v1/payments/:id/refunds', status: '201' })).toBe(1);
    expect(http({ method: 'GET', route: '/v1/payments', status: '429' })).toBe(1);
    expect(http({ method: 'GET', route: '/v1/payments', status: '200' })).toBe(2);
    const inf = find(after, 'switchyard_http_request_duration_seconds_bucket', { method: 'POST', route: '/v1/payments', status: '201', le: '+Inf' });
    expect(inf).toHaveLength(1);
    expect(inf[0]!.value).toBe(sum(after, 'switchyard_http_request_duration_seconds_count', { method: 'POST', route: '/v1/payments', status: '201' }));
    // The timed-out payment alone took over a second.
    expect(delta(before, after, 'switchyard_http_request_duration_seconds_sum', { method: 'POST', route: '/v1/payments', status: '201' })).toBeGreaterThan(1);

    // --- Payment transitions: exactly the audit trail's rows (creation counts as none → pending)
    expectFamily(after, 'switchyard_payment_transitions_total', 'counter');
    const history = await h.database.db.query<{ from_status: string; to_status: string; n: number }>(
      `SELECT COALESCE(from_status, 'none') AS from_status, to_status, count(*)::int AS n FROM payment_status_history h JOIN payments p ON p.id = h.payment_id
        WHERE p.merchant_id = $1 GROUP BY 1, 2`,
      [m.id],
    );
    expect(history.rows.length).toBeGreaterThanOrEqual(3);
    let transitions = 0;
    for (const row of history.rows) {
      expect(delta(before, after, 'switchyard_payment_transitions_total', { from: row.from_status, to: row.to_status }), `${row.from_status} → ${row.to_status}`).toBe(row.n);
      transitions += row.n;
    }
    expect(delta(before, after, 'switchyard_payment_transitions_total')).toBe(transitions);
    expect(delta(before, after, 'switchyard_payment_transitions_total', { to: 'failed' })).toBe(1); // the decline
    expect(delta(before, after, 'switchyard_payment_transitions_total', { to: 'captured' })).toBe(2);

    // --- Connector calls, latency, timeouts
    expectFamily(after, 'switchyard_connector_calls_total', 'counter');
    const calls = (labels: Record<string, string>) => delta(before, after, 'switchyard_connector_calls_total', { connector: 'mock', ...labels });
    expect(calls({ operation: 'authorize', outcome: 'succeeded' })).toBe(2);
    expect(calls({ operation: 'authorize', outcome: 'declined' })).toBe(1);
    expect(calls({ operation: 'authorize', outcome: 'unknown' })).toBe(1);
    expect(calls({ operation: 'refund', outcome: 'succeeded' })).toBe(1);
    expectFamily(after, 'switchyard_connector_call_duration_seconds', 'histogram');
    expect(delta(before, after, 'switchyard_connector_call_duration_seconds_count', { connector: 'mock', operation: 'authorize' })).toBe(4);
    expect(delta(before, after, 'switchyard_connector_call_duration_seconds_count', { connector: 'mock', operation: 'refund' })).toBe(1);
    expect(delta(before, after, 'switchyard_connector_call_duration_seconds_sum', { connector: 'mock', operation: 'authorize' })).toBeGreaterThan(1);
    expectFamily(after, 'switchyard_connector_timeouts_total', 'counter');
    expect(delta(before, after, 'switchyard_connector_timeouts_total', { connector: 'mock', operation: 'authorize' })).toBe(1);
    expect(delta(before, after, 'switchyard_connector_timeouts_total')).toBe(1);

    // --- Webhooks: deliveries by outcome, latency, event-to-delivery, backlog, oldest pending
    expectFamily(after, 'switchyard_webhook_deliveries_total', 'counter');
    expect(delta(before, after, 'switchyard_webhook_deliveries_total', { outcome: 'succeeded' })).toBe(succeeded);
    expect(delta(before, after, 'switchyard_webhook_deliveries_total', { outcome: 'retry' })).toBe(retrying);
    expectFamily(after, 'switchyard_webhook_delivery_duration_seconds', 'histogram');
    expect(delta(before, after, 'switchyard_webhook_delivery_duration_seconds_count')).toBe(succeeded + retrying);
    expectFamily(after, 'switchyard_webhook_event_to_delivery_seconds', 'histogram');
    expect(delta(before, after, 'switchyard_webhook_event_to_delivery_seconds_count')).toBe(succeeded);
    expectFamily(after, 'switchyard_webhook_backlog', 'gauge');
    const pending = await n(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'pending'`);
    expect(pending).toBeGreaterThanOrEqual(2);
    expect(sum(after, 'switchyard_webhook_backlog')).toBe(pending);
    expectFamily(after, 'switchyard_webhook_oldest_pending_age_seconds', 'gauge');
    const oldest = (await h.database.db.query<{ age: number }>(`SELECT extract(epoch FROM now() - min(created_at))::float8 AS age FROM webhook_deliveries WHERE status = 'pending'`)).rows[0]!.age;
    const scrapedAge = sum(after, 'switchyard_webhook_oldest_pending_age_seconds');
    expect(scrapedAge).toBeGreaterThan(0);
    expect(scrapedAge).toBeLessThanOrEqual(oldest);
    expect(scrapedAge).toBeGreaterThan(oldest - 5);

    // --- Replays, rate limits, shedding
    expectFamily(after, 'switchyard_idempotent_replays_total', 'counter');
    expect(delta(before, after, 'switchyard_idempotent_replays_total')).toBe(1);
    expectFamily(after, 'switchyard_rate_limited_total', 'counter');
    expect(delta(before, after, 'switchyard_rate_limited_total', { scope: 'merchant' })).toBe(1);
    expect(delta(before, after, 'switchyard_rate_limited_total')).toBe(1);
    expectFamily(after, 'switchyard_shed_requests_total', 'counter');
    expect(find(after, 'switchyard_shed_requests_total')).toHaveLength(1);
    expect(delta(before, after, 'switchyard_shed_requests_total')).toBe(0);

    // --- Job queue depth, read from pg-boss at scrape time: the two retries wait an hour
    expectFamily(after, 'switchyard_job_queue_depth', 'gauge');
    const queued = await n(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'created'`, [QUEUE.delivery]);
    expect(queued).toBeGreaterThanOrEqual(2);
    expect(sum(after, 'switchyard_job_queue_depth', { queue: QUEUE.delivery, state: 'created' })).toBe(queued);

    // --- Reconciliation outcomes (counted in the test below) and payments needing review
    expectFamily(after, 'switchyard_reconciliation_outcomes_total', 'counter');
    expectFamily(after, 'switchyard_payments_needing_review', 'gauge');
    expect(sum(after, 'switchyard_payments_needing_review')).toBe(await n(`SELECT count(*)::int AS n FROM payments WHERE reconciliation_status = 'manual_review'`));
  });

  it('reconciliation: the worker settles a timed-out payment the provider never charged, and counts it', async () => {
    const r = await startHarness({ RECONCILE_INTERVAL_MS: '200', RECONCILE_THRESHOLD_SECONDS: '2' }, { worker: true });
    others.push(r);
    const m = await createMerchant(r, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    const before = await scrape(r);
    const timeout = await call(r, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_timeout_uncharged' }) });
    expect(timeout.status, JSON.stringify(timeout.body)).toBe(201);
    expect(timeout.body.status).toBe('processing');
    const settled = await waitFor(async () => {
      const p = await call(r, 'GET', `/v1/payments/${timeout.body.id}`, { key: m.key });
      return p.body.status === 'failed' ? p.body : undefined;
    }, 20_000, 'reconciliation to settle the timed-out payment').catch((err: Error) => {
      const failures = r.logs.filter((l) => l.includes('"job":"reconciliation"') && l.includes('job failed'));
      throw new Error(`${err.message}; the reconciliation job failed ${failures.length} times, last: ${failures.at(-1) ?? 'none'}`);
    });
    expect(settled.failure_code).toBe('provider_no_record');
    const after = await scrape(r);
    expect(delta(before, after, 'switchyard_reconciliation_outcomes_total', { outcome: 'settled' })).toBe(1);
    expect(delta(before, after, 'switchyard_connector_calls_total', { connector: 'mock', operation: 'sync', outcome: 'not_found' })).toBe(1);
    expect(delta(before, after, 'switchyard_payment_transitions_total', { from: 'processing', to: 'failed' })).toBe(1);
  });

  it('payments needing review is read from the database at scrape time', async () => {
    const m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    const p = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(p.status).toBe(201);
    const before = sum(await scrape(h), 'switchyard_payments_needing_review');
    // What reconciliation records when provider and database disagree beyond repair.
    await h.database.db.query(`UPDATE payments SET reconciliation_status = 'manual_review' WHERE id = $1`, [p.body.id]);
    expect(sum(await scrape(h), 'switchyard_payments_needing_review')).toBe(before + 1);
    await h.database.db.query(`UPDATE payments SET reconciliation_status = 'synced' WHERE id = $1`, [p.body.id]);
    expect(sum(await scrape(h), 'switchyard_payments_needing_review')).toBe(before);
  });

  it('circuit state: 0 (closed) for every connector from the start; then 2 (open) for the connector', async () => {
    const c = await startHarness({
      CIRCUIT_MINIMUM_CALLS: '2',
      CIRCUIT_FAILURE_RATE: '0.5',
      CIRCUIT_OPEN_MS: '600000',
      CONNECTOR_AUTHORIZE_TIMEOUT_MS: '300',
      MOCK_PROVIDER_HANG_MS: '1000',
    });
    others.push(c);
    const m = await createMerchant(c, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    const before = await scrape(c);
    expectFamily(before, 'switchyard_connector_circuit_state', 'gauge');
    expect(find(before, 'switchyard_connector_circuit_state', { connector: 'mock' }).map((s) => s.value)).toEqual([0]);
    expect(find(before, 'switchyard_connector_circuit_state', { connector: 'flaky' }).map((s) => s.value)).toEqual([0]);

    for (let i = 0; i < 2; i++) {
      const r = await call(c, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_timeout_uncharged' }) });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.status).toBe('processing');
    }
    const after = await scrape(c);
    expect(find(after, 'switchyard_connector_circuit_state', { connector: 'mock' }).map((s) => s.value)).toEqual([2]);
    expect(delta(before, after, 'switchyard_connector_timeouts_total', { connector: 'mock', operation: 'authorize' })).toBe(2);
    // Open: the next payment is refused without a call to the provider.
    const refused = await call(c, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(refused.status, JSON.stringify(refused.body)).toBe(503);
    expect(refused.body.error.code).toBe('CONNECTOR_UNAVAILABLE');
    const later = await scrape(c);
    expect(delta(after, later, 'switchyard_connector_call_duration_seconds_count', { connector: 'mock', operation: 'authorize' })).toBe(0);
  });

  it('is the Prometheus text format, and never shed or rate limited', async () => {
    const res = await fetch(`${h.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      expect(line, line).toMatch(/^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+)$/);
    }
    expect(text).toContain('switchyard_process_');
    expect(res.headers.get('ratelimit-limit')).toBeNull();
  });
});
