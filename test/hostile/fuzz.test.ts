/**
 * Hostile input: ≥ 10,000 generated requests against every POST body and list query — malformed
 * JSON, wrong types, huge numbers, unicode, deep nesting, oversized bodies, card numbers in any
 * field. Never a 5xx, every error in the documented shape, no stack trace, and no raw card number
 * ever stored or logged.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCardNumber } from '../../src/domain/sensitive-data.js';
import { ADMIN_KEY, call, createMerchant, startHarness, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';

let h: Harness;
let m: MerchantWithKey;
let paymentId: string;
let requests = 0;

beforeAll(async () => {
  h = await startHarness({ RATE_LIMIT_PLATINUM: '100000', RATE_LIMIT_GLOBAL: '100000', LOG_LEVEL: 'info' });
  m = await createMerchant(h, { rate_tier: 'platinum', limits: { velocity: { max_payments: 1_000_000, window_seconds: 60 } } });
  const p = await call(h, 'POST', '/v1/payments', {
    key: m.key,
    body: { amount: 150000, currency: 'INR', payment_method: 'card', payment_method_token: 'tok_success', reference_id: 'fuzz_seed', customer: { email: 'f@example.com', phone: '+919876543210' }, capture_method: 'manual' },
  });
  paymentId = p.body.id;
});
afterAll(async () => h?.close());

const ERROR_KEYS = ['code', 'message', 'layer', 'details', 'request_id'];

function checkResponse(res: ApiResponse, what: string): void {
  requests += 1;
  const text = JSON.stringify(res.body);
  expect(res.status, `${what} → ${res.status} ${text.slice(0, 300)}`).toBeLessThan(500);
  expect(text, what).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\.ts:\d+/); // no stack trace
  if (res.status >= 400) {
    expect(Object.keys(res.body ?? {}), `${what}: ${text.slice(0, 200)}`).toEqual(['error']);
    const e = res.body.error;
    expect(typeof e.code, what).toBe('string');
    expect(e.code, what).toMatch(/^[A-Z_]+$/);
    expect(typeof e.message, what).toBe('string');
    expect(e.request_id, what).toBe(res.headers.get('x-request-id'));
    for (const k of Object.keys(e)) expect(ERROR_KEYS, what).toContain(k);
  }
}

// A Luhn-valid card number of 13–19 digits.
const pan = fc
  .tuple(fc.integer({ min: 12, max: 18 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }), fc.constantFrom('', ' ', '-'))
  .map(([len, digits, sep]) => {
    const body = [4, ...digits].slice(0, len);
    let sum = 0;
    for (let i = 0; i < body.length; i++) {
      let d = body[body.length - 1 - i]!;
      if (i % 2 === 0) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    const all = [...body, (10 - (sum % 10)) % 10].join('');
    return sep ? all.replace(/(\d{4})(?=\d)/g, `$1${sep}`) : all;
  });

const weird = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER, 2 ** 63, 0, -0, 1e12, 1e12 + 1, 0.5),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue(), { maxKeys: 3 }),
  pan,
);

// Text PostgreSQL cannot store: NUL and lone surrogates (a paired one, an emoji, is fine).
const unstorable = fc.tuple(fc.string({ maxLength: 6 }), fc.constantFrom('\u0000', '\ud800', '\udc00', '\ud83d\ude00')).map(([s, bad]) => s + bad);

const FIELDS = ['amount', 'currency', 'payment_method', 'payment_method_token', 'reference_id', 'customer', 'capture_method', 'confirm', 'description', 'metadata'] as const;

/** A valid payment with zero to two fields broken: removed, replaced by something odd, or an extra field. */
const paymentBody = fc
  .record({
    amount: fc.integer({ min: 10_000, max: 5_000_000 }),
    currency: fc.constantFrom('INR', 'USD', 'JPY'),
    payment_method: fc.constantFrom('card', 'upi', 'netbanking', 'wallet'),
    payment_method_token: fc.constantFrom('tok_success', 'tok_success', 'tok_decline', 'tok_insufficient_funds'),
    reference_id: fc.stringMatching(/^[a-z_]{8,20}$/),
    customer: fc.record({ email: fc.constant('fuzz@example.com'), phone: fc.constant('+919876543210'), name: fc.string({ unit: 'grapheme', maxLength: 20 }) }),
    capture_method: fc.constantFrom('automatic', 'manual'),
    metadata: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== 'compliance_flags'), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
  })
  .chain((base) =>
    fc
      .array(
        fc.oneof(
          fc.constantFrom(...FIELDS).map((f) => ({ kind: 'drop' as const, f, v: undefined as unknown })),
          fc.tuple(fc.constantFrom(...FIELDS), weird).map(([f, v]) => ({ kind: 'set' as const, f, v })),
          fc.tuple(fc.string({ maxLength: 12 }), weird).map(([f, v]) => ({ kind: 'extra' as const, f, v })),
        ),
        { maxLength: 2 },
      )
      .map((mutations) => {
        const b: Record<string, unknown> = { ...base };
        for (const { kind, f, v } of mutations) {
          if (kind === 'drop') delete b[f];
          else b[f] = v;
        }
        return b;
      }),
  );

function nest(depth: number): unknown {
  let v: unknown = 'x';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

/** A body as raw text: JSON of something, or not JSON at all. */
const rawBody = fc.oneof(
  { weight: 4, arbitrary: paymentBody.map((b) => JSON.stringify(b)) },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.constantFrom('{', '{"amount":', '[1,2', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', 'null', '""', '\u0000', '{"a":1}garbage') },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }).map((d) => JSON.stringify(nest(d))) },
  { weight: 1, arbitrary: fc.constant(JSON.stringify({ description: 'x'.repeat(70 * 1024) })) },
  { weight: 1, arbitrary: fc.tuple(paymentBody, unstorable, fc.constantFrom('description', 'reference_id', 'payment_method_token', 'metadata', 'customer')).map(([b, t, f]) => JSON.stringify({ ...b, [f]: f === 'metadata' ? { note: t } : f === 'customer' ? { email: 'f@example.com', phone: '+919876543210', name: t } : t })) },
  { weight: 1, arbitrary: fc.tuple(paymentBody, pan, fc.constantFrom('description', 'reference_id', 'payment_method_token', 'metadata')).map(([b, p, f]) => JSON.stringify({ ...b, [f]: f === 'metadata' ? { note: `card ${p}` } : p })) },
);

const secondStepPaths = () =>
  fc.oneof(
    fc.constantFrom('confirm', 'capture', 'cancel', 'refunds').map((op) => `/v1/payments/${paymentId}/${op}`),
    fc.tuple(fc.string({ maxLength: 30 }), fc.constantFrom('confirm', 'capture', 'cancel', 'refunds')).map(([id, op]) => `/v1/payments/${encodeURIComponent(id) || 'x'}/${op}`),
  );

const secondStepBody = fc.oneof(
  fc.record({ amount: fc.oneof(fc.integer({ min: 1, max: 200000 }), weird), reason: fc.oneof(fc.string({ maxLength: 20 }), weird) }, { requiredKeys: [] }).map((b) => JSON.stringify(b)),
  rawBody,
);

const queryValue = fc.oneof(fc.string({ maxLength: 30 }), pan, unstorable, fc.integer().map(String), fc.constantFrom('captured', '-1', '1000', 'pay_x', '2026-13-45T99:99:99Z'));
const query = fc
  .dictionary(fc.constantFrom('status', 'reference_id', 'limit', 'starting_after', 'created[gte]', 'created[lt]', 'type', 'endpoint_id', 'bogus'), queryValue, { maxKeys: 4 })
  .map((q) => new URLSearchParams(q).toString());

const contentType = fc.constantFrom('application/json', 'application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8');

describe('hostile input', () => {
  it('POST /v1/payments with 5,000 generated bodies', async () => {
    await fc.assert(
      fc.asyncProperty(rawBody, contentType, fc.option(fc.string({ maxLength: 300 }), { nil: undefined }), async (raw, ct, key) => {
        const headers: Record<string, string> = { 'content-type': ct };
        if (key !== undefined && /^[\x20-\x7e]*$/.test(key)) headers['idempotency-key'] = key;
        checkResponse(await call(h, 'POST', '/v1/payments', { key: m.key, raw, headers }), `POST /v1/payments ${raw.slice(0, 120)}`);
      }),
      { numRuns: 5000 },
    );
  });

  it('confirm, capture, cancel and refunds with 2,500 generated requests', async () => {
    await fc.assert(
      fc.asyncProperty(secondStepPaths(), secondStepBody, async (path, raw) => {
        checkResponse(await call(h, 'POST', path, { key: m.key, raw }), `POST ${path} ${raw.slice(0, 120)}`);
      }),
      { numRuns: 2500 },
    );
  });

  it('webhook endpoints, replays and admin merchants with 1,500 generated requests', async () => {
    const endpointBody = fc.oneof(
      fc.record({ url: fc.oneof(fc.webUrl(), fc.constantFrom('http://127.0.0.1:1/x', 'ftp://x', 'javascript:alert(1)'), weird), enabled_events: fc.oneof(fc.array(fc.constantFrom('*', 'payment.*', 'payment.captured', 'bad..type', '**'), { maxLength: 3 }), weird), description: fc.oneof(weird, unstorable) }, { requiredKeys: [] }).map((b) => JSON.stringify(b)),
      rawBody,
    );
    const merchantBody = fc.oneof(
      fc.record({ name: weird, onboarding_status: fc.oneof(fc.constantFrom('activated', 'review'), weird), kyc_status: weird, kyc_tier: weird, rate_tier: weird, limits: weird, connectors: weird }, { requiredKeys: [] }).map((b) => JSON.stringify(b)),
      rawBody,
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          endpointBody.map((raw) => ({ path: '/v1/webhook_endpoints', raw, key: m.key })),
          merchantBody.map((raw) => ({ path: '/v1/admin/merchants', raw, key: ADMIN_KEY })),
          fc.tuple(fc.string({ maxLength: 20 }), rawBody).map(([id, raw]) => ({ path: `/v1/events/${encodeURIComponent(id) || 'x'}/redeliver`, raw, key: m.key })),
          fc.tuple(fc.string({ maxLength: 20 }), rawBody).map(([id, raw]) => ({ path: `/v1/webhook_deliveries/${encodeURIComponent(id) || 'x'}/retry`, raw, key: m.key })),
        ),
        async ({ path, raw, key }) => checkResponse(await call(h, 'POST', path, { key, raw }), `POST ${path} ${raw.slice(0, 120)}`),
      ),
      { numRuns: 1500 },
    );
  });

  it('list queries with 1,000 generated query strings', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/v1/payments', '/v1/events', '/v1/webhook_deliveries'), query, async (path, q) => {
        checkResponse(await call(h, 'GET', `${path}?${q}`, { key: m.key }), `GET ${path}?${q}`);
      }),
      { numRuns: 1000 },
    );
  });

  it('stored nothing and logged nothing that holds a card number', async () => {
    expect(requests).toBeGreaterThanOrEqual(10_000);
    // The generators reach past validation too: payments were created, declined and refunded.
    const statuses = (await h.database.db.query(`SELECT status, count(*)::int AS n FROM payments GROUP BY status`)).rows;
    const created = statuses.reduce((n: number, r: { n: number }) => n + r.n, 0);
    expect(created, JSON.stringify(statuses)).toBeGreaterThan(100);
    for (const table of ['payments', 'payment_attempts', 'refunds', 'events', 'idempotency_keys', 'merchants', 'webhook_endpoints', 'payment_status_history']) {
      const rows = (await h.database.db.query(`SELECT to_jsonb(t) AS row FROM ${table} t`)).rows;
      for (const { row } of rows) expect(findCardNumber(row), `${table}: ${JSON.stringify(row).slice(0, 200)}`).toBeNull();
    }
    expect(h.logs.length).toBeGreaterThan(10_000);
    for (const line of h.logs) expect(findCardNumber(JSON.parse(line)), line.slice(0, 200)).toBeNull();
  });
});
