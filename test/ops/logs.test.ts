/**
 * Structured logs (SPEC §15): one JSON line per request with the ids that matter, and no secret or
 * customer contact data anywhere — API keys, the admin key, webhook signing secrets, emails,
 * phones, card numbers, payment method tokens. Every line the API and the worker wrote during a
 * flow that touches each of them is searched.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, startHarness, waitFor, type ApiResponse, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY, HookReceiver, body, type Json } from './helpers.js';

let h: Harness;
let receiver: HookReceiver;

beforeAll(async () => {
  h = await startHarness({ LOG_LEVEL: 'debug', OUTBOX_POLL_MS: '200' }, { worker: true });
  receiver = await HookReceiver.start(() => 200);
});
afterAll(async () => {
  await receiver?.close();
  await h?.close();
});

/** Every captured line, parsed; a line that is not JSON fails the test. */
function lines(): Json[] {
  return h.logs
    .join('')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Json;
      } catch {
        throw new Error(`a log line that is not JSON: ${l}`);
      }
    });
}

describe('logs', () => {
  it('carry one line per request with its ids, and no key, secret, token, card number or contact data', async () => {
    let seq = 0;
    const sent: { id: string; method: string; route: string; status: number; merchant?: string; payment?: string }[] = [];
    /** A request with a known X-Request-Id, remembered with what its log line must say. */
    const req = async (
      method: string,
      path: string,
      route: string,
      opts: { key?: string; body?: unknown; headers?: Record<string, string>; merchant?: string; payment?: string } = {},
    ): Promise<ApiResponse> => {
      seq += 1;
      const id = `logtest-${randomBytes(4).toString('hex')}-${seq}`;
      const res = await call(h, method, path, { key: opts.key, body: opts.body, headers: { ...(opts.headers ?? {}), 'x-request-id': id } });
      expect(res.headers.get('x-request-id')).toBe(id);
      sent.push({ id, method, route, status: res.status, merchant: opts.merchant, payment: opts.payment });
      return res;
    };

    // Admin: a merchant and its API key.
    const email = `leak.check.${randomBytes(4).toString('hex')}@example.com`;
    const phone = `+919${String(randomInt(100_000_000, 999_999_999))}`;
    const created = await req('POST', '/v1/admin/merchants', '/v1/admin/merchants', {
      key: ADMIN_KEY,
      body: { name: 'Log Check', onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'gold', ...HIGH_VELOCITY },
    });
    expect(created.status).toBe(201);
    const merchantId = created.body.id as string;
    const keyRes = await req('POST', `/v1/admin/merchants/${merchantId}/api_keys`, '/v1/admin/merchants/:id/api_keys', { key: ADMIN_KEY });
    expect(keyRes.status).toBe(201);
    const apiKey = keyRes.body.key as string;
    expect(apiKey.length).toBeGreaterThan(20);
    expect((await req('GET', `/v1/admin/merchants/${merchantId}`, '/v1/admin/merchants/:id', { key: ADMIN_KEY })).status).toBe(200);
    expect((await req('PATCH', `/v1/admin/merchants/${merchantId}`, '/v1/admin/merchants/:id', { key: ADMIN_KEY, body: { name: 'Log Check Ltd' } })).status).toBe(200);
    expect((await req('GET', '/v1/admin/read_only', '/v1/admin/read_only', { key: ADMIN_KEY })).status).toBe(200);
    // A wrong admin key is refused (and must not be logged either).
    const wrongAdmin = `wrong_admin_${randomBytes(12).toString('hex')}`;
    expect((await req('GET', `/v1/admin/merchants/${merchantId}`, '/v1/admin/merchants/:id', { key: wrongAdmin })).status).toBe(401);

    // A webhook endpoint with its whsec_ secret, rotated once.
    const endpoint = await req('POST', '/v1/webhook_endpoints', '/v1/webhook_endpoints', {
      key: apiKey,
      body: { url: `${receiver.url}/hooks` },
      merchant: merchantId,
    });
    expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
    const secret = endpoint.body.secret as string;
    expect(secret).toMatch(/^whsec_/);
    const rotated = await req('POST', `/v1/webhook_endpoints/${endpoint.body.id}/rotate_secret`, '/v1/webhook_endpoints/:id/rotate_secret', {
      key: apiKey,
      merchant: merchantId,
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    const secret2 = rotated.body.secret as string;
    expect(secret2).toMatch(/^whsec_/);

    // Payments carrying the customer's contact data and a token: a success (by Bearer), a decline.
    const customer = { email, phone };
    const paid = await req('POST', '/v1/payments', '/v1/payments', {
      headers: { authorization: `Bearer ${apiKey}` },
      body: body({ customer, payment_method_token: 'tok_success' }),
      merchant: merchantId,
    });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    const paymentId = paid.body.id as string;
    const declined = await req('POST', '/v1/payments', '/v1/payments', { key: apiKey, body: body({ customer, payment_method_token: 'tok_decline' }), merchant: merchantId });
    expect(declined.status).toBe(402);
    // An idempotent replay.
    const b = body({ customer });
    const first = await req('POST', '/v1/payments', '/v1/payments', { key: apiKey, body: b, headers: { 'idempotency-key': `log_${b.reference_id as string}` }, merchant: merchantId });
    expect(first.status).toBe(201);
    const replay = await req('POST', '/v1/payments', '/v1/payments', { key: apiKey, body: b, headers: { 'idempotency-key': `log_${b.reference_id as string}` }, merchant: merchantId });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    // A raw card number, in the body and in the query: refused, and never written anywhere.
    const card = '4111111111111111';
    const refusedBody = await req('POST', '/v1/payments', '/v1/payments', { key: apiKey, body: body({ customer, metadata: { note: `card ${card}` } }), merchant: merchantId });
    expect(refusedBody.status).toBe(400);
    expect(refusedBody.body.error.code).toBe('SCHEMA_SENSITIVE_DATA');
    const refusedQuery = await req('GET', `/v1/payments?reference_id=${card}`, '/v1/payments', { key: apiKey, merchant: merchantId });
    expect(refusedQuery.status).toBe(400);
    expect(refusedQuery.body.error.code).toBe('SCHEMA_SENSITIVE_DATA');
    // Reads and an operation on the payment: these lines carry its id.
    expect((await req('GET', `/v1/payments/${paymentId}`, '/v1/payments/:id', { key: apiKey, merchant: merchantId, payment: paymentId })).status).toBe(200);
    const refund = await req('POST', `/v1/payments/${paymentId}/refunds`, '/v1/payments/:id/refunds', { key: apiKey, body: { amount: 1000 }, merchant: merchantId, payment: paymentId });
    expect(refund.status).toBe(201);
    expect((await req('GET', `/v1/payments/${paymentId}/history`, '/v1/payments/:id/history', { key: apiKey, merchant: merchantId, payment: paymentId })).status).toBe(200);
    // A wrong API key, and none at all.
    const wrongKey = `sk_test_${randomBytes(16).toString('hex')}`;
    expect((await req('GET', '/v1/payments', '/v1/payments', { key: wrongKey })).status).toBe(401);
    expect((await req('GET', '/v1/payments', '/v1/payments')).status).toBe(401);

    // The worker delivers the events (its log lines are searched too).
    await waitFor(async () => {
      const r = await h.database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'succeeded'`,
        [endpoint.body.id],
      );
      return r.rows[0]!.n >= 3 ? true : undefined;
    }, 20_000, 'webhook deliveries');
    expect(receiver.received.length).toBeGreaterThanOrEqual(3);
    expect(JSON.stringify(receiver.received.map((r) => r.json))).toContain(email); // the event data carries it; logs must not

    const all = lines();
    const text = h.logs.join('');
    // The search is meaningful: there are many lines, from the API and the worker.
    expect(all.length).toBeGreaterThan(sent.length);
    expect(all.some((l) => typeof l.job === 'string')).toBe(true);

    // --- Nothing secret, anywhere.
    const forbidden: Record<string, string> = {
      'API key': apiKey,
      'API key secret part': apiKey.slice(-16),
      'wrong API key': wrongKey,
      'admin key': ADMIN_KEY,
      'wrong admin key': wrongAdmin,
      'webhook secret': secret,
      'webhook secret bytes': secret.slice('whsec_'.length),
      'rotated webhook secret': secret2.slice('whsec_'.length),
      email,
      'email local part': email.split('@')[0]!,
      phone,
      'phone digits': phone.slice(1),
      'card number': card,
      'success token': 'tok_success',
      'decline token': 'tok_decline',
    };
    for (const [what, value] of Object.entries(forbidden)) {
      expect(text.includes(value), `${what} found in the logs`).toBe(false);
    }

    // --- One line per request, with its ids.
    for (const s of sent) {
      const mine = all.filter((l) => l.req_id === s.id && l.msg === 'request');
      expect(mine, `request log line of ${s.method} ${s.route} (${s.id})`).toHaveLength(1);
      const line = mine[0]!;
      expect(line).toMatchObject({ method: s.method, route: s.route, status: s.status, level: 30 });
      expect(typeof line.ms).toBe('number');
      expect(typeof line.time).toBe('string');
      if (s.merchant) expect(line.merchant_id, `merchant_id of ${s.method} ${s.route}`).toBe(s.merchant);
      else expect(line.merchant_id, `merchant_id of ${s.method} ${s.route}`).toBeUndefined();
      if (s.payment) expect(line.payment_id, `payment_id of ${s.method} ${s.route}`).toBe(s.payment);
    }
    // Lines of other requests (health probes, the harness's own calls) are well formed too.
    for (const line of all.filter((l) => l.msg === 'request')) {
      expect(typeof line.req_id).toBe('string');
      expect(typeof line.route).toBe('string');
      expect(Number.isInteger(line.status)).toBe(true);
    }
  });
});
