/**
 * The five-layer validation pipeline of POST /v1/payments (SPEC §4, §5) over real HTTP and a real
 * database: exact status, code and error shape for every layer, and the order of the layers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, startHarness, waitFor, type Harness, type MerchantWithKey } from '../support/harness.js';
import { HIGH_VELOCITY, body as paymentBody, expectError, ledger, luhnValid, ref, type Json } from './helpers.js';

let h: Harness;
let m: MerchantWithKey;

beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h, HIGH_VELOCITY);
});
afterAll(async () => h?.close());

const pay = (key: string, body: unknown, headers?: Record<string, string>) => call(h, 'POST', '/v1/payments', { key, body, headers });

async function paymentsForReference(key: string, reference: string): Promise<Json[]> {
  const res = await call(h, 'GET', `/v1/payments?reference_id=${encodeURIComponent(reference)}`, { key });
  expect(res.status).toBe(200);
  return res.body.data as Json[];
}

async function patchMerchant(id: string, body: Record<string, unknown>): Promise<Json> {
  const res = await call(h, 'PATCH', `/v1/admin/merchants/${id}`, { key: ADMIN_KEY, body });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

describe('TC1: a valid payment', () => {
  it('answers 201 with the full payment object, captured under automatic capture', async () => {
    const body = paymentBody({ description: 'Order 1', metadata: { order: 'A-1' }, customer: { email: 'asha@example.com', phone: '+919876543210', name: 'Asha' } });
    const res = await pay(m.key, body);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const p = res.body;
    expect(p.id).toMatch(/^pay_[0-9a-z]+$/);
    expect(p.object).toBe('payment');
    expect(p.status).toBe('captured');
    expect(p.amount).toBe(150_000);
    expect(p.currency).toBe('INR');
    expect(p.amount_captured).toBe(150_000);
    expect(p.amount_capturable).toBe(0);
    expect(p.amount_refunded).toBe(0);
    expect(p.payment_method).toBe('card');
    expect(p.reference_id).toBe(body.reference_id);
    // Contact data is masked in logs, not in the API.
    expect(p.customer).toEqual({ email: 'asha@example.com', phone: '+919876543210', name: 'Asha' });
    expect(p.capture_method).toBe('automatic');
    expect(p.connector).toBe('mock');
    expect(p.description).toBe('Order 1');
    expect(p.metadata).toEqual({ order: 'A-1', compliance_flags: [] });
    expect(p.reconciliation_status).toBe('synced');
    expect(new Date(p.created_at).toISOString()).toBe(p.created_at);
    expect(new Date(p.updated_at).toISOString()).toBe(p.updated_at);
    // The token never comes back.
    expect(JSON.stringify(p)).not.toContain('tok_success');
    const rows = await ledger(h, p.id);
    // An automatic capture is one authorization that the provider captured at once.
    expect(rows.map((r) => [r.operation, r.amount, r.currency])).toEqual([
      ['authorize', 150_000, 'INR'],
      ['capture', 150_000, 'INR'],
    ]);
  });

  it('an automatic capture leaves one event and one history row per step, each showing the payment as it stood then', async () => {
    const res = await pay(m.key, paymentBody(), { 'x-request-id': `req-steps-${ref()}` });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const p = res.body;
    const events = (
      await h.database.db.query(`SELECT type, sequence, previous_status, correlation_id, data FROM events WHERE payment_id = $1 ORDER BY sequence`, [p.id])
    ).rows;
    expect(events.map((e) => [e.type, Number(e.sequence), e.previous_status])).toEqual([
      ['payment.created', 1, null],
      ['payment.processing', 2, 'pending'],
      ['payment.captured', 3, 'processing'],
    ]);
    const objects = events.map((e) => e.data.object);
    expect(objects.map((o) => o.status)).toEqual(['pending', 'processing', 'captured']);
    // The step in between shows the payment before the outcome's changes; the last one shows them all.
    expect([objects[1].amount_captured, objects[1].connector]).toEqual([0, null]);
    expect(objects[2]).toEqual(p);
    expect(events.every((e) => e.correlation_id === res.headers.get('x-request-id'))).toBe(true);
    const history = (
      await h.database.db.query(`SELECT from_status, to_status, cause, request_id FROM payment_status_history WHERE payment_id = $1 ORDER BY id`, [p.id])
    ).rows;
    expect(history.map((r) => [r.from_status, r.to_status])).toEqual([
      [null, 'pending'],
      ['pending', 'processing'],
      ['processing', 'captured'],
    ]);
    expect(history[1].cause).toBe(history[2].cause);
    expect(history.every((r) => r.request_id === res.headers.get('x-request-id'))).toBe(true);
    const row = (await h.database.db.query('SELECT version, event_sequence FROM payments WHERE id = $1', [p.id])).rows[0];
    expect(Number(row.event_sequence)).toBe(3);
  });

  it('answers 201 authorized with capture_method manual', async () => {
    const res = await pay(m.key, paymentBody({ capture_method: 'manual' }));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('authorized');
    expect(res.body.capture_method).toBe('manual');
    expect(res.body.amount_capturable).toBe(150_000);
    expect(res.body.amount_captured).toBe(0);
  });

  it('echoes a given X-Request-Id, and generates one otherwise', async () => {
    const given = `req-test-${ref()}`;
    const ok = await pay(m.key, paymentBody(), { 'x-request-id': given });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('x-request-id')).toBe(given);

    const bad = await pay(m.key, paymentBody({ amount: -5 }), { 'x-request-id': `${given}-bad` });
    const err = expectError(bad, 400, 'SCHEMA_INVALID_AMOUNT', 'schema');
    expect(err.request_id).toBe(`${given}-bad`);

    const generated = await pay(m.key, paymentBody({ amount: -5 }));
    const id = generated.headers.get('x-request-id');
    expect(id).toBeTruthy();
    expect(id).not.toBe(`${given}-bad`);
    expect(expectError(generated, 400, 'SCHEMA_INVALID_AMOUNT').request_id).toBe(id);

    // An unusable given id (spaces, too long) is replaced by a generated one.
    for (const unusable of ['has spaces in it', 'x'.repeat(200)]) {
      const res = await pay(m.key, paymentBody({ amount: -5 }), { 'x-request-id': unusable });
      const rid = res.headers.get('x-request-id');
      expect(rid).toBeTruthy();
      expect(rid).not.toBe(unusable);
      expect(expectError(res, 400, 'SCHEMA_INVALID_AMOUNT').request_id).toBe(rid);
    }
  });
});

describe('layer 1: schema (400)', () => {
  it('refuses a missing amount with SCHEMA_MISSING_FIELD', async () => {
    const body = paymentBody();
    delete body.amount;
    const err = expectError(await pay(m.key, body), 400, 'SCHEMA_MISSING_FIELD', 'schema');
    expect(err.details).toEqual({ field: 'amount' });
    expect(await paymentsForReference(m.key, body.reference_id as string)).toHaveLength(0);
  });

  it('refuses a missing nested field with SCHEMA_MISSING_FIELD', async () => {
    const err = expectError(await pay(m.key, paymentBody({ customer: { phone: '+919876543210' } })), 400, 'SCHEMA_MISSING_FIELD', 'schema');
    expect(err.details).toEqual({ field: 'customer.email' });
  });

  it.each([
    ['negative', -100],
    ['zero', 0],
    ['a float', 150_000.5],
    ['a string', '150000'],
    ['above 10^12', 1_000_000_000_001],
    ['far above 10^12', 10_000_000_000_000],
    ['null', null],
  ])('refuses an amount that is %s with SCHEMA_INVALID_AMOUNT', async (_what, amount) => {
    if (typeof amount === 'number' && amount >= 1e12) expect(luhnValid(String(amount))).toBe(false);
    const body = paymentBody({ amount });
    const err = expectError(await pay(m.key, body), 400, 'SCHEMA_INVALID_AMOUNT', 'schema');
    expect(err.details).toEqual({ field: 'amount' });
    expect(await paymentsForReference(m.key, body.reference_id as string)).toHaveLength(0);
  });

  it('accepts exactly 10^12 through the schema (refused later by the KYC tier rule, not by schema)', async () => {
    const err = expectError(await pay(m.key, paymentBody({ amount: 1_000_000_000_000 })), 422, 'RULE_KYC_TIER_LIMIT', 'business');
    expect(err.details).toMatchObject({ kyc_tier: 'tier_2' });
  });

  it.each([['lower case', 'inr'], ['unknown', 'XYZ'], ['a number', 356], ['empty', '']])(
    'refuses a currency that is %s with SCHEMA_INVALID_CURRENCY',
    async (_what, currency) => {
      const err = expectError(await pay(m.key, paymentBody({ currency })), 400, 'SCHEMA_INVALID_CURRENCY', 'schema');
      expect(err.details).toEqual({ field: 'currency' });
    },
  );

  it('accepts the other configured currencies (USD 2, JPY 0)', async () => {
    for (const currency of ['USD', 'JPY']) {
      const res = await pay(m.key, paymentBody({ currency, payment_method: 'wallet', amount: 5000 }));
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.currency).toBe(currency);
    }
  });

  it.each(['not-an-email', 'asha@', '@example.com', 'asha example@example.com'])('refuses the email %j with SCHEMA_INVALID_EMAIL', async (email) => {
    const err = expectError(await pay(m.key, paymentBody({ customer: { email, phone: '+919876543210' } })), 400, 'SCHEMA_INVALID_EMAIL', 'schema');
    expect(err.details).toEqual({ field: 'customer.email' });
  });

  it.each(['98765', '919876543210', '+0123456789', '+91 98765 43210', '+91987654321012345', 'phone'])(
    'refuses the phone %j with SCHEMA_INVALID_PHONE',
    async (phone) => {
      const err = expectError(await pay(m.key, paymentBody({ customer: { email: 'asha@example.com', phone } })), 400, 'SCHEMA_INVALID_PHONE', 'schema');
      expect(err.details).toEqual({ field: 'customer.phone' });
    },
  );

  it('refuses an unknown field with SCHEMA_INVALID_FIELD, at the top level and nested', async () => {
    const top = expectError(await pay(m.key, paymentBody({ tip: 100 })), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    expect(top.details).toEqual({ fields: ['tip'] });
    const nested = expectError(
      await pay(m.key, paymentBody({ customer: { email: 'asha@example.com', phone: '+919876543210', age: 30 } })),
      400,
      'SCHEMA_INVALID_FIELD',
      'schema',
    );
    expect(nested.details).toEqual({ fields: ['customer.age'] });
  });

  it('refuses an unknown payment method, a non-boolean confirm and the reserved metadata key', async () => {
    expectError(await pay(m.key, paymentBody({ payment_method: 'cheque' })), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    expectError(await pay(m.key, paymentBody({ confirm: 'yes' })), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    const reserved = expectError(await pay(m.key, paymentBody({ metadata: { compliance_flags: 'none' } })), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    expect(reserved.details).toEqual({ field: 'metadata' });
    const tooMany = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']));
    expectError(await pay(m.key, paymentBody({ metadata: tooMany })), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    const fifty = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, 'v']));
    expect((await pay(m.key, paymentBody({ metadata: fifty }))).status).toBe(201);
  });

  it('refuses malformed JSON with INVALID_JSON', async () => {
    for (const raw of ['{"amount": 150000,', 'not json', '{"amount": 1}}', "{'amount': 1}"]) {
      expectError(await call(h, 'POST', '/v1/payments', { key: m.key, raw }), 400, 'INVALID_JSON');
    }
  });

  it('refuses a body over 64 KiB with 413 PAYLOAD_TOO_LARGE and stores nothing', async () => {
    const body = paymentBody({ description: 'x'.repeat(65 * 1024) });
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, raw: JSON.stringify(body) });
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(await paymentsForReference(m.key, body.reference_id as string)).toHaveLength(0);
  });

  describe('raw card numbers (SCHEMA_SENSITIVE_DATA)', () => {
    const cases: [string, string, (pan: string) => Record<string, unknown>, string][] = [
      ['the token', '4111111111111111', (pan) => ({ payment_method_token: pan }), 'payment_method_token'],
      ['a metadata value', '5555 5555 5555 4444', (pan) => ({ metadata: { note: `card ${pan}` } }), 'metadata.note'],
      ['the description', '3782-822463-10005', (pan) => ({ description: `paid with ${pan} yesterday` }), 'description'],
      ['the customer name', '4012888888881881', (pan) => ({ customer: { email: 'asha@example.com', phone: '+919876543210', name: pan } }), 'customer.name'],
      ['the reference', '6011111111111117', (pan) => ({ reference_id: `ord-${pan}` }), 'reference_id'],
    ];

    it.each(cases)('in %s is refused, not stored and not logged', async (_where, pan, fields, path) => {
      const digits = pan.replace(/[ -]/g, '');
      expect(luhnValid(digits)).toBe(true);
      const body = paymentBody(fields(pan));
      const res = await pay(m.key, body);
      const err = expectError(res, 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
      expect(err.details).toEqual({ field: path });
      // The answer does not echo it back.
      expect(JSON.stringify(res.body)).not.toContain(digits);
      expect(JSON.stringify(res.body)).not.toContain(pan);

      const list = await call(h, 'GET', '/v1/payments?limit=100', { key: m.key });
      expect(list.status).toBe(200);
      expect(JSON.stringify(list.body)).not.toContain(digits);
      expect(JSON.stringify(list.body)).not.toContain(pan);
      for (const table of ['payments', 'payment_attempts', 'events', 'idempotency_keys', 'payment_status_history']) {
        const hits = await h.database.db.query(`SELECT count(*)::int AS n FROM ${table} t WHERE t::text LIKE $1 OR t::text LIKE $2`, [`%${digits}%`, `%${pan}%`]);
        expect(hits.rows[0].n, table).toBe(0);
      }
      // The request's own log line was written (onResponse); none carries the number.
      const requestId = res.headers.get('x-request-id')!;
      await expectLogged(requestId);
      const logs = h.logs.join('');
      expect(logs).not.toContain(digits);
      expect(logs).not.toContain(pan);
    });

    it('is refused also when sent as a JSON number, and a non-Luhn 16-digit number passes', async () => {
      expect(luhnValid('4111111111111112')).toBe(false);
      expectError(await pay(m.key, paymentBody({ metadata: undefined, tip: 4111111111111111 })), 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
      const ok = await pay(m.key, paymentBody({ metadata: { ref: '4111111111111112' } }));
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    });

    it('is refused as a metadata key too, and the error names the key without the number', async () => {
      const res = await pay(m.key, paymentBody({ metadata: { '4111111111111111': 'x' } }));
      const err = expectError(res, 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
      expect(err.details).toEqual({ field: 'metadata.[card number]' });
      expect(JSON.stringify(res.body)).not.toContain('4111111111111111');
    });

    it('is refused in a query string too', async () => {
      const res = await call(h, 'GET', '/v1/payments?reference_id=4111111111111111', { key: m.key });
      const err = expectError(res, 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
      expect(err.details).toEqual({ field: 'reference_id' });
      expect(JSON.stringify(res.body)).not.toContain('4111111111111111');
    });

    it('is refused with an Idempotency-Key too, and the key stays unused', async () => {
      const key = `pan-${ref()}`;
      const res = await pay(m.key, paymentBody({ payment_method_token: '4111111111111111' }), { 'idempotency-key': key });
      expectError(res, 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
      const rows = await h.database.db.query('SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1', [key]);
      expect(rows.rows[0].n).toBe(0);
    });
  });
});

async function expectLogged(requestId: string): Promise<void> {
  // The onResponse hook runs after the response is sent; wait for its line rather than sleeping.
  await waitFor(async () => (h.logs.some((l) => l.includes(`"req_id":"${requestId}"`)) ? true : undefined), 5_000, `log line of ${requestId}`);
}

describe('text PostgreSQL cannot store (U+0000, an unpaired surrogate)', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['the description', { description: 'a\u0000b' }, 'description'],
    ['a metadata value', { metadata: { note: 'x\ud800' } }, 'metadata.note'],
    ['the customer name', { customer: { email: 'asha@example.com', phone: '+919876543210', name: '\udc00Asha' } }, 'customer.name'],
  ];

  it.each(cases)('in %s is a 400 SCHEMA_INVALID_FIELD and nothing is stored', async (_where, fields, field) => {
    const body = paymentBody(fields);
    const key = `nul-${ref()}`;
    const err = expectError(await pay(m.key, body, { 'idempotency-key': key }), 400, 'SCHEMA_INVALID_FIELD', 'schema');
    expect(err.details).toEqual({ field });
    expect(await paymentsForReference(m.key, body.reference_id as string)).toHaveLength(0);
    const keys = await h.database.db.query('SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1', [key]);
    expect(keys.rows[0].n).toBe(0);
    // The same payment without the bad character goes through.
    const ok = await pay(m.key, paymentBody({ reference_id: body.reference_id }));
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
  });

  it('in a webhook endpoint description, a list query or a path is a 400, not a 500', async () => {
    const ep = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url: 'http://localhost:9/hook', description: '\u0000' } });
    expect(expectError(ep, 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'description' });
    const endpoints = await h.database.db.query('SELECT count(*)::int AS n FROM webhook_endpoints WHERE merchant_id = $1', [m.id]);
    expect(endpoints.rows[0].n).toBe(0);
    expect(expectError(await call(h, 'GET', '/v1/payments?reference_id=a%00b', { key: m.key }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'reference_id' });
    expect(expectError(await call(h, 'GET', '/v1/payments/pay_%00', { key: m.key }), 400, 'SCHEMA_INVALID_FIELD', 'schema').details).toEqual({ field: 'id' });
  });
});

describe('logs', () => {
  it('carry one line per request with request id and merchant id, and no contact data or API key', async () => {
    const email = `${ref('logcheck')}@example.org`;
    const phone = '+914445556667';
    const res = await pay(m.key, paymentBody({ customer: { email, phone } }));
    expect(res.status).toBe(201);
    const requestId = res.headers.get('x-request-id')!;
    await expectLogged(requestId);
    const line = JSON.parse(h.logs.find((l) => l.includes(`"req_id":"${requestId}"`))!);
    expect(line.merchant_id).toBe(m.id);
    expect(line.status).toBe(201);
    const logs = h.logs.join('');
    expect(logs).not.toContain(email);
    expect(logs).not.toContain(phone);
    expect(logs).not.toContain(m.key);
    expect(logs).not.toContain(ADMIN_KEY);
  });
});

describe('layer 2: entity (403)', () => {
  it.each(['review', 'pending', 'suspended'])("refuses a merchant whose onboarding is '%s' with ENTITY_MERCHANT_INACTIVE", async (onboarding_status) => {
    const inactive = await createMerchant(h, { onboarding_status });
    const body = paymentBody();
    expectError(await pay(inactive.key, body), 403, 'ENTITY_MERCHANT_INACTIVE', 'entity');
    expect(await paymentsForReference(inactive.key, body.reference_id as string)).toHaveLength(0);
  });

  it.each(['pending', 'not_started', 'rejected'])("refuses a merchant whose KYC is '%s' with ENTITY_MERCHANT_KYC_INVALID", async (kyc_status) => {
    const unverified = await createMerchant(h, { kyc_status });
    expectError(await pay(unverified.key, paymentBody()), 403, 'ENTITY_MERCHANT_KYC_INVALID', 'entity');
  });

  it.each(['verified', 'approved'])("lets a merchant whose KYC is '%s' transact", async (kyc_status) => {
    const ok = await createMerchant(h, { kyc_status });
    const res = await pay(ok.key, paymentBody());
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('captured');
  });

  it('follows a PATCH of the merchant status at once', async () => {
    const mer = await createMerchant(h);
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    await patchMerchant(mer.id, { onboarding_status: 'suspended' });
    expectError(await pay(mer.key, paymentBody()), 403, 'ENTITY_MERCHANT_INACTIVE', 'entity');
    await patchMerchant(mer.id, { onboarding_status: 'activated', kyc_status: 'rejected' });
    expectError(await pay(mer.key, paymentBody()), 403, 'ENTITY_MERCHANT_KYC_INVALID', 'entity');
    await patchMerchant(mer.id, { kyc_status: 'verified' });
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
  });
});

describe('layer 3: business rules (422)', () => {
  it('refuses UPI above 200,000.00 with RULE_AMOUNT_ABOVE_MAX and accepts exactly the maximum', async () => {
    const body = paymentBody({ payment_method: 'upi', amount: 20_000_001 });
    const err = expectError(await pay(m.key, body), 422, 'RULE_AMOUNT_ABOVE_MAX', 'business');
    expect(err.details).toMatchObject({ max: 20_000_000, payment_method: 'upi' });
    expect(await paymentsForReference(m.key, body.reference_id as string)).toHaveLength(0);
    const atMax = await pay(m.key, paymentBody({ payment_method: 'upi', amount: 20_000_000 }));
    expect(atMax.status, JSON.stringify(atMax.body)).toBe(201);
  });

  it('refuses a card below 100.00 with RULE_AMOUNT_BELOW_MIN and accepts exactly the minimum', async () => {
    const err = expectError(await pay(m.key, paymentBody({ amount: 9_999 })), 422, 'RULE_AMOUNT_BELOW_MIN', 'business');
    expect(err.details).toMatchObject({ min: 10_000, payment_method: 'card' });
    const atMin = await pay(m.key, paymentBody({ amount: 10_000 }));
    expect(atMin.status, JSON.stringify(atMin.body)).toBe(201);
  });

  it('has no netbanking maximum and no UPI minimum', async () => {
    expect((await pay(m.key, paymentBody({ payment_method: 'netbanking', amount: 90_000_000 }))).status).toBe(201);
    expect((await pay(m.key, paymentBody({ payment_method: 'upi', amount: 1 }))).status).toBe(201);
  });

  it('refuses a method the merchant has not enabled with RULE_INVALID_PAYMENT_METHOD', async () => {
    const cardOnly = await createMerchant(h, { limits: { payment_methods: { card: { min: 10_000 } } } });
    expect((await pay(cardOnly.key, paymentBody())).status).toBe(201);
    for (const method of ['upi', 'netbanking', 'wallet']) {
      expectError(await pay(cardOnly.key, paymentBody({ payment_method: method })), 422, 'RULE_INVALID_PAYMENT_METHOD', 'business');
    }
  });

  it('refuses an amount above the KYC tier limit with RULE_KYC_TIER_LIMIT', async () => {
    const tier1 = await createMerchant(h, { kyc_tier: 'tier_1' });
    expectError(await pay(tier1.key, paymentBody({ payment_method: 'netbanking', amount: 10_000_001 })), 422, 'RULE_KYC_TIER_LIMIT', 'business');
    expect((await pay(tier1.key, paymentBody({ payment_method: 'netbanking', amount: 10_000_000 }))).status).toBe(201);
  });
});

describe('layer 4: compliance (never rejects)', () => {
  it('flags netbanking 250,000.00 with AMOUNT_REPORTING and proceeds (201)', async () => {
    const res = await pay(m.key, paymentBody({ payment_method: 'netbanking', amount: 25_000_000, metadata: { order: 'big' } }));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('captured');
    expect(res.body.metadata.compliance_flags).toContain('AMOUNT_REPORTING');
    expect(res.body.metadata.order).toBe('big');
    const stored = await call(h, 'GET', `/v1/payments/${res.body.id}`, { key: m.key });
    expect(stored.body.metadata.compliance_flags).toEqual(['AMOUNT_REPORTING']);
  });

  it('flags exactly the threshold, and not one below it', async () => {
    const at = await pay(m.key, paymentBody({ payment_method: 'netbanking', amount: 20_000_000 }));
    expect(at.body.metadata.compliance_flags).toEqual(['AMOUNT_REPORTING']);
    const below = await pay(m.key, paymentBody({ payment_method: 'netbanking', amount: 19_999_999 }));
    expect(below.status).toBe(201);
    expect(below.body.metadata.compliance_flags).toEqual([]);
  });

  it('uses a per-merchant, per-currency threshold set through PATCH', async () => {
    const mer = await createMerchant(h, HIGH_VELOCITY);
    const before = await pay(mer.key, paymentBody({ amount: 150_000 }));
    expect(before.body.metadata.compliance_flags).toEqual([]);
    await patchMerchant(mer.id, { limits: { compliance_reporting_threshold: { INR: 100_000, USD: 500_000 } } });
    const after = await pay(mer.key, paymentBody({ amount: 150_000 }));
    expect(after.status).toBe(201);
    expect(after.body.metadata.compliance_flags).toEqual(['AMOUNT_REPORTING']);
    const usd = await pay(mer.key, paymentBody({ currency: 'USD', amount: 499_999 }));
    expect(usd.body.metadata.compliance_flags).toEqual([]);
  });
});

describe('layer 5: risk / velocity (429)', () => {
  it('refuses the 11th payment within 5 minutes with RISK_VELOCITY_EXCEEDED and Retry-After', async () => {
    const mer = await createMerchant(h);
    for (let i = 0; i < 10; i++) {
      const res = await pay(mer.key, paymentBody());
      expect(res.status, `payment ${i + 1}: ${JSON.stringify(res.body)}`).toBe(201);
    }
    const body = paymentBody();
    const res = await pay(mer.key, body);
    const err = expectError(res, 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
    expect(err.details).toMatchObject({ max_payments: 10, window_seconds: 300 });
    const retryAfter = res.headers.get('retry-after');
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeLessThanOrEqual(300);
    expect(await paymentsForReference(mer.key, body.reference_id as string)).toHaveLength(0);
    const all = await call(h, 'GET', '/v1/payments?limit=100', { key: mer.key });
    expect(all.body.data).toHaveLength(10);
    // Other merchants are not affected.
    expect((await pay(m.key, paymentBody())).status).toBe(201);
  });

  it('counts declined payments too (they reached the connector)', async () => {
    const mer = await createMerchant(h, { limits: { velocity: { max_payments: 2, window_seconds: 300 } } });
    expect((await pay(mer.key, paymentBody({ payment_method_token: 'tok_decline' }))).status).toBe(402);
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    expectError(await pay(mer.key, paymentBody()), 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
  });

  it('does not count payments refused after the risk layer (a reference already in use)', async () => {
    const mer = await createMerchant(h, { limits: { velocity: { max_payments: 2, window_seconds: 300 } } });
    const first = paymentBody();
    expect((await pay(mer.key, first)).status).toBe(201);
    for (let i = 0; i < 3; i++) {
      expectError(await pay(mer.key, paymentBody({ reference_id: first.reference_id })), 409, 'PAYMENT_REFERENCE_IN_USE');
    }
    // The three refusals gave their places back: the second payment of the window still fits.
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    expectError(await pay(mer.key, paymentBody()), 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
    const counted = await h.database.db.query<{ n: number }>('SELECT COALESCE(sum(n), 0)::int AS n FROM velocity_buckets WHERE merchant_id = $1', [mer.id]);
    expect(counted.rows[0]!.n).toBe(2);
  });

  it('takes a velocity limit raised through PATCH into account at once', async () => {
    const mer = await createMerchant(h, { limits: { velocity: { max_payments: 2, window_seconds: 600 } } });
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    const refused = await pay(mer.key, paymentBody());
    expectError(refused, 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(300);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(600);

    const patched = await patchMerchant(mer.id, { limits: { velocity: { max_payments: 3, window_seconds: 600 } } });
    expect(patched.limits.velocity).toEqual({ max_payments: 3, window_seconds: 600 });
    // The other limit groups are kept.
    expect(patched.limits.payment_methods.card).toEqual({ min: 10_000 });
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    expectError(await pay(mer.key, paymentBody()), 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
  });

  it('takes a method maximum changed through PATCH into account at once', async () => {
    const mer = await createMerchant(h, HIGH_VELOCITY);
    expect((await pay(mer.key, paymentBody({ payment_method: 'upi', amount: 60_000 }))).status).toBe(201);
    await patchMerchant(mer.id, {
      limits: { payment_methods: { card: { min: 10_000 }, upi: { max: 50_000 }, netbanking: {}, wallet: {} } },
    });
    const err = expectError(await pay(mer.key, paymentBody({ payment_method: 'upi', amount: 60_000 })), 422, 'RULE_AMOUNT_ABOVE_MAX', 'business');
    expect(err.details).toMatchObject({ max: 50_000 });
    expect((await pay(mer.key, paymentBody({ payment_method: 'upi', amount: 50_000 }))).status).toBe(201);
    // And a lowered card minimum.
    await patchMerchant(mer.id, { limits: { payment_methods: { card: { min: 100 }, upi: { max: 50_000 } } } });
    expect((await pay(mer.key, paymentBody({ amount: 100 }))).status).toBe(201);
    expectError(await pay(mer.key, paymentBody({ amount: 99 })), 422, 'RULE_AMOUNT_BELOW_MIN', 'business');
  });
});

describe('layer order', () => {
  it('schema before entity: an inactive merchant sending a bad body gets the schema error', async () => {
    const inactive = await createMerchant(h, { onboarding_status: 'review', kyc_status: 'pending' });
    const body = paymentBody();
    delete body.amount;
    expectError(await pay(inactive.key, body), 400, 'SCHEMA_MISSING_FIELD', 'schema');
    expectError(await pay(inactive.key, paymentBody({ currency: 'inr' })), 400, 'SCHEMA_INVALID_CURRENCY', 'schema');
    expectError(await pay(inactive.key, paymentBody({ payment_method_token: '4111111111111111' })), 400, 'SCHEMA_SENSITIVE_DATA', 'schema');
    // With a valid body, the entity layer answers.
    expectError(await pay(inactive.key, paymentBody()), 403, 'ENTITY_MERCHANT_INACTIVE', 'entity');
  });

  it('entity before business: an inactive merchant sending an out-of-limit amount gets the entity error', async () => {
    const inactive = await createMerchant(h, { kyc_status: 'not_started' });
    expectError(await pay(inactive.key, paymentBody({ payment_method: 'upi', amount: 20_000_001 })), 403, 'ENTITY_MERCHANT_KYC_INVALID', 'entity');
    expectError(await pay(inactive.key, paymentBody({ amount: 9_999 })), 403, 'ENTITY_MERCHANT_KYC_INVALID', 'entity');
  });

  it('business before risk: a merchant over its velocity sending an out-of-limit amount gets the business error', async () => {
    const mer = await createMerchant(h, { limits: { velocity: { max_payments: 1, window_seconds: 300 } } });
    expect((await pay(mer.key, paymentBody())).status).toBe(201);
    expectError(await pay(mer.key, paymentBody({ amount: 9_999 })), 422, 'RULE_AMOUNT_BELOW_MIN', 'business');
    expectError(await pay(mer.key, paymentBody({ payment_method: 'upi', amount: 20_000_001 })), 422, 'RULE_AMOUNT_ABOVE_MAX', 'business');
    expectError(await pay(mer.key, paymentBody()), 429, 'RISK_VELOCITY_EXCEEDED', 'risk');
  });

  it('auth before everything: no key with a bad body answers 401', async () => {
    const body = paymentBody();
    delete body.amount;
    expectError(await call(h, 'POST', '/v1/payments', { body }), 401, 'AUTH_MISSING_API_KEY');
    expectError(await call(h, 'POST', '/v1/payments', { raw: '{bad' }), 401, 'AUTH_MISSING_API_KEY');
  });
});
