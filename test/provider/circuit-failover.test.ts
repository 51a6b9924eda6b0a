/**
 * Circuit breaker and routing through a whole outage and recovery (SPEC §10), with a clock the test
 * holds. The flaky provider can't be healed at runtime (FLAKY_FAILURE_RATE is fixed at start), so
 * the registry here is built by the test: the real mock and flaky connectors, each reaching the
 * real mock provider through a small HTTP relay the test can switch off (it then answers as the
 * flaky provider does when it fails before acting: 500 provider_unavailable_not_charged) and on
 * again. Payments are created through the API (confirm=false) and confirmed with authorizePayment
 * on that registry. Also, through the API itself: a timeout never fails over.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type ConnectorRegistry } from '../../src/connectors/registry.js';
import { createMockConnector } from '../../src/connectors/mock/index.js';
import { createFlakyConnector } from '../../src/connectors/flaky/index.js';
import { DEFAULT_BREAKER, type BreakerSettings } from '../../src/connectors/circuit-breaker.js';
import { isAppError } from '../../src/domain/errors.js';
import { withTx } from '../../src/db/pool.js';
import { getMerchant } from '../../src/merchants/store.js';
import { authorizePayment } from '../../src/payments/authorize.js';
import type { OperationContext } from '../../src/payments/context.js';
import { insertAttempt } from '../../src/payments/store.js';
import { reconcileDue } from '../../src/reconciliation/sweep.js';
import { call, createMerchant, type MerchantWithKey } from '../support/harness.js';
import type { Json } from '../http/helpers.js';
import { HIGH_VELOCITY, attemptsOf, body, ledgerOf, paymentRow, startProviderHarness, type ProviderHarness } from './support.js';

/** An HTTP relay to the mock provider that the test can switch off and on; it counts what reaches it. */
interface Relay {
  url: string;
  up: boolean;
  received: number;
  close(): Promise<void>;
}

async function relay(target: string): Promise<Relay> {
  const state = { up: false, received: 0 };
  const server: Server = createServer(async (req, res) => {
    state.received += 1;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (!state.up) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'provider_unavailable_not_charged', message: 'The provider failed before acting; nothing was charged.' } }));
      return;
    }
    const headers: Record<string, string> = {};
    for (const name of ['content-type', 'idempotency-key', 'accept']) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    const upstream = await fetch(`${target}${req.url}`, { method: req.method, headers, body: chunks.length > 0 ? Buffer.concat(chunks) : undefined });
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return {
    url,
    get up() {
      return state.up;
    },
    set up(v: boolean) {
      state.up = v;
    },
    get received() {
      return state.received;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let h: ProviderHarness;
let m: MerchantWithKey;
let mockRelay: Relay;
let flakyRelay: Relay;
let registry: ConnectorRegistry;
let t = 1_000_000_000;
const SETTINGS: BreakerSettings = { ...DEFAULT_BREAKER, minimumCalls: 4, openMs: 60_000, halfOpenProbes: 2 };

beforeAll(async () => {
  h = await startProviderHarness({ FLAKY_FAILURE_RATE: '0', FLAKY_TIMEOUT_RATE: '0', FLAKY_LATENCY_MS: '0', CIRCUIT_MINIMUM_CALLS: '1000000' });
  m = await createMerchant(h, { ...HIGH_VELOCITY, connectors: [{ name: 'flaky', weight: 100 }, { name: 'mock', weight: 0 }] });
  mockRelay = await relay(h.providerUrl);
  flakyRelay = await relay(h.providerUrl);
  const common = { connectTimeoutMs: 1000, authorizeTimeoutMs: 1500, timeoutMs: 1500, webhookSecret: h.config.MOCK_PROVIDER_WEBHOOK_SECRET };
  registry = createRegistry(
    [createMockConnector({ ...common, name: 'mock', baseUrl: mockRelay.url }), createFlakyConnector({ ...common, baseUrl: flakyRelay.url })],
    SETTINGS,
    () => t,
  );
});
afterAll(async () => {
  await Promise.all(registry ? registry.names().map((n) => (registry.get(n) as { close?: () => Promise<void> }).close?.()) : []);
  await mockRelay?.close();
  await flakyRelay?.close();
  await h?.close();
});

const db = () => h.database.db;

async function ctx(): Promise<OperationContext> {
  return { merchant: await getMerchant(db(), m.id), requestId: 'req_circuit_failover' };
}

async function pending(): Promise<Json> {
  const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ confirm: false }) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.status).toBe('pending');
  return res.body;
}

/** Creates a payment and confirms it through the test's registry: its status and its attempts. */
async function confirm(): Promise<{ id: string; status: string; route: string[]; error?: { code: string; retryAfter: number | undefined } }> {
  const p = await pending();
  let status: string;
  let error: { code: string; retryAfter: number | undefined } | undefined;
  try {
    status = (await authorizePayment({ db: db(), connectors: registry, claimSeconds: 30 }, await ctx(), p.id, { resume: false })).status;
  } catch (err) {
    if (!isAppError(err)) throw err;
    error = { code: err.code, retryAfter: err.retryAfter };
    status = (await paymentRow(db(), p.id)).status;
  }
  const route = (await attemptsOf(db(), p.id)).map((a) => `${a.connector}:${a.status}`);
  return { id: p.id, status, route, ...(error ? { error } : {}) };
}

const state = (name: string) => registry.status().find((s) => s.name === name)!.circuit!.state;

describe('an outage of flaky, then its recovery', () => {
  it('flaky down: every payment fails over to mock (a certain non-charge at flaky); the 4th failure opens flaky', async () => {
    mockRelay.up = true;
    flakyRelay.up = false;
    for (let i = 0; i < 4; i++) {
      expect(state('flaky')).toBe('closed');
      const r = await confirm();
      expect(r).toMatchObject({ status: 'captured', route: ['flaky:failed', 'mock:succeeded'] });
      expect((await ledgerOf(h, r.id)).map((l) => l.operation)).toEqual(['authorize', 'capture']);
    }
    expect(flakyRelay.received).toBe(4);
    expect(state('flaky')).toBe('open');
    expect(registry.isAvailable('flaky')).toBe(false);
  });

  it('open: payments go straight to mock and nothing reaches flaky', async () => {
    const r = await confirm();
    expect(r).toMatchObject({ status: 'captured', route: ['mock:succeeded'] });
    expect(flakyRelay.received).toBe(4);
    t += 59_999;
    expect(state('flaky')).toBe('open');
    expect((await confirm()).route).toEqual(['mock:succeeded']);
    expect(flakyRelay.received).toBe(4);
  });

  it('flaky healthy again: after the open period the half-open probes go to flaky, succeed, and close it', async () => {
    flakyRelay.up = true;
    t += 1;
    expect(state('flaky')).toBe('half_open');
    const probe1 = await confirm();
    expect(probe1).toMatchObject({ status: 'captured', route: ['flaky:succeeded'] });
    expect(state('flaky')).toBe('half_open');
    const probe2 = await confirm();
    expect(probe2).toMatchObject({ status: 'captured', route: ['flaky:succeeded'] });
    expect(state('flaky')).toBe('closed');
    expect(flakyRelay.received).toBe(6);
    // Charged by flaky, once.
    const ledger = await ledgerOf(h, probe2.id);
    expect(ledger.map((l) => l.operation)).toEqual(['authorize', 'capture']);
    expect((await paymentRow(db(), probe2.id)).connector).toBe('flaky');
    // Closed again: flaky takes its weight-100 traffic.
    expect((await confirm()).route).toEqual(['flaky:succeeded']);
  });
});

describe('every connector down', () => {
  it('fails over through all, then opens them all: 503 CONNECTOR_UNAVAILABLE with Retry-After, the payment pending, nothing charged or even sent', async () => {
    t += 20_000; // earlier successes leave the window
    mockRelay.up = false;
    flakyRelay.up = false;
    for (let i = 0; i < 4; i++) {
      const r = await confirm();
      // Until a circuit is open there is no better hint than 30 s; the 4th round opens both (60 s).
      expect(r).toMatchObject({ status: 'pending', route: ['flaky:failed', 'mock:failed'], error: { code: 'CONNECTOR_UNAVAILABLE', retryAfter: i < 3 ? 30 : 60 } });
      expect(await ledgerOf(h, r.id)).toEqual([]);
    }
    expect(state('flaky')).toBe('open');
    expect(state('mock')).toBe('open');
    const sentBefore = mockRelay.received + flakyRelay.received;

    t += 15_000;
    const r = await confirm();
    expect(r).toEqual({ id: r.id, status: 'pending', route: [], error: { code: 'CONNECTOR_UNAVAILABLE', retryAfter: 45 } });
    expect(mockRelay.received + flakyRelay.received).toBe(sentBefore);
    expect(await ledgerOf(h, r.id)).toEqual([]);
    expect(await paymentRow(db(), r.id)).toMatchObject({ status: 'pending', connector: null });
  });

  it('the janitor does not take an open circuit’s refusal as "not charged": the attempt stays open and is retried later', async () => {
    const p = await pending();
    // An attempt left open on flaky (its process died after sending it).
    const attempt = await withTx(db(), (tx) =>
      insertAttempt(tx, { paymentId: p.id, merchantId: m.id, operation: 'authorize', connector: 'flaky', amount: p.amount, request: {}, claimSeconds: 0 }),
    );
    expect(state('flaky')).toBe('open');
    const swept = await reconcileDue({ db: db(), connectors: registry, claimSeconds: 30 }, { thresholdSeconds: 0, asyncThresholdSeconds: 0, maxBackoffSeconds: 60, batchSize: 100, claimSeconds: 30 });
    expect(swept).toEqual({ checked: 1, settled: 0, stillOpen: 1 });
    expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ id: attempt.id, status: 'started', reconcile_attempts: 1 });
    expect(await paymentRow(db(), p.id)).toMatchObject({ status: 'pending', reconciliation_status: 'pending_reconciliation' });
    // Close the gap for later tests: the provider never saw it, and a healthy flaky says so.
    flakyRelay.up = true;
    t += 60_000;
    await db().query("UPDATE payment_attempts SET next_reconcile_at = now() - interval '1 second' WHERE id = $1", [attempt.id]);
    expect(await reconcileDue({ db: db(), connectors: registry, claimSeconds: 30 }, { thresholdSeconds: 0, asyncThresholdSeconds: 0, maxBackoffSeconds: 60, batchSize: 100, claimSeconds: 30 })).toEqual({ checked: 1, settled: 1, stillOpen: 0 });
    expect((await attemptsOf(db(), p.id))[0]).toMatchObject({ status: 'failed', error_code: 'provider_no_record' });
    expect((await paymentRow(db(), p.id)).status).toBe('pending');
  });
});

describe('a timeout never fails over (through the API)', () => {
  it('tok_timeout_charged on flaky: 201 processing with one flaky attempt and no mock attempt; one provider charge', async () => {
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: body({ payment_method_token: 'tok_timeout_charged' }) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.status).toBe('processing');
    const attempts = await attemptsOf(db(), res.body.id);
    expect(attempts.map((a) => `${a.connector}:${a.status}:${a.error_code}`)).toEqual(['flaky:unknown:timeout']);
    const ledger = await ledgerOf(h, res.body.id);
    expect(ledger.map((l) => [l.operation, l.idempotency_key])).toEqual([
      ['authorize', attempts[0]!.id],
      ['capture', attempts[0]!.id],
    ]);
    // And the janitor settles it at flaky, still with the one charge.
    await db().query(`UPDATE payment_attempts SET claimed_until = now() - interval '1 second' WHERE claimed_until > now()`);
    await reconcileDue({ db: db(), connectors: h.connectors, claimSeconds: 30 }, { thresholdSeconds: 0, asyncThresholdSeconds: 0, maxBackoffSeconds: 60, batchSize: 100, claimSeconds: 30 });
    expect(await paymentRow(db(), res.body.id)).toMatchObject({ status: 'captured', connector: 'flaky' });
    expect((await attemptsOf(db(), res.body.id)).map((a) => `${a.connector}:${a.status}`)).toEqual(['flaky:succeeded']);
    expect(await ledgerOf(h, res.body.id)).toHaveLength(2);
  });
});
