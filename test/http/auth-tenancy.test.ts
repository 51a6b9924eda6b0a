/**
 * Authentication, the admin API and tenancy (SPEC §3, §4) over real HTTP and a real database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, startHarness, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body, expectError, ledger, type Json } from './helpers.js';

let h: Harness;
let a: MerchantWithKey;
let b: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  a = await createMerchant(h, HIGH_VELOCITY);
  b = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const merchantAttrs = { name: 'Acme', onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'gold' };

describe('API keys', () => {
  it('no key → 401 AUTH_MISSING_API_KEY, on reads and writes', async () => {
    expectError(await call(h, 'GET', '/v1/payments'), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(h, 'POST', '/v1/payments', { body: body() }), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(h, 'GET', '/v1/payments', { headers: { 'x-api-key': '' } }), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(h, 'GET', '/v1/payments', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401, 'AUTH_MISSING_API_KEY');
  });

  it('a wrong key → 401 AUTH_INVALID_API_KEY, through either header', async () => {
    const wrong = `sk_test_${'x'.repeat(32)}`;
    expectError(await call(h, 'GET', '/v1/payments', { key: wrong }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(h, 'GET', '/v1/payments', { headers: { authorization: `Bearer ${wrong}` } }), 401, 'AUTH_INVALID_API_KEY');
    // A real key with one character changed.
    const altered = a.key.slice(0, -1) + (a.key.endsWith('A') ? 'B' : 'A');
    expectError(await call(h, 'GET', '/v1/payments', { key: altered }), 401, 'AUTH_INVALID_API_KEY');
    // Nothing was created by a refused write.
    const res = await call(h, 'POST', '/v1/payments', { key: wrong, body: body() });
    expectError(res, 401, 'AUTH_INVALID_API_KEY');
    const count = await h.database.db.query('SELECT count(*)::int AS n FROM payments');
    const before = count.rows[0].n;
    expectError(await call(h, 'POST', '/v1/payments', { key: wrong, body: body() }), 401, 'AUTH_INVALID_API_KEY');
    expect((await h.database.db.query('SELECT count(*)::int AS n FROM payments')).rows[0].n).toBe(before);
  });

  it('accepts the key as X-Api-Key and as Authorization: Bearer', async () => {
    const viaHeader = await call(h, 'POST', '/v1/payments', { key: a.key, body: body() });
    expect(viaHeader.status, JSON.stringify(viaHeader.body)).toBe(201);
    const viaBearer = await call(h, 'POST', '/v1/payments', { headers: { authorization: `Bearer ${a.key}` }, body: body() });
    expect(viaBearer.status, JSON.stringify(viaBearer.body)).toBe(201);
    // Both act for the same merchant: each sees the other's payment.
    const seen = await call(h, 'GET', `/v1/payments/${viaHeader.body.id}`, { headers: { authorization: `Bearer ${a.key}` } });
    expect(seen.status).toBe(200);
    const seen2 = await call(h, 'GET', `/v1/payments/${viaBearer.body.id}`, { key: a.key });
    expect(seen2.status).toBe(200);
  });

  it('a revoked key → 401, while the merchant\u2019s other keys keep working', async () => {
    const mer = await createMerchant(h);
    const second = await call(h, 'POST', `/v1/admin/merchants/${mer.id}/api_keys`, { key: ADMIN_KEY });
    expect(second.status).toBe(201);
    const key2 = second.body.key as string;
    expect((await call(h, 'GET', '/v1/payments', { key: key2 })).status).toBe(200);

    // Only the admin may revoke.
    expectError(await call(h, 'DELETE', `/v1/admin/api_keys/${second.body.id}`, { key: key2 }), 401, 'AUTH_INVALID_API_KEY');
    expect((await call(h, 'GET', '/v1/payments', { key: key2 })).status).toBe(200);

    const revoked = await call(h, 'DELETE', `/v1/admin/api_keys/${second.body.id}`, { key: ADMIN_KEY });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.body).toMatchObject({ id: second.body.id, revoked: true });
    expectError(await call(h, 'GET', '/v1/payments', { key: key2 }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(h, 'GET', '/v1/payments', { headers: { authorization: `Bearer ${key2}` } }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(h, 'POST', '/v1/payments', { key: key2, body: body() }), 401, 'AUTH_INVALID_API_KEY');
    expect((await call(h, 'GET', '/v1/payments', { key: mer.key })).status).toBe(200);
    // Revoking twice is harmless; an unknown key id is 404.
    expect((await call(h, 'DELETE', `/v1/admin/api_keys/${second.body.id}`, { key: ADMIN_KEY })).status).toBe(200);
    expectError(await call(h, 'DELETE', '/v1/admin/api_keys/key_doesnotexist', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
  });
});

describe('admin endpoints', () => {
  const adminCalls = (merchantId: string): [string, string, unknown][] => [
    ['POST', '/v1/admin/merchants', merchantAttrs],
    ['GET', `/v1/admin/merchants/${merchantId}`, undefined],
    ['PATCH', `/v1/admin/merchants/${merchantId}`, { name: 'Hijacked' }],
    ['POST', `/v1/admin/merchants/${merchantId}/api_keys`, undefined],
    ['DELETE', '/v1/admin/api_keys/key_whatever', undefined],
    ['GET', '/v1/admin/connectors/mock/ledger?payment_id=pay_x', undefined],
  ];

  it('refuse a merchant key (401 AUTH_INVALID_API_KEY) and no key (401 AUTH_MISSING_API_KEY)', async () => {
    for (const [method, path, payload] of adminCalls(a.id)) {
      expectError(await call(h, method, path, { key: a.key, body: payload }), 401, 'AUTH_INVALID_API_KEY');
      expectError(await call(h, method, path, { headers: { authorization: `Bearer ${a.key}` }, body: payload }), 401, 'AUTH_INVALID_API_KEY');
      expectError(await call(h, method, path, { body: payload }), 401, 'AUTH_MISSING_API_KEY');
    }
    // Nothing changed: the merchant keeps its name, and only the keys made in this file exist for it.
    const m = await call(h, 'GET', `/v1/admin/merchants/${a.id}`, { key: ADMIN_KEY });
    expect(m.body.name).toBe('Test Merchant');
    const keys = await h.database.db.query('SELECT count(*)::int AS n FROM api_keys WHERE merchant_id = $1', [a.id]);
    expect(keys.rows[0].n).toBe(1);
  });

  it('accept the admin key through either header', async () => {
    expect((await call(h, 'GET', `/v1/admin/merchants/${a.id}`, { key: ADMIN_KEY })).status).toBe(200);
    expect((await call(h, 'GET', `/v1/admin/merchants/${a.id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status).toBe(200);
  });

  it('the admin key is not a merchant key', async () => {
    expectError(await call(h, 'GET', '/v1/payments', { key: ADMIN_KEY }), 401, 'AUTH_INVALID_API_KEY');
    expectError(await call(h, 'POST', '/v1/payments', { key: ADMIN_KEY, body: body() }), 401, 'AUTH_INVALID_API_KEY');
  });

  it('POST /v1/admin/merchants creates a merchant with the defaults for what is omitted', async () => {
    const res = await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: merchantAttrs });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const m = res.body;
    expect(m.id).toMatch(/^mer_[0-9a-z]+$/);
    expect(m.object).toBe('merchant');
    expect(m).toMatchObject(merchantAttrs);
    expect(m.limits.velocity).toEqual({ max_payments: 10, window_seconds: 300 });
    expect(Object.keys(m.limits.payment_methods).sort()).toEqual(['card', 'netbanking', 'upi', 'wallet']);
    expect(m.limits.payment_methods.card).toEqual({ min: 10_000 });
    expect(m.limits.payment_methods.upi).toEqual({ max: 20_000_000 });
    expect(m.limits.payment_methods.netbanking).toEqual({});
    expect(m.limits.compliance_reporting_threshold).toEqual({ INR: 20_000_000 });
    expect(m.connectors).toEqual([{ name: 'mock', weight: 100 }]);
    expect(new Date(m.created_at).toISOString()).toBe(m.created_at);

    const got = await call(h, 'GET', `/v1/admin/merchants/${m.id}`, { key: ADMIN_KEY });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(m);
  });

  it('POST /v1/admin/merchants keeps the limits given, and defaults only the groups omitted', async () => {
    const res = await call(h, 'POST', '/v1/admin/merchants', {
      key: ADMIN_KEY,
      body: {
        ...merchantAttrs,
        rate_tier: 'platinum',
        limits: {
          velocity: { max_payments: 25, window_seconds: 60 },
          payment_methods: { upi: { max: 20_000_000 }, card: { min: 10_000 }, netbanking: {} },
        },
        connectors: [{ name: 'mock', weight: 100 }],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.rate_tier).toBe('platinum');
    expect(res.body.limits.velocity).toEqual({ max_payments: 25, window_seconds: 60 });
    expect(Object.keys(res.body.limits.payment_methods).sort()).toEqual(['card', 'netbanking', 'upi']);
    expect(res.body.limits.compliance_reporting_threshold).toEqual({ INR: 20_000_000 });
  });

  it('POST /v1/admin/merchants validates its body', async () => {
    const { name: _omit, ...noName } = merchantAttrs;
    expectError(await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: noName }), 400, 'SCHEMA_MISSING_FIELD');
    expectError(await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: { ...merchantAttrs, onboarding_status: 'live' } }), 400, 'SCHEMA_INVALID_FIELD');
    expectError(await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: { ...merchantAttrs, colour: 'red' } }), 400, 'SCHEMA_INVALID_FIELD');
    expectError(
      await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: { ...merchantAttrs, limits: { velocity: { max_payments: 0, window_seconds: 60 } } } }),
      400,
      'SCHEMA_INVALID_FIELD',
    );
  });

  it('PATCH /v1/admin/merchants/{id} changes what is given and keeps the rest', async () => {
    const created = await call(h, 'POST', '/v1/admin/merchants', { key: ADMIN_KEY, body: merchantAttrs });
    const id = created.body.id as string;
    const res = await call(h, 'PATCH', `/v1/admin/merchants/${id}`, {
      key: ADMIN_KEY,
      body: { name: 'Acme Two', rate_tier: 'silver', limits: { velocity: { max_payments: 3, window_seconds: 30 } } },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ id, object: 'merchant', name: 'Acme Two', rate_tier: 'silver', onboarding_status: 'activated', kyc_status: 'approved' });
    expect(res.body.limits.velocity).toEqual({ max_payments: 3, window_seconds: 30 });
    expect(res.body.limits.payment_methods).toEqual(created.body.limits.payment_methods);
    expect(res.body.created_at).toBe(created.body.created_at);
    const got = await call(h, 'GET', `/v1/admin/merchants/${id}`, { key: ADMIN_KEY });
    expect(got.body).toEqual(res.body);

    expectError(await call(h, 'PATCH', '/v1/admin/merchants/mer_doesnotexist', { key: ADMIN_KEY, body: { name: 'x' } }), 404, 'RESOURCE_NOT_FOUND');
    expectError(await call(h, 'PATCH', `/v1/admin/merchants/${id}`, { key: ADMIN_KEY, body: { kyc_status: 'maybe' } }), 400, 'SCHEMA_INVALID_FIELD');
    expectError(await call(h, 'GET', '/v1/admin/merchants/mer_doesnotexist', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
  });

  it('POST /v1/admin/merchants/{id}/api_keys answers the clear key once, and only a hash is stored', async () => {
    const mer = await createMerchant(h);
    const res = await call(h, 'POST', `/v1/admin/merchants/${mer.id}/api_keys`, {
      key: ADMIN_KEY,
      headers: { 'idempotency-key': `key-create-${mer.id}` },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const key = res.body.key as string;
    expect(res.body.id).toMatch(/^key_[0-9a-z]+$/);
    expect(key).toMatch(/^sk_test_[A-Za-z0-9_-]{20,}$/);
    expect(res.body.prefix).toMatch(/^sk_test_.+/);
    expect(key.startsWith(res.body.prefix)).toBe(true);
    expect(res.body.prefix.length).toBeLessThan(key.length - 8);
    // The key works...
    const used = await call(h, 'POST', '/v1/payments', { key, body: body(), headers: { 'idempotency-key': 'after-key-create' } });
    expect(used.status, JSON.stringify(used.body)).toBe(201);
    // ...yet neither it nor its secret part is anywhere in the database.
    const secretPart = key.slice(res.body.prefix.length);
    for (const table of ['api_keys', 'idempotency_keys']) {
      const rows = await h.database.db.query(`SELECT t::text AS row FROM ${table} t`);
      expect(rows.rows.length, table).toBeGreaterThan(0);
      for (const r of rows.rows as { row: string }[]) {
        expect(r.row).not.toContain(key);
        expect(r.row).not.toContain(secretPart);
      }
    }
    const stored = await h.database.db.query('SELECT prefix, key_hash FROM api_keys WHERE id = $1', [res.body.id]);
    expect(stored.rows[0].prefix).toBe(res.body.prefix);
    expect(Buffer.isBuffer(stored.rows[0].key_hash)).toBe(true);
    expect(stored.rows[0].key_hash.toString('utf8')).not.toContain(secretPart);
    // Every table, not only those two.
    const tables = await h.database.db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    );
    for (const { table_name } of tables.rows) {
      const hits = await h.database.db.query(`SELECT count(*)::int AS n FROM "${table_name}" t WHERE t::text LIKE $1`, [`%${secretPart}%`]);
      expect(hits.rows[0].n, table_name).toBe(0);
    }
    // Nor in the logs.
    expect(h.logs.join('')).not.toContain(secretPart);
    // A second key for the same merchant is a different key.
    const again = await call(h, 'POST', `/v1/admin/merchants/${mer.id}/api_keys`, { key: ADMIN_KEY });
    expect(again.status).toBe(201);
    expect(again.body.key).not.toBe(key);
    expect(again.body.id).not.toBe(res.body.id);
    expectError(await call(h, 'POST', '/v1/admin/merchants/mer_doesnotexist/api_keys', { key: ADMIN_KEY }), 404, 'RESOURCE_NOT_FOUND');
  });
});

describe('tenancy', () => {
  interface AObjects {
    captured: Json;
    authorized: Json;
    pending: Json;
    refund: Json;
  }
  let objs: AObjects;

  beforeAll(async () => {
    const captured = await call(h, 'POST', '/v1/payments', { key: a.key, body: body() });
    const authorized = await call(h, 'POST', '/v1/payments', { key: a.key, body: body({ capture_method: 'manual' }) });
    const pending = await call(h, 'POST', '/v1/payments', { key: a.key, body: body({ confirm: false }) });
    expect([captured.status, authorized.status, pending.status]).toEqual([201, 201, 201]);
    const refund = await call(h, 'POST', `/v1/payments/${captured.body.id}/refunds`, { key: a.key, body: { amount: 10_000 } });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);
    objs = { captured: captured.body, authorized: authorized.body, pending: pending.body, refund: refund.body };
  });

  async function snapshotA(): Promise<unknown> {
    const ids = [objs.captured.id, objs.authorized.id, objs.pending.id];
    const payments = await h.database.db.query('SELECT id, status, version, event_sequence, amount_captured, amount_capturable, amount_refunded, updated_at FROM payments WHERE id = ANY($1) ORDER BY id', [ids]);
    const refunds = await h.database.db.query('SELECT id, status, amount FROM refunds WHERE payment_id = ANY($1) ORDER BY id', [ids]);
    const attempts = await h.database.db.query('SELECT id, status FROM payment_attempts WHERE payment_id = ANY($1) ORDER BY id', [ids]);
    const ledgers = await Promise.all(ids.map((id) => ledger(h, id)));
    return { payments: payments.rows, refunds: refunds.rows, attempts: attempts.rows, ledgers };
  }

  it("merchant A's ids answer 404 RESOURCE_NOT_FOUND for merchant B on every endpoint, and nothing changes for A", async () => {
    const before = await snapshotA();
    const { captured, authorized, pending, refund } = objs;
    const probes: [string, string, unknown][] = [
      ['GET', `/v1/payments/${captured.id}`, undefined],
      ['GET', `/v1/payments/${captured.id}/attempts`, undefined],
      ['GET', `/v1/payments/${captured.id}/history`, undefined],
      ['GET', `/v1/payments/${captured.id}/refunds`, undefined],
      ['GET', `/v1/payments/${captured.id}/events`, undefined],
      ['GET', `/v1/refunds/${refund.id}`, undefined],
      ['POST', `/v1/payments/${pending.id}/confirm`, undefined],
      ['POST', `/v1/payments/${authorized.id}/capture`, { amount: 1_000 }],
      ['POST', `/v1/payments/${authorized.id}/capture`, undefined],
      ['POST', `/v1/payments/${authorized.id}/cancel`, undefined],
      ['POST', `/v1/payments/${pending.id}/cancel`, undefined],
      ['POST', `/v1/payments/${captured.id}/refunds`, { amount: 1_000 }],
      ['POST', `/v1/payments/${captured.id}/refunds`, undefined],
    ];
    for (const [method, path, payload] of probes) {
      const res = await call(h, method, path, { key: b.key, body: payload });
      const err = expectError(res, 404, 'RESOURCE_NOT_FOUND');
      // The answer is the same as for an id that does not exist at all: nothing about A leaks.
      expect(JSON.stringify(res.body)).not.toContain(a.id);
      expect(err.details?.status).toBeUndefined();
      // With an idempotency key too.
      const keyed = await call(h, method, path, { key: b.key, body: payload, headers: { 'idempotency-key': `probe-${method}-${path}` } });
      expectError(keyed, 404, 'RESOURCE_NOT_FOUND');
    }
    // B's list does not show A's payments.
    const list = await call(h, 'GET', `/v1/payments?reference_id=${encodeURIComponent(captured.reference_id)}`, { key: b.key });
    expect(list.status).toBe(200);
    expect(list.body.data).toEqual([]);
    const all = await call(h, 'GET', '/v1/payments?limit=100', { key: b.key });
    const bIds = (all.body.data as { id: string }[]).map((p) => p.id);
    for (const id of [captured.id, authorized.id, pending.id]) expect(bIds).not.toContain(id);

    expect(await snapshotA()).toEqual(before);
    // And A still sees and can act on its own objects.
    expect((await call(h, 'GET', `/v1/payments/${captured.id}`, { key: a.key })).body.status).toBe('captured');
    expect((await call(h, 'GET', `/v1/refunds/${refund.id}`, { key: a.key })).body.status).toBe('succeeded');
    const capture = await call(h, 'POST', `/v1/payments/${authorized.id}/capture`, { key: a.key });
    expect(capture.status, JSON.stringify(capture.body)).toBe(200);
    expect(capture.body.status).toBe('captured');
  });

  it('unknown ids answer the same 404 to their would-be owner', async () => {
    for (const path of ['/v1/payments/pay_doesnotexist', '/v1/payments/pay_doesnotexist/events', '/v1/refunds/re_doesnotexist']) {
      expectError(await call(h, 'GET', path, { key: a.key }), 404, 'RESOURCE_NOT_FOUND');
    }
    expectError(await call(h, 'POST', '/v1/payments/pay_doesnotexist/refunds', { key: a.key, body: {} }), 404, 'RESOURCE_NOT_FOUND');
  });

  it('the same reference is free for another merchant', async () => {
    const reference = objs.captured.reference_id as string;
    const res = await call(h, 'POST', '/v1/payments', { key: b.key, body: body({ reference_id: reference }) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.id).not.toBe(objs.captured.id);
  });
});
