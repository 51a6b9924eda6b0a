import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFlakyConnector } from '../src/connectors/flaky/index.js';
import { createMockConnector } from '../src/connectors/mock/index.js';
import type { MockProviderConnector } from '../src/connectors/mock/index.js';
import type { AuthorizeRequest, ConnectorOutcome } from '../src/connectors/port.js';
import { buildMockProviderServer, mockProviderPlugin } from '../src/mock-provider/app.js';
import type { MockProviderOptions } from '../src/mock-provider/app.js';
import { FlakyDice, mulberry32 } from '../src/mock-provider/flaky.js';
import { readMockLedger } from '../src/mock-provider/ledger.js';
import { signMockWebhook, verifyMockSignature } from '../src/mock-provider/signature.js';
import { createTestDatabase } from './support/db.js';
import type { TestDatabase } from './support/db.js';

const SECRET = 'whsec_mock_provider_test';
const HANG_MS = 1500;
const FAST_TIMEOUT_MS = 300;
const NO_CHAOS = { seed: 7, failureRate: 0, timeoutRate: 0, latencyMs: 0 };

/** Polls until check returns a value other than undefined/false, or fails at the deadline. */
async function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  event: { id: string; type: string; data: Record<string, unknown> };
  answered: number;
}

/** A stand-in for Switchyard's inbound webhook endpoint; fails the first delivery for chosen payments. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  readonly failFirstFor = new Set<string>();
  private readonly failed = new Set<string>();
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const rawBody = Buffer.concat(chunks);
        const event = JSON.parse(rawBody.toString('utf8')) as Delivery['event'];
        const paymentId = String(event.data.payment_id);
        const fail = this.failFirstFor.has(paymentId) && !this.failed.has(paymentId);
        if (fail) this.failed.add(paymentId);
        const answered = fail ? 500 : 200;
        this.deliveries.push({ path: req.url ?? '', headers: req.headers, rawBody, event, answered });
        res.writeHead(answered, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  for(paymentId: string): Delivery[] {
    return this.deliveries.filter((d) => d.event.data.payment_id === paymentId);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function startHost(opts: MockProviderOptions): Promise<{ app: FastifyInstance; baseUrl: string }> {
  const app = Fastify({ logger: false });
  await app.register(mockProviderPlugin, { ...opts, prefix: '/mock-provider' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, baseUrl: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/mock-provider` };
}

function connectorFor(baseUrl: string, readTimeoutMs = 5000, flaky = false): MockProviderConnector {
  const opts = {
    baseUrl,
    connectTimeoutMs: 1000,
    authorizeTimeoutMs: readTimeoutMs,
    timeoutMs: readTimeoutMs,
    webhookSecret: SECRET,
  };
  return flaky ? createFlakyConnector(opts) : createMockConnector(opts);
}

let seq = 0;
function authRequest(token: string, overrides: Partial<AuthorizeRequest> = {}): AuthorizeRequest {
  seq += 1;
  return {
    attemptId: `att_test_${Date.now().toString(36)}_${seq}`,
    paymentId: `pay_test_${Date.now().toString(36)}_${seq}`,
    amount: 1000,
    currency: 'INR',
    paymentMethod: 'card',
    paymentMethodToken: token,
    capture: false,
    ...overrides,
  };
}

function expectOutcome<K extends ConnectorOutcome['outcome']>(
  o: { outcome: string },
  kind: K,
): asserts o is Extract<ConnectorOutcome, { outcome: K }> {
  expect(o.outcome, JSON.stringify(o)).toBe(kind);
}

let tdb: TestDatabase;
const receiver = new Receiver();
let main: { app: FastifyInstance; baseUrl: string };
let connector: MockProviderConnector;
let fast: MockProviderConnector;
const closers: (() => Promise<unknown>)[] = [];

const ledger = (paymentId: string) => readMockLedger(tdb.db, paymentId);

beforeAll(async () => {
  tdb = await createTestDatabase();
  await receiver.start();
  main = await startHost({
    db: tdb.db,
    hangMs: HANG_MS,
    webhookSecret: SECRET,
    webhookUrl: `${receiver.url}/hooks/{connector}`,
    flaky: NO_CHAOS,
    asyncDelayMs: 300,
    webhookRetryBaseMs: 50,
  });
  connector = connectorFor(main.baseUrl);
  fast = connectorFor(main.baseUrl, FAST_TIMEOUT_MS);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await connector?.close();
  await fast?.close();
  await main?.app.close();
  await receiver.stop();
  await tdb?.drop();
});

describe('tokens through the mock connector', () => {
  it('tok_success authorizes, or captures in one step, with matching ledger rows', async () => {
    const auth = authRequest('tok_success');
    const o = await connector.authorize(auth);
    expectOutcome(o, 'succeeded');
    expect(o.providerStatus).toBe('authorized');
    expect(o.providerReference).toMatch(/^ch_/);
    expect((await ledger(auth.paymentId)).map((r) => [r.operation, r.amount, r.idempotency_key, r.provider_reference]))
      .toEqual([['authorize', 1000, auth.attemptId, o.providerReference]]);

    const both = authRequest('tok_visa', { capture: true, amount: 2500 });
    const c = await connector.authorize(both);
    expectOutcome(c, 'succeeded');
    expect(c.providerStatus).toBe('captured');
    const rows = await ledger(both.paymentId);
    expect(rows.map((r) => [r.operation, r.amount, r.currency])).toEqual([['authorize', 2500, 'INR'], ['capture', 2500, 'INR']]);
    expect(new Date(rows[0]!.created_at).toISOString()).toBe(rows[0]!.created_at);
  });

  it('declines with the provider code and charges nothing', async () => {
    for (const [token, code] of [['tok_decline', 'card_declined'], ['tok_insufficient_funds', 'insufficient_funds']] as const) {
      const auth = authRequest(token);
      const o = await connector.authorize(auth);
      expectOutcome(o, 'declined');
      expect(o.code).toBe(code);
      expect(o.providerReference).toMatch(/^ch_/);
      expect(await ledger(auth.paymentId)).toEqual([]);
      // The decline is the stored result of that key.
      const s = await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' });
      expectOutcome(s, 'declined');
      expect(s.code).toBe(code);
    }
  });

  it('refuses a token that is not tok_… without storing anything', async () => {
    const auth = authRequest('pm_card_visa');
    const o = await connector.authorize(auth);
    // A refusal of the request itself is an answer about this payment, not provider trouble.
    expectOutcome(o, 'declined');
    expect(o).toMatchObject({ code: 'invalid_token' });
    expect(await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toEqual({ outcome: 'not_found' });
  });

  it('tok_timeout_charged: unknown to the caller, charged once at the provider, found by sync and by a retry', async () => {
    const auth = authRequest('tok_timeout_charged');
    const o = await fast.authorize(auth);
    expect(o).toMatchObject({ outcome: 'unknown', reason: 'timeout' });
    const synced = await waitFor(async () => {
      const s = await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' });
      return s.outcome === 'succeeded' ? s : undefined;
    });
    expect(synced).toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized' });
    // A retry with the same key is answered from the stored result, at once and without charging again.
    const retry = await connector.authorize(auth);
    expectOutcome(retry, 'succeeded');
    expect(retry.providerReference).toBe((synced as { providerReference: string }).providerReference);
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize']);
  });

  it('tok_timeout_uncharged: unknown to the caller, then not_found and an empty ledger', async () => {
    const auth = authRequest('tok_timeout_uncharged');
    const o = await fast.authorize(auth);
    expect(o).toMatchObject({ outcome: 'unknown', reason: 'timeout' });
    // Waiting for the provider's own late answer proves it gave up without acting.
    const late = await request(`${main.baseUrl}/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': auth.attemptId },
      body: JSON.stringify({ amount: 1000, currency: 'INR', token: 'tok_timeout_uncharged', capture: false, payment_id: auth.paymentId }),
    });
    expect(late.statusCode).toBe(503);
    expect(await late.body.json()).toMatchObject({ error: { code: 'provider_timeout' } });
    expect(await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toEqual({ outcome: 'not_found' });
    expect(await ledger(auth.paymentId)).toEqual([]);
  });

  it('tok_async: pending, then a signed webhook reports success, and sync agrees', async () => {
    const auth = authRequest('tok_async');
    const o = await connector.authorize(auth);
    expectOutcome(o, 'pending');
    expect(await ledger(auth.paymentId)).toEqual([]);
    const [delivery] = await waitFor(() => {
      const got = receiver.for(auth.paymentId);
      return got.length > 0 ? got : undefined;
    });
    expect(delivery!.path).toBe('/hooks/mock');
    expect(delivery!.headers['mock-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(connector.verifyWebhook(delivery!.rawBody, delivery!.headers)).toBe(true);
    const [event] = connector.parseWebhook(delivery!.rawBody);
    expect(event).toMatchObject({
      type: 'authorized',
      attemptId: auth.attemptId,
      paymentId: auth.paymentId,
      providerReference: o.providerReference,
      amount: 1000,
    });
    expect(event!.providerEventId).toMatch(/^evt_mock_/);
    expect(await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized', providerReference: o.providerReference });
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize']);
  });

  it('tok_async with capture settles captured; tok_async_fail reports failure and charges nothing', async () => {
    const ok = authRequest('tok_async', { capture: true });
    const bad = authRequest('tok_async_fail');
    expectOutcome(await connector.authorize(ok), 'pending');
    expectOutcome(await connector.authorize(bad), 'pending');
    const okEvent = await waitFor(() => receiver.for(ok.paymentId)[0]);
    const badEvent = await waitFor(() => receiver.for(bad.paymentId)[0]);
    expect(connector.parseWebhook(okEvent.rawBody)[0]).toMatchObject({ type: 'captured', attemptId: ok.attemptId });
    expect(connector.parseWebhook(badEvent.rawBody)[0]).toMatchObject({ type: 'failed', failureCode: 'card_declined', attemptId: bad.attemptId });
    expect(await connector.sync({ attemptId: ok.attemptId, paymentId: ok.paymentId, operation: 'authorize' }))
      .toMatchObject({ outcome: 'succeeded', providerStatus: 'captured' });
    expect(await connector.sync({ attemptId: bad.attemptId, paymentId: bad.paymentId, operation: 'authorize' }))
      .toMatchObject({ outcome: 'declined', code: 'card_declined' });
    expect((await ledger(ok.paymentId)).map((r) => r.operation)).toEqual(['authorize', 'capture']);
    expect(await ledger(bad.paymentId)).toEqual([]);
  });

  it('retries a webhook the receiver failed, with the same event id', async () => {
    const auth = authRequest('tok_async');
    receiver.failFirstFor.add(auth.paymentId);
    expectOutcome(await connector.authorize(auth), 'pending');
    const deliveries = await waitFor(() => {
      const got = receiver.for(auth.paymentId);
      return got.length >= 2 ? got : undefined;
    });
    expect(deliveries.map((d) => d.answered)).toEqual([500, 200]);
    expect(deliveries[1]!.event.id).toBe(deliveries[0]!.event.id);
  });
});

describe('provider idempotency', () => {
  it('20 concurrent authorizations with one key make exactly one charge', async () => {
    const auth = authRequest('tok_success');
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => connector.authorize(auth)));
    const refs = new Set(outcomes.map((o) => (o.outcome === 'succeeded' ? o.providerReference : `not-succeeded:${o.outcome}`)));
    expect([...refs]).toHaveLength(1);
    expect([...refs][0]).toMatch(/^ch_/);
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize']);
    const charges = await tdb.db.query('SELECT id FROM mock_provider_charges WHERE payment_id = $1', [auth.paymentId]);
    expect(charges.rowCount).toBe(1);
  });

  it('replays the stored response and refuses the key for a different request', async () => {
    const auth = authRequest('tok_success');
    const first = await connector.authorize(auth);
    const again = await connector.authorize(auth);
    expect(again).toEqual(first);
    const conflict = await connector.authorize({ ...auth, amount: 2000 });
    // The key's first request may have charged: never a certain non-charge.
    expect(conflict).toMatchObject({ outcome: 'unknown', reason: 'provider_error' });
    expect(await ledger(auth.paymentId)).toHaveLength(1);
  });

  it('requires an Idempotency-Key on every POST', async () => {
    const res = await request(`${main.baseUrl}/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 1000, currency: 'INR', token: 'tok_success', capture: false, payment_id: 'pay_x' }),
    });
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toMatchObject({ error: { code: 'idempotency_key_missing' } });
    const capture = await request(`${main.baseUrl}/v1/charges/ch_nope/capture`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(capture.statusCode).toBe(400);
    await capture.body.dump();
  });
});

describe('capture, void and refund', () => {
  const op = (n: string) => `att_${n}_${Date.now().toString(36)}_${++seq}`;

  it('captures partially once; refuses a second capture and a capture above the authorization', async () => {
    const auth = authRequest('tok_success');
    const a = await connector.authorize(auth);
    expectOutcome(a, 'succeeded');
    const base = { paymentId: auth.paymentId, providerReference: a.providerReference, currency: 'INR' };
    const tooMuch = await connector.capture({ ...base, attemptId: op('cap'), amount: 1001 });
    expect(tooMuch).toMatchObject({ outcome: 'declined', code: 'amount_too_large' });
    const captureKey = op('cap');
    const c = await connector.capture({ ...base, attemptId: captureKey, amount: 600 });
    expect(c).toMatchObject({ outcome: 'succeeded', providerStatus: 'captured', providerReference: a.providerReference });
    expect(await connector.capture({ ...base, attemptId: captureKey, amount: 600 })).toEqual(c);
    expect(await connector.sync({ attemptId: captureKey, paymentId: auth.paymentId, operation: 'capture' }))
      .toMatchObject({ outcome: 'succeeded', providerStatus: 'captured' });
    const second = await connector.capture({ ...base, attemptId: op('cap'), amount: 100 });
    expect(second).toMatchObject({ outcome: 'error', charged: false, code: 'charge_not_capturable' });
    expect((await ledger(auth.paymentId)).map((r) => [r.operation, r.amount])).toEqual([['authorize', 1000], ['capture', 600]]);
    const missing = await connector.capture({ ...base, providerReference: 'ch_missing', attemptId: op('cap'), amount: 1 });
    expect(missing).toMatchObject({ outcome: 'declined', code: 'charge_not_found' });
  });

  it('voids an authorization once, after which it cannot be captured', async () => {
    const auth = authRequest('tok_success');
    const a = await connector.authorize(auth);
    expectOutcome(a, 'succeeded');
    const base = { paymentId: auth.paymentId, providerReference: a.providerReference };
    expect(await connector.void({ ...base, attemptId: op('void') })).toMatchObject({ outcome: 'succeeded', providerStatus: 'voided' });
    expect(await connector.void({ ...base, attemptId: op('void') })).toMatchObject({ outcome: 'error', code: 'charge_not_voidable' });
    expect(await connector.capture({ ...base, attemptId: op('cap'), amount: 1000, currency: 'INR' }))
      .toMatchObject({ outcome: 'error', code: 'charge_not_capturable' });
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize', 'void']);
  });

  it('refunds up to the captured amount and never above it', async () => {
    const uncaptured = await connector.authorize(authRequest('tok_success'));
    expectOutcome(uncaptured, 'succeeded');
    expect(await connector.refund({
      attemptId: op('ref'), paymentId: 'pay_x', refundId: 're_x', providerReference: uncaptured.providerReference, amount: 100, currency: 'INR',
    })).toMatchObject({ outcome: 'error', code: 'charge_not_refundable' });

    const auth = authRequest('tok_success', { capture: true });
    const a = await connector.authorize(auth);
    expectOutcome(a, 'succeeded');
    const refund = (amount: number) => connector.refund({
      attemptId: op('ref'), paymentId: auth.paymentId, refundId: `re_${seq}`, providerReference: a.providerReference, amount, currency: 'INR',
    });
    const r1 = await refund(600);
    expectOutcome(r1, 'succeeded');
    expect(r1.providerStatus).toBe('refunded');
    expect(r1.providerReference).toMatch(/^rf_/);
    expect(await refund(500)).toMatchObject({ outcome: 'declined', code: 'refund_exceeds_captured' });
    expect(await refund(400)).toMatchObject({ outcome: 'succeeded' });
    expect(await refund(1)).toMatchObject({ outcome: 'declined', code: 'refund_exceeds_captured' });
    const rows = await ledger(auth.paymentId);
    expect(rows.filter((r) => r.operation === 'refund').reduce((s, r) => s + r.amount, 0)).toBe(1000);
  });

  it('concurrent refunds with different keys never exceed the capture', async () => {
    const auth = authRequest('tok_success', { capture: true });
    const a = await connector.authorize(auth);
    expectOutcome(a, 'succeeded');
    const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => connector.refund({
      attemptId: op(`pref${i}`), paymentId: auth.paymentId, refundId: `re_p${i}`, providerReference: a.providerReference, amount: 300, currency: 'INR',
    })));
    expect(outcomes.filter((o) => o.outcome === 'succeeded')).toHaveLength(3);
    expect(outcomes.filter((o) => o.outcome === 'declined')).toHaveLength(7);
    const refunded = (await ledger(auth.paymentId)).filter((r) => r.operation === 'refund');
    expect(refunded.reduce((s, r) => s + r.amount, 0)).toBe(900);
  });
});

describe('network failures', () => {
  it('connection refused is a certain non-charge; a sync that cannot connect is unknown', async () => {
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const dead = connectorFor(`http://127.0.0.1:${port}/mock-provider`);
    closers.push(() => dead.close());
    const auth = authRequest('tok_success');
    expect(await dead.authorize(auth)).toMatchObject({ outcome: 'error', charged: false, code: 'connector_unreachable' });
    expect(await dead.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toMatchObject({ outcome: 'unknown' });
  });

  it('a connection reset after the request was sent is unknown', async () => {
    const resetter = createTcpServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => resetter.close(() => resolve())));
    const c = connectorFor(`http://127.0.0.1:${(resetter.address() as AddressInfo).port}`);
    closers.push(() => c.close());
    expect(await c.authorize(authRequest('tok_success'))).toMatchObject({ outcome: 'unknown', reason: 'network' });
  });
});

describe('webhook signatures', () => {
  const body = Buffer.from(JSON.stringify({ id: 'evt_mock_1', type: 'charge.succeeded', created: 1, data: {} }));
  const now = 1_700_000_000;

  it('verifies what it signs', () => {
    const header = signMockWebhook(SECRET, body, now);
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
    expect(verifyMockSignature(SECRET, body, header, 300, now)).toBe(true);
    expect(verifyMockSignature(SECRET, body.toString('utf8'), header, 300, now + 299)).toBe(true);
    // During a secret rotation a header may carry several signatures; one valid is enough.
    const rotated = `${header},v1=${'0'.repeat(64)}`;
    expect(verifyMockSignature(SECRET, body, rotated, 300, now)).toBe(true);
  });

  it('rejects tampering, another secret, stale or malformed headers', () => {
    const header = signMockWebhook(SECRET, body, now);
    const tampered = Buffer.from(body.toString('utf8').replace('succeeded', 'failed'));
    expect(verifyMockSignature(SECRET, tampered, header, 300, now)).toBe(false);
    expect(verifyMockSignature('another_secret', body, header, 300, now)).toBe(false);
    expect(verifyMockSignature(SECRET, body, header, 300, now + 301)).toBe(false);
    expect(verifyMockSignature(SECRET, body, header, 300, now - 301)).toBe(false);
    expect(verifyMockSignature(SECRET, body, header.replace(/t=\d+/, `t=${now + 1}`), 300, now)).toBe(false);
    for (const bad of [undefined, '', 'garbage', `t=${now}`, `v1=${'a'.repeat(64)}`, `t=${now},v1=xyz`]) {
      expect(verifyMockSignature(SECRET, body, bad, 300, now)).toBe(false);
    }
  });

  it('the connector reads the mock-signature header and refuses an unsigned body', () => {
    const header = signMockWebhook(SECRET, body, Math.floor(Date.now() / 1000));
    expect(connector.verifyWebhook(body, { 'mock-signature': header })).toBe(true);
    expect(connector.verifyWebhook(body, { 'Mock-Signature': [header] })).toBe(true);
    expect(connector.verifyWebhook(body, {})).toBe(false);
    expect(() => connector.parseWebhook(Buffer.from('not json'))).toThrow();
  });
});

describe('flaky mode', () => {
  it('the PRNG is deterministic per seed and draws nothing but calm at zero rates', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const seqA = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(seqA);
    expect(seqA.every((x) => x >= 0 && x < 1)).toBe(true);
    const calm = new FlakyDice({ seed: 1, failureRate: 0, timeoutRate: 0, latencyMs: 0 });
    expect(Array.from({ length: 50 }, () => calm.drawRequest().fault).every((f) => f === 'none')).toBe(true);
  });

  it('a pre-charge failure is an error with charged:false and leaves no trace', async () => {
    const host = await startHost({ db: tdb.db, hangMs: HANG_MS, webhookSecret: SECRET, flaky: { seed: 3, failureRate: 1, timeoutRate: 0, latencyMs: 5 } });
    closers.push(() => host.app.close());
    const flaky = connectorFor(host.baseUrl, 5000, true);
    closers.push(() => flaky.close());
    expect(flaky.name).toBe('flaky');
    const auth = authRequest('tok_success');
    expect(await flaky.authorize(auth)).toMatchObject({ outcome: 'error', charged: false, code: 'provider_unavailable_not_charged' });
    expect(await connector.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toEqual({ outcome: 'not_found' });
    // A lookup failing is never mistaken for "not charged".
    expect(await flaky.sync({ attemptId: auth.attemptId, paymentId: auth.paymentId, operation: 'authorize' }))
      .toMatchObject({ outcome: 'unknown', reason: 'provider_error' });
    expect(await ledger(auth.paymentId)).toEqual([]);
  });

  it('timeouts are charged or not, and sync always agrees with the ledger; close does not wait for hangs', async () => {
    const host = await startHost({ db: tdb.db, hangMs: 10_000, webhookSecret: SECRET, flaky: { seed: 5, failureRate: 0, timeoutRate: 1, latencyMs: 0 } });
    const flaky = connectorFor(host.baseUrl, FAST_TIMEOUT_MS, true);
    closers.push(() => flaky.close());
    const auths = Array.from({ length: 8 }, () => authRequest('tok_success'));
    const outcomes = await Promise.all(auths.map((a) => flaky.authorize(a)));
    for (const o of outcomes) expect(o).toMatchObject({ outcome: 'unknown', reason: 'timeout' });
    const kinds = await Promise.all(auths.map(async (a) => {
      const s = await connector.sync({ attemptId: a.attemptId, paymentId: a.paymentId, operation: 'authorize' });
      const rows = await ledger(a.paymentId);
      if (s.outcome === 'succeeded') expect(rows.map((r) => r.operation)).toEqual(['authorize']);
      else expect([s.outcome, rows]).toEqual(['not_found', []]);
      return s.outcome;
    }));
    expect(new Set(kinds)).toEqual(new Set(['succeeded', 'not_found']));
    // undici may hold fresh idle sockets after aborted requests; an HTTP server waits for those.
    await flaky.close();
    const started = Date.now();
    await host.app.close();
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('webhooks may be duplicated: the same event id arrives twice at the flaky endpoint', async () => {
    const host = await startHost({
      db: tdb.db,
      hangMs: HANG_MS,
      webhookSecret: SECRET,
      webhookUrl: `${receiver.url}/hooks/{connector}`,
      asyncDelayMs: 50,
      flaky: { seed: 9, failureRate: 0, timeoutRate: 0, latencyMs: 10, webhookDuplicateRate: 1, webhookMaxDelayMs: 200 },
    });
    closers.push(() => host.app.close());
    const flaky = connectorFor(host.baseUrl, 5000, true);
    closers.push(() => flaky.close());
    const auth = authRequest('tok_async');
    expectOutcome(await flaky.authorize(auth), 'pending');
    const deliveries = await waitFor(() => {
      const got = receiver.for(auth.paymentId);
      return got.length >= 2 ? got : undefined;
    });
    expect(deliveries.map((d) => d.path)).toEqual(['/hooks/flaky', '/hooks/flaky']);
    expect(deliveries[0]!.event.id).toBe(deliveries[1]!.event.id);
    expect(deliveries.every((d) => flaky.verifyWebhook(d.rawBody, d.headers))).toBe(true);
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize']);
  });
});

describe('webhooks for every effect', () => {
  it('reports authorize, capture and refund as normalized events when enabled', async () => {
    const host = await startHost({
      db: tdb.db, hangMs: HANG_MS, webhookSecret: SECRET, flaky: NO_CHAOS,
      webhookUrl: `${receiver.url}/hooks/{connector}`, webhooksForAllEffects: true,
    });
    closers.push(() => host.app.close());
    const c = connectorFor(host.baseUrl);
    closers.push(() => c.close());
    const auth = authRequest('tok_success');
    const a = await c.authorize(auth);
    expectOutcome(a, 'succeeded');
    const base = { paymentId: auth.paymentId, providerReference: a.providerReference, currency: 'INR' };
    expectOutcome(await c.capture({ ...base, attemptId: `att_cap_${++seq}`, amount: 1000 }), 'succeeded');
    const refundKey = `att_ref_${++seq}`;
    expectOutcome(await c.refund({ ...base, attemptId: refundKey, refundId: 're_1', amount: 250 }), 'succeeded');
    const deliveries = await waitFor(() => {
      const got = receiver.for(auth.paymentId);
      return got.length >= 3 ? got : undefined;
    });
    const events = deliveries.flatMap((d) => c.parseWebhook(d.rawBody));
    expect(events.map((e) => e.type).sort()).toEqual(['authorized', 'captured', 'refunded']);
    expect(events.find((e) => e.type === 'refunded')).toMatchObject({ attemptId: refundKey, amount: 250, providerReference: a.providerReference });
    const declined = authRequest('tok_decline');
    expectOutcome(await c.authorize(declined), 'declined');
    const failed = await waitFor(() => receiver.for(declined.paymentId)[0]);
    expect(c.parseWebhook(failed.rawBody)[0]).toMatchObject({ type: 'failed', failureCode: 'card_declined' });
  });
});

describe('lifecycle', () => {
  it('runs standalone at the root, and closing cancels pending settlements', async () => {
    const app = await buildMockProviderServer({
      db: tdb.db, hangMs: HANG_MS, webhookSecret: SECRET, flaky: NO_CHAOS, asyncDelayMs: 60_000,
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const health = await request(`${url}/health`);
    expect(await health.body.json()).toEqual({ status: 'ok' });
    const c = connectorFor(url);
    expectOutcome(await c.authorize(authRequest('tok_success')), 'succeeded');
    const pending = authRequest('tok_async');
    expectOutcome(await c.authorize(pending), 'pending');
    await c.close();
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(2000);
    const row = await tdb.db.query<{ status: string }>('SELECT status FROM mock_provider_charges WHERE payment_id = $1', [pending.paymentId]);
    expect(row.rows[0]?.status).toBe('pending');
  });

  it('a restarted provider settles charges left pending', async () => {
    const auth = authRequest('tok_async');
    const first = await startHost({ db: tdb.db, hangMs: HANG_MS, webhookSecret: SECRET, flaky: NO_CHAOS, asyncDelayMs: 60_000 });
    const c = connectorFor(first.baseUrl);
    expectOutcome(await c.authorize(auth), 'pending');
    await c.close();
    await first.app.close();
    const second = await startHost({
      db: tdb.db, hangMs: HANG_MS, webhookSecret: SECRET, flaky: NO_CHAOS, asyncDelayMs: 0, webhookUrl: `${receiver.url}/hooks/{connector}`,
    });
    closers.push(() => second.app.close());
    const delivery = await waitFor(() => receiver.for(auth.paymentId)[0]);
    expect(delivery.event.type).toBe('charge.succeeded');
    expect((await ledger(auth.paymentId)).map((r) => r.operation)).toEqual(['authorize']);
  });
});
