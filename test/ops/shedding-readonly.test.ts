/**
 * Protection (SPEC §14): load shedding above the per-process in-flight limit (503 OVERLOADED with
 * Retry-After; health and metrics never shed), the runtime read-only switch (mutations 503
 * READ_ONLY, reads and the admin API work), and the request body limit (413 PAYLOAD_TOO_LARGE).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, startHarness, waitFor, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, delta, expectError, retryAfter, scrape, setReadOnly } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness({
    MAX_IN_FLIGHT: '2',
    // tok_timeout_uncharged holds a request open for the whole authorize timeout.
    CONNECTOR_AUTHORIZE_TIMEOUT_MS: '6000',
    MOCK_PROVIDER_HANG_MS: '12000',
    BODY_LIMIT_BYTES: '2048',
  });
  m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'platinum' });
});
afterAll(async () => h?.close());

async function count(sql: string, values: unknown[]): Promise<number> {
  return (await h.database.db.query<{ n: number }>(sql, values)).rows[0]!.n;
}

describe('load shedding', () => {
  it('above MAX_IN_FLIGHT → 503 OVERLOADED with Retry-After; health and metrics still answer; afterwards requests succeed', async () => {
    const before = await scrape(h);
    let shed = 0;
    const overloaded = (r: ApiResponse): boolean => {
      if (r.status !== 503) return false;
      expectError(r, 503, 'OVERLOADED');
      retryAfter(r, 1, 60);
      shed += 1;
      return true;
    };

    // Two payments that hang on the provider fill this process's two slots.
    const held = [body({ payment_method_token: 'tok_timeout_uncharged' }), body({ payment_method_token: 'tok_timeout_uncharged' })];
    const started = Date.now();
    const holding = held.map((b) => call(h, 'POST', '/v1/payments', { key: m.key, body: b }));
    // Polled in the database, not over HTTP (a probe would take a slot itself): both are waiting
    // on the provider.
    await waitFor(async () => {
      const r = await h.database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM payment_attempts a JOIN payments p ON p.id = a.payment_id
          WHERE p.reference_id = ANY($1) AND a.operation = 'authorize' AND a.status = 'started'`,
        [held.map((b) => b.reference_id)],
      );
      return r.rows[0]!.n === 2 ? true : undefined;
    }, 10_000, 'both held payments to be waiting on the provider');

    // While they hang: merchant reads and writes are shed, before auth (a bad key is shed too)...
    expect(overloaded(await call(h, 'POST', '/v1/payments', { key: m.key, body: body() }))).toBe(true);
    expect(overloaded(await call(h, 'GET', '/v1/payments?limit=1', { key: m.key }))).toBe(true);
    expect(overloaded(await call(h, 'GET', '/v1/payments?limit=1', { key: 'sk_test_unknown' }))).toBe(true);
    // ... health and metrics never are.
    for (const path of ['/health/liveness', '/health/readiness', '/health/startup', '/metrics']) {
      const r = await call(h, 'GET', path);
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(200);
    }
    // The two held requests are really still running (the checks above did not wait them out).
    expect(Date.now() - started).toBeLessThan(6000);

    const done = await Promise.all(holding);
    for (const r of done) {
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.status).toBe('processing');
    }
    // Nothing of the shed payment was stored.
    expect(await count('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [m.id])).toBe(2);

    // Slots free again: requests succeed.
    expect((await call(h, 'GET', '/v1/payments?limit=1', { key: m.key })).status).toBe(200);
    const paid = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    expect(paid.body.status).toBe('captured');

    const after = await scrape(h);
    expect(shed).toBe(3);
    expect(delta(before, after, 'switchyard_shed_requests_total')).toBe(shed);
    // The shed requests are in the latency histogram under their route and 503.
    expect(delta(before, after, 'switchyard_http_request_duration_seconds_count', { route: '/v1/payments', status: '503' })).toBe(shed);
  });
});

describe('read-only mode', () => {
  afterEach(async () => setReadOnly(h, false));

  it('refuses mutations with 503 READ_ONLY (storing nothing) while reads, the admin API and health work; off again, mutations work', async () => {
    const existing = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(existing.status, JSON.stringify(existing.body)).toBe(201);
    const before = {
      payments: await count('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [m.id]),
      refunds: await count('SELECT count(*)::int AS n FROM refunds WHERE payment_id = $1', [existing.body.id]),
      providerEvents: await count('SELECT count(*)::int AS n FROM provider_events', []),
      endpoints: await count('SELECT count(*)::int AS n FROM webhook_endpoints WHERE merchant_id = $1', [m.id]),
    };

    await setReadOnly(h, true);
    const state = await call(h, 'GET', '/v1/admin/read_only', { key: ADMIN_KEY });
    expect(state.status).toBe(200);
    expect(state.body).toEqual({ object: 'read_only', enabled: true });

    const b = body();
    const key = `ro_${b.reference_id as string}`;
    const refused = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': key } });
    expectError(refused, 503, 'READ_ONLY');
    retryAfter(refused, 1, 3600);
    expectError(await call(h, 'POST', `/v1/payments/${existing.body.id}/refunds`, { key: m.key, body: { amount: 1000 } }), 503, 'READ_ONLY');
    expectError(await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url: 'http://127.0.0.1:9/hooks' } }), 503, 'READ_ONLY');
    // Inbound provider webhooks are refused too (the provider retries them later).
    const inbound = await call(h, 'POST', '/v1/connectors/mock/webhooks', { raw: JSON.stringify({ id: 'evt_ro', type: 'charge.succeeded' }) });
    expectError(inbound, 503, 'READ_ONLY');
    retryAfter(inbound, 1, 3600);

    // Reads work.
    const one = await call(h, 'GET', `/v1/payments/${existing.body.id}`, { key: m.key });
    expect(one.status).toBe(200);
    expect(one.body.id).toBe(existing.body.id);
    const listed = await call(h, 'GET', '/v1/payments', { key: m.key });
    expect(listed.status).toBe(200);
    expect((listed.body.data as { id: string }[]).map((p) => p.id)).toContain(existing.body.id);
    // The admin API works (it is how read-only is turned off), and so does health.
    const merchant = await call(h, 'GET', `/v1/admin/merchants/${m.id}`, { key: ADMIN_KEY });
    expect(merchant.status).toBe(200);
    expect(merchant.body.id).toBe(m.id);
    expect((await call(h, 'GET', '/v1/admin/connectors', { key: ADMIN_KEY })).status).toBe(200);
    expect((await call(h, 'GET', '/health/readiness')).status).toBe(200);

    // Nothing was stored by the refused requests: no payment, refund, endpoint, provider event, key.
    expect({
      payments: await count('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [m.id]),
      refunds: await count('SELECT count(*)::int AS n FROM refunds WHERE payment_id = $1', [existing.body.id]),
      providerEvents: await count('SELECT count(*)::int AS n FROM provider_events', []),
      endpoints: await count('SELECT count(*)::int AS n FROM webhook_endpoints WHERE merchant_id = $1', [m.id]),
    }).toEqual(before);
    expect(await count('SELECT count(*)::int AS n FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [m.id, key])).toBe(0);

    await setReadOnly(h, false);
    expect((await call(h, 'GET', '/v1/admin/read_only', { key: ADMIN_KEY })).body).toEqual({ object: 'read_only', enabled: false });
    // The key the refused request carried was never taken: it creates the payment now.
    const created = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': key } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.headers.get('idempotent-replayed')).toBeNull();
    expect(created.body.status).toBe('captured');
    const refund = await call(h, 'POST', `/v1/payments/${existing.body.id}/refunds`, { key: m.key, body: { amount: 1000 } });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
  });

  it('the switch is stored in the database, so every process sees it', async () => {
    await setReadOnly(h, true);
    const r = await h.database.db.query<{ value: string }>(`SELECT value FROM settings WHERE name = 'read_only'`);
    expect(r.rows[0]?.value).toBe('true');
    await setReadOnly(h, false);
    const r2 = await h.database.db.query<{ value: string }>(`SELECT value FROM settings WHERE name = 'read_only'`);
    expect(r2.rows[0]?.value).toBe('false');
  });

  it('PUT /v1/admin/read_only needs the admin key and a strict boolean body', async () => {
    expectError(await call(h, 'PUT', '/v1/admin/read_only', { key: m.key, body: { enabled: true } }), 401, 'AUTH_INVALID_API_KEY');
    expect((await call(h, 'PUT', '/v1/admin/read_only', { key: ADMIN_KEY, body: { enabled: 'yes' } })).status).toBe(400);
    expect((await call(h, 'PUT', '/v1/admin/read_only', { key: ADMIN_KEY, body: { enabled: true, extra: 1 } })).status).toBe(400);
    expect((await call(h, 'GET', '/v1/admin/read_only', { key: ADMIN_KEY })).body.enabled).toBe(false);
  });
});

describe('request body limit', () => {
  it('a body over BODY_LIMIT_BYTES → 413 PAYLOAD_TOO_LARGE, and nothing is stored', async () => {
    const b = body({ description: 'x'.repeat(4096) });
    const key = `big_${b.reference_id as string}`;
    const before = await count('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [m.id]);
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': key } });
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(await count('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [m.id])).toBe(before);
    expect(await count('SELECT count(*)::int AS n FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [m.id, key])).toBe(0);
    // Just under the limit is parsed (and then judged on its content).
    const small = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ description: 'x'.repeat(200) }) });
    expect(small.status, JSON.stringify(small.body)).not.toBe(413);
  });
});
