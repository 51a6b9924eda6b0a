import { request as httpRequest } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Server as TcpServer, Socket } from 'node:net';
import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createStripeConnector } from '../../src/connectors/stripe/index.js';
import type { StripeConnector, StripeConnectorOptions } from '../../src/connectors/stripe/index.js';
import { outcomeFromError } from '../../src/connectors/stripe/outcomes.js';
import { CONNECT_TIMEOUT_CODE, createAgent } from '../../src/connectors/stripe/transport.js';
import type { ConnectorOutcome, SyncOutcome } from '../../src/connectors/port.js';
import { parseForm, startFakeStripe } from './fake-stripe.js';
import type { FakeStripe } from './fake-stripe.js';

const SECRET_KEY = 'sk_test_switchyard';
const WEBHOOK_SECRET = 'whsec_switchyard_test';
const SHORT_TIMEOUT_MS = 300;

let seq = 0;
function ids(): { attemptId: string; paymentId: string } {
  seq += 1;
  const tag = `${Date.now().toString(36)}${seq.toString(36).padStart(4, '0')}`;
  return { attemptId: `att_${tag}`, paymentId: `pay_${tag}` };
}

let fake: FakeStripe;
const connectors: StripeConnector[] = [];

function connectorAt(port: number, overrides: Partial<StripeConnectorOptions> = {}): StripeConnector {
  const c = createStripeConnector({
    secretKey: SECRET_KEY,
    webhookSecret: WEBHOOK_SECRET,
    host: '127.0.0.1',
    port,
    protocol: 'http',
    connectTimeoutMs: 1000,
    timeoutMs: 5000,
    authorizeTimeoutMs: 5000,
    ...overrides,
  });
  connectors.push(c);
  return c;
}

let stripe: StripeConnector;

beforeAll(async () => {
  fake = await startFakeStripe();
  stripe = connectorAt(fake.port);
});

afterEach(() => {
  fake.refundStatus = 'succeeded';
  fake.releaseSlow();
});

afterAll(async () => {
  await Promise.all(connectors.map((c) => c.close()));
  await fake.close();
});

function authorize(c: StripeConnector, token: string, opts: { capture?: boolean; amount?: number; attemptId?: string; paymentId?: string } = {}): Promise<ConnectorOutcome> {
  const fresh = ids();
  return c.authorize({
    attemptId: opts.attemptId ?? fresh.attemptId,
    paymentId: opts.paymentId ?? fresh.paymentId,
    amount: opts.amount ?? 1000,
    currency: 'USD',
    paymentMethod: 'card',
    paymentMethodToken: token,
    capture: opts.capture ?? false,
  });
}

function ref(o: ConnectorOutcome | SyncOutcome): string {
  if (o.outcome === 'succeeded' || o.outcome === 'pending') return o.providerReference;
  throw new Error(`expected a provider reference, got ${JSON.stringify(o)}`);
}

/** A port with nothing listening on it: bind, note the port, close. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('stripe connector: money movement against the fake', () => {
  it('authorizes (manual), captures part, refunds part — one ledger row per effect', async () => {
    const { attemptId, paymentId } = ids();
    const auth = await authorize(stripe, 'pm_card_visa', { attemptId, paymentId, amount: 1000 });
    expect(auth).toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized' });
    const pi = ref(auth);
    expect(pi).toMatch(/^pi_/);
    expect(fake.intents.get(pi)).toMatchObject({
      amount: 1000,
      currency: 'usd',
      capture_method: 'manual',
      status: 'requires_capture',
      metadata: { payment_id: paymentId, attempt_id: attemptId },
    });

    const captureAttempt = ids().attemptId;
    const cap = await stripe.capture({ attemptId: captureAttempt, paymentId, providerReference: pi, amount: 600, currency: 'USD' });
    expect(cap).toEqual(expect.objectContaining({ outcome: 'succeeded', providerReference: pi, providerStatus: 'captured' }));

    const refundAttempt = ids().attemptId;
    const refund = await stripe.refund({ attemptId: refundAttempt, paymentId, refundId: 're_sy1', providerReference: pi, amount: 200, currency: 'USD' });
    expect(refund).toMatchObject({ outcome: 'succeeded', providerStatus: 'refunded' });
    const refundId = ref(refund);
    expect(refundId).toMatch(/^re_/);
    expect(fake.refunds.get(refundId)?.metadata).toEqual({ payment_id: paymentId, attempt_id: refundAttempt, refund_id: 're_sy1' });

    expect(fake.ledgerFor(pi).map((r) => [r.operation, r.amount, r.idempotencyKey])).toEqual([
      ['authorize', 1000, attemptId],
      ['capture', 600, captureAttempt],
      ['refund', 200, refundAttempt],
    ]);
  });

  it('authorizes with automatic capture in one step', async () => {
    const auth = await authorize(stripe, 'pm_card_visa', { capture: true, amount: 2500 });
    expect(auth).toMatchObject({ outcome: 'succeeded', providerStatus: 'captured' });
    expect(fake.intents.get(ref(auth))).toMatchObject({ status: 'succeeded', amount_received: 2500, capture_method: 'automatic' });
  });

  it('maps declines to their decline codes, keeping the declined intent as reference', async () => {
    const generic = await authorize(stripe, 'pm_card_chargeDeclined');
    expect(generic).toMatchObject({ outcome: 'declined', code: 'generic_decline', message: 'Your card was declined.' });
    const insufficient = await authorize(stripe, 'pm_card_chargeDeclinedInsufficientFunds');
    expect(insufficient).toMatchObject({ outcome: 'declined', code: 'insufficient_funds' });
    for (const o of [generic, insufficient]) {
      if (o.outcome !== 'declined') throw new Error('not declined');
      expect(o.providerReference).toMatch(/^pi_/);
      expect(fake.intents.get(o.providerReference!)?.status).toBe('requires_payment_method');
      expect(fake.ledgerFor(o.providerReference!)).toEqual([]);
    }
  });

  it('treats a confirm that needs 3-D Secure as declined (a server-side authorization cannot complete it)', async () => {
    const o = await authorize(stripe, 'pm_card_authenticationRequired');
    expect(o).toMatchObject({ outcome: 'declined', code: 'authentication_required' });
  });

  it('reports processing as pending, and a later sync reports the settled result', async () => {
    const { attemptId, paymentId } = ids();
    const o = await authorize(stripe, 'pm_processing', { attemptId, paymentId });
    expect(o.outcome).toBe('pending');
    const pi = ref(o);
    expect(await stripe.sync({ attemptId, paymentId, operation: 'authorize', providerReference: pi })).toMatchObject({ outcome: 'pending' });
    fake.settleIntent(pi, 'succeeded');
    expect(await stripe.sync({ attemptId, paymentId, operation: 'authorize', providerReference: pi })).toMatchObject({
      outcome: 'succeeded',
      providerReference: pi,
      providerStatus: 'authorized',
    });
  });

  it('a repeated authorize with the same attempt id is answered from the idempotency store: one intent, one effect', async () => {
    const { attemptId, paymentId } = ids();
    const first = await authorize(stripe, 'pm_card_visa', { attemptId, paymentId });
    const second = await authorize(stripe, 'pm_card_visa', { attemptId, paymentId });
    expect(second).toMatchObject({ outcome: 'succeeded', providerReference: ref(first) });
    expect([...fake.intents.values()].filter((pi) => pi.metadata.attempt_id === attemptId)).toHaveLength(1);
    expect(fake.ledger.filter((r) => r.idempotencyKey === attemptId)).toHaveLength(1);
    expect(fake.requests.filter((r) => r.idempotencyKey === attemptId)).toHaveLength(2);
  });

  it('the same attempt id with other parameters is unknown (an earlier request under it may have charged), not a failover-safe error', async () => {
    const { attemptId, paymentId } = ids();
    await authorize(stripe, 'pm_card_visa', { attemptId, paymentId, amount: 1000 });
    const o = await authorize(stripe, 'pm_card_visa', { attemptId, paymentId, amount: 1200 });
    expect(o).toMatchObject({ outcome: 'unknown', reason: 'provider_error' });
    expect(fake.ledger.filter((r) => r.idempotencyKey === attemptId)).toHaveLength(1);
    // The sync finds what the attempt id did.
    expect(await stripe.sync({ attemptId, paymentId, operation: 'authorize' })).toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized' });
  });

  it('charged-then-slow: the timeout is unknown, sync finds the intent by attempt id, and nothing is charged twice', async () => {
    const impatient = connectorAt(fake.port, { authorizeTimeoutMs: SHORT_TIMEOUT_MS });
    const { attemptId, paymentId } = ids();
    const started = Date.now();
    const o = await authorize(impatient, 'pm_slow', { attemptId, paymentId });
    expect(o).toMatchObject({ outcome: 'unknown', reason: 'timeout' });
    expect(Date.now() - started).toBeLessThan(SHORT_TIMEOUT_MS + 2000);
    expect(fake.heldBack).toBe(1);

    // While Stripe is still on the first request, the same key is "in use": still unknown.
    expect(await authorize(impatient, 'pm_slow', { attemptId, paymentId })).toMatchObject({ outcome: 'unknown', reason: 'provider_error' });

    const synced = await impatient.sync({ attemptId, paymentId, operation: 'authorize', providerReference: null });
    expect(synced).toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized' });
    const pi = ref(synced);

    fake.releaseSlow();
    // Resent under the same key once the first finished: the stored answer, no new effect.
    expect(await authorize(impatient, 'pm_slow', { attemptId, paymentId })).toMatchObject({ outcome: 'succeeded', providerReference: pi });
    expect([...fake.intents.values()].filter((x) => x.metadata.attempt_id === attemptId)).toHaveLength(1);
    expect(fake.ledger.filter((r) => r.idempotencyKey === attemptId).map((r) => r.operation)).toEqual(['authorize']);
  });

  it('voids an authorization; a second void is a definite refusal', async () => {
    const { attemptId, paymentId } = ids();
    const pi = ref(await authorize(stripe, 'pm_card_visa', { attemptId, paymentId, amount: 700 }));
    const voidAttempt = ids().attemptId;
    const v = await stripe.void({ attemptId: voidAttempt, paymentId, providerReference: pi });
    expect(v).toMatchObject({ outcome: 'succeeded', providerReference: pi, providerStatus: 'voided' });
    expect(fake.ledgerFor(pi).map((r) => [r.operation, r.amount])).toEqual([
      ['authorize', 700],
      ['void', 700],
    ]);
    const again = await stripe.void({ attemptId: ids().attemptId, paymentId, providerReference: pi });
    expect(again).toMatchObject({ outcome: 'error', charged: false, code: 'payment_intent_unexpected_state' });

    // Sync: the void happened (found through metadata.payment_id), and the authorization had succeeded.
    expect(await stripe.sync({ attemptId: voidAttempt, paymentId, operation: 'void', providerReference: null })).toMatchObject({
      outcome: 'succeeded',
      providerStatus: 'voided',
    });
    expect(await stripe.sync({ attemptId, paymentId, operation: 'authorize', providerReference: pi })).toMatchObject({
      outcome: 'succeeded',
      providerStatus: 'authorized',
    });
  });

  it('refunds that are pending or fail map to pending and declined', async () => {
    const { paymentId } = ids();
    const pi = ref(await authorize(stripe, 'pm_card_visa', { capture: true, paymentId }));
    fake.refundStatus = 'pending';
    const pending = await stripe.refund({ ...ids(), paymentId, refundId: 're_a', providerReference: pi, amount: 100, currency: 'USD' });
    expect(pending.outcome).toBe('pending');
    expect(ref(pending)).toMatch(/^re_/);
    fake.refundStatus = 'failed';
    const failed = await stripe.refund({ ...ids(), paymentId, refundId: 're_b', providerReference: pi, amount: 100, currency: 'USD' });
    expect(failed).toMatchObject({ outcome: 'declined', code: 'expired_or_canceled_card' });
  });

  it('passes trace headers but never lets them override the idempotency key', async () => {
    const { attemptId, paymentId } = ids();
    await stripe.authorize({
      attemptId,
      paymentId,
      amount: 100,
      currency: 'EUR',
      paymentMethod: 'card',
      paymentMethodToken: 'pm_card_visa',
      capture: false,
      traceHeaders: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'Idempotency-Key': 'evil' },
    });
    expect(fake.requests.at(-1)).toMatchObject({ path: '/v1/payment_intents', idempotencyKey: attemptId });
  });
});

describe('stripe connector: errors and the network', () => {
  it('maps Stripe refusals that certainly did nothing to error (charged: false)', async () => {
    expect(await authorize(stripe, 'pm_does_not_exist')).toMatchObject({ outcome: 'error', charged: false, code: 'resource_missing' });

    const wrongKey = connectorAt(fake.port, { secretKey: 'sk_live_not_accepted_here' });
    expect(await authorize(wrongKey, 'pm_card_visa')).toMatchObject({ outcome: 'error', charged: false });

    fake.injectFailure({ status: 429, error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests.' } });
    expect(await authorize(stripe, 'pm_card_visa')).toMatchObject({ outcome: 'error', charged: false, code: 'rate_limit' });

    fake.injectFailure({ status: 403, error: { type: 'invalid_request_error', message: 'This key cannot do that.' } });
    expect(await authorize(stripe, 'pm_card_visa')).toMatchObject({ outcome: 'error', charged: false });

    const capture = await stripe.capture({ ...ids(), providerReference: 'pi_missing', amount: 1, currency: 'USD' });
    expect(capture).toMatchObject({ outcome: 'error', charged: false, code: 'resource_missing' });
  });

  it('maps a Stripe 5xx to unknown: Stripe may have acted', async () => {
    fake.injectFailure({ status: 500, error: { type: 'api_error', message: 'Something went wrong on our end.' } });
    expect(await authorize(stripe, 'pm_card_visa')).toMatchObject({ outcome: 'unknown', reason: 'provider_error' });
    fake.injectFailure({ status: 503, error: { type: 'api_error', message: 'Unavailable.' } });
    expect(await stripe.refund({ ...ids(), refundId: 're_x', providerReference: 'pi_x', amount: 1, currency: 'USD' })).toMatchObject({
      outcome: 'unknown',
    });
  });

  it('connection refused is error charged:false (nothing was sent); a lookup that cannot connect is unknown', async () => {
    const port = await closedPort();
    const nowhere = connectorAt(port);
    expect(await authorize(nowhere, 'pm_card_visa')).toMatchObject({ outcome: 'error', charged: false, code: 'connector_unreachable' });
    expect(await nowhere.capture({ ...ids(), providerReference: 'pi_x', amount: 1, currency: 'USD' })).toMatchObject({
      outcome: 'error',
      charged: false,
      code: 'connector_unreachable',
    });
    const s = await nowhere.sync({ ...ids(), operation: 'authorize' });
    expect(s.outcome).toBe('unknown');
  });

  it('a reset after the request was written stays unknown even when the resend is refused at connect', async () => {
    let connections = 0;
    const server: TcpServer = createTcpServer((socket) => {
      connections += 1;
      socket.once('data', () => {
        // Stop listening first, so the resend of this request is refused at connect.
        server.close();
        socket.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
    const resetting = connectorAt((server.address() as AddressInfo).port);
    const o = await authorize(resetting, 'pm_card_visa');
    // The first request may have reached Stripe: never the failover-safe `error`.
    expect(o).toMatchObject({ outcome: 'unknown', reason: 'network' });
    if (o.outcome === 'unknown') expect(o.message).toMatch(/ECONNRESET, then ECONNREFUSED/);
    expect(connections).toBe(1);
    await closed;
  });

  it('a reset (e.g. a stale keep-alive socket) is resent once under the same idempotency key', async () => {
    const sockets: Socket[] = [];
    let connections = 0;
    // Resets the first connection after reading the request; later ones are piped to the fake.
    const proxy: TcpServer = createTcpServer((socket) => {
      sockets.push(socket);
      connections += 1;
      if (connections === 1) {
        socket.once('data', () => socket.resetAndDestroy());
        return;
      }
      const upstream = connect(fake.port, '127.0.0.1');
      sockets.push(upstream);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const c = connectorAt((proxy.address() as AddressInfo).port);
      const { attemptId, paymentId } = ids();
      const o = await authorize(c, 'pm_card_visa', { attemptId, paymentId });
      expect(o).toMatchObject({ outcome: 'succeeded', providerStatus: 'authorized' });
      expect(connections).toBe(2);
      expect(fake.ledger.filter((r) => r.idempotencyKey === attemptId)).toHaveLength(1);
      await c.close();
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('the agent abandons a connect that does not complete within the connect timeout (nothing was written)', async () => {
    const agent = createAgent('http', 100);
    try {
      const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
        const req = httpRequest(
          // The name lookup never answers, so the connection never comes up (and no network is used).
          { host: 'connect-timeout.invalid', port: 80, path: '/', agent, lookup: () => undefined },
          () => resolve(new Error('unexpected answer')),
        );
        req.on('error', resolve);
        req.end();
      });
      expect(err.code).toBe(CONNECT_TIMEOUT_CODE);
    } finally {
      agent.destroy();
    }
  });

  it('classifies transport failures from the SDK: connect timeout = not sent, read timeout = unknown', () => {
    const connectTimeout = new Stripe.errors.StripeConnectionError({
      message: 'An error occurred with our connection to Stripe.',
      detail: Object.assign(new Error('connect timeout'), { code: CONNECT_TIMEOUT_CODE }),
    });
    expect(outcomeFromError(connectTimeout)).toMatchObject({ outcome: 'error', charged: false, code: 'connector_unreachable' });
    const readTimeout = new Stripe.errors.StripeConnectionError({
      message: 'Request aborted due to timeout being reached (300ms)',
      detail: Object.assign(new TypeError('ETIMEDOUT'), { code: 'ETIMEDOUT' }),
    });
    expect(outcomeFromError(readTimeout)).toMatchObject({ outcome: 'unknown', reason: 'timeout' });
    expect(outcomeFromError(new TypeError('boom'))).toMatchObject({ outcome: 'unknown' });
  });
});

describe('stripe connector: sync', () => {
  it('authorize: not_found when Stripe has no intent for the attempt id, or the id is unknown', async () => {
    expect(await stripe.sync({ ...ids(), operation: 'authorize' })).toEqual({ outcome: 'not_found' });
    expect(await stripe.sync({ ...ids(), operation: 'authorize', providerReference: 'pi_nope' })).toEqual({ outcome: 'not_found' });
  });

  it('authorize: a declined attempt syncs as declined', async () => {
    const { attemptId, paymentId } = ids();
    await authorize(stripe, 'pm_card_chargeDeclinedInsufficientFunds', { attemptId, paymentId });
    expect(await stripe.sync({ attemptId, paymentId, operation: 'authorize' })).toMatchObject({ outcome: 'declined', code: 'insufficient_funds' });
  });

  it('capture and refund: found through the payment and the attempt id; not_found before they happened', async () => {
    const { paymentId } = ids();
    const pi = ref(await authorize(stripe, 'pm_card_visa', { paymentId, amount: 900 }));
    const captureAttempt = ids().attemptId;
    expect(await stripe.sync({ attemptId: captureAttempt, paymentId, operation: 'capture' })).toEqual({ outcome: 'not_found' });
    await stripe.capture({ attemptId: captureAttempt, paymentId, providerReference: pi, amount: 900, currency: 'USD' });
    expect(await stripe.sync({ attemptId: captureAttempt, paymentId, operation: 'capture' })).toMatchObject({
      outcome: 'succeeded',
      providerReference: pi,
      providerStatus: 'captured',
    });

    const refundAttempt = ids().attemptId;
    expect(await stripe.sync({ attemptId: refundAttempt, paymentId, operation: 'refund', providerReference: pi })).toEqual({ outcome: 'not_found' });
    const refund = ref(await stripe.refund({ attemptId: refundAttempt, paymentId, refundId: 're_s', providerReference: pi, amount: 300, currency: 'USD' }));
    for (const providerReference of [null, pi, refund]) {
      expect(await stripe.sync({ attemptId: refundAttempt, paymentId, operation: 'refund', providerReference })).toMatchObject({
        outcome: 'succeeded',
        providerReference: refund,
        providerStatus: 'refunded',
      });
    }
    expect(fake.ledgerFor(pi).map((r) => r.operation)).toEqual(['authorize', 'capture', 'refund']);
  });

  it('sync never acts: only GET requests reach Stripe', async () => {
    const before = fake.requests.length;
    await stripe.sync({ ...ids(), operation: 'authorize' });
    await stripe.sync({ ...ids(), operation: 'capture' });
    await stripe.sync({ ...ids(), operation: 'void' });
    await stripe.sync({ ...ids(), operation: 'refund' });
    const made = fake.requests.slice(before);
    expect(made.length).toBeGreaterThan(0);
    expect(made.every((r) => r.method === 'GET')).toBe(true);
  });
});

describe('stripe connector: webhooks', () => {
  const sign = (payload: string, secret = WEBHOOK_SECRET, timestamp?: number): string =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp !== undefined ? { timestamp } : {}) });

  function event(type: string, object: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
    return JSON.stringify({
      id: `evt_${ids().attemptId.slice(4)}`,
      object: 'event',
      api_version: '2026-10-28.endive',
      created: 1_760_000_000,
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
      data: { object },
      ...extra,
    });
  }

  const intent = (fields: Record<string, unknown>): Record<string, unknown> => ({
    id: 'pi_w1',
    object: 'payment_intent',
    amount: 1000,
    amount_capturable: 0,
    amount_received: 0,
    currency: 'usd',
    capture_method: 'manual',
    metadata: { payment_id: 'pay_w1', attempt_id: 'att_w1' },
    ...fields,
  });

  it('verifies Stripe-Signature: valid, tampered, wrong secret, stale, missing', () => {
    const payload = event('payment_intent.succeeded', intent({ status: 'succeeded' }));
    const header = sign(payload);
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'stripe-signature': header })).toBe(true);
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'Stripe-Signature': [header] })).toBe(true);
    expect(stripe.verifyWebhook(Buffer.from(payload.replace('"amount":1000', '"amount":9000')), { 'stripe-signature': header })).toBe(false);
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'stripe-signature': sign(payload, 'whsec_someone_else') })).toBe(false);
    const stale = Math.floor(Date.now() / 1000) - 301;
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'stripe-signature': sign(payload, WEBHOOK_SECRET, stale) })).toBe(false);
    const fresh = Math.floor(Date.now() / 1000) - 200;
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'stripe-signature': sign(payload, WEBHOOK_SECRET, fresh) })).toBe(true);
    expect(stripe.verifyWebhook(Buffer.from(payload), {})).toBe(false);
    expect(stripe.verifyWebhook(Buffer.from(payload), { 'stripe-signature': 'garbage' })).toBe(false);
  });

  it('maps PaymentIntent events', () => {
    const parse = (type: string, fields: Record<string, unknown>, extra?: Record<string, unknown>) =>
      stripe.parseWebhook(Buffer.from(event(type, intent(fields), extra)))[0]!;

    expect(parse('payment_intent.amount_capturable_updated', { status: 'requires_capture', amount_capturable: 1000 })).toMatchObject({
      type: 'authorized',
      providerReference: 'pi_w1',
      attemptId: 'att_w1',
      paymentId: 'pay_w1',
      amount: 1000,
      occurredAt: new Date(1_760_000_000_000).toISOString(),
    });
    // Automatic capture: the authorize attempt captured.
    expect(parse('payment_intent.succeeded', { status: 'succeeded', capture_method: 'automatic', amount_received: 1000 })).toMatchObject({
      type: 'captured',
      attemptId: 'att_w1',
      amount: 1000,
    });
    // Manual capture: the capture attempt is the request that caused the event.
    expect(
      parse('payment_intent.succeeded', { status: 'succeeded', amount_received: 600 }, { request: { id: 'req_1', idempotency_key: 'att_capture1' } }),
    ).toMatchObject({ type: 'captured', attemptId: 'att_capture1', amount: 600 });
    // Captured from the Dashboard: not one of our attempts.
    expect(
      parse('payment_intent.succeeded', { status: 'succeeded', amount_received: 600 }, { request: { id: 'req_2', idempotency_key: '5b1c0e3a-dashboard' } }),
    ).toMatchObject({ type: 'captured', attemptId: null, paymentId: 'pay_w1' });
    expect(
      parse('payment_intent.payment_failed', {
        status: 'requires_payment_method',
        last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds' },
      }),
    ).toMatchObject({ type: 'failed', attemptId: 'att_w1', failureCode: 'insufficient_funds' });
    expect(parse('payment_intent.canceled', { status: 'canceled' }, { request: { id: 'req_3', idempotency_key: 'att_void1' } })).toMatchObject({
      type: 'voided',
      providerReference: 'pi_w1',
      attemptId: 'att_void1',
    });
    expect(parse('payment_intent.created', { status: 'requires_confirmation' })).toMatchObject({ type: 'other', providerReference: 'pi_w1' });
  });

  it('maps refund events: charge.refunded, refund.updated, refund.failed; a released authorization is not a refund', () => {
    const charge = { id: 'ch_1', object: 'charge', payment_intent: 'pi_w1', captured: true, amount: 1000, amount_refunded: 300, metadata: { payment_id: 'pay_w1' } };
    expect(
      stripe.parseWebhook(Buffer.from(event('charge.refunded', charge, { request: { id: 'req_4', idempotency_key: 'att_refund1' } })))[0],
    ).toMatchObject({ type: 'refunded', providerReference: 'pi_w1', attemptId: 'att_refund1', paymentId: 'pay_w1', amount: 300 });
    expect(stripe.parseWebhook(Buffer.from(event('charge.refunded', { ...charge, captured: false, amount_refunded: 1000 })))[0]).toMatchObject({
      type: 'other',
    });

    const refund = { id: 're_1', object: 'refund', amount: 300, payment_intent: 'pi_w1', metadata: { payment_id: 'pay_w1', attempt_id: 'att_refund2' } };
    expect(stripe.parseWebhook(Buffer.from(event('refund.updated', { ...refund, status: 'succeeded' })))[0]).toMatchObject({
      type: 'refunded',
      attemptId: 'att_refund2',
      amount: 300,
    });
    expect(
      stripe.parseWebhook(Buffer.from(event('refund.failed', { ...refund, status: 'failed', failure_reason: 'expired_or_canceled_card' })))[0],
    ).toMatchObject({ type: 'refund_failed', attemptId: 'att_refund2', failureCode: 'expired_or_canceled_card' });
  });

  it('keeps the event id and refuses bodies that are not Stripe events', () => {
    const payload = event('customer.created', { id: 'cus_1', object: 'customer' });
    const [e] = stripe.parseWebhook(Buffer.from(payload));
    expect(e).toMatchObject({ providerEventId: JSON.parse(payload).id, type: 'other', attemptId: null, paymentId: null });
    expect(() => stripe.parseWebhook(Buffer.from('not json'))).toThrow();
    expect(() => stripe.parseWebhook(Buffer.from(JSON.stringify({ id: 'x', type: 'y' })))).toThrow();
  });
});

describe('fake stripe: form parsing', () => {
  it('nests bracket keys the way the SDK encodes them', () => {
    expect(parseForm('amount=100&metadata[payment_id]=pay_1&metadata[attempt_id]=att_1&expand[0]=a&expand[1]=b&x[y][z]=1')).toEqual({
      amount: '100',
      metadata: { payment_id: 'pay_1', attempt_id: 'att_1' },
      expand: ['a', 'b'],
      x: { y: { z: '1' } },
    });
  });
});
