/**
 * A running Switchyard for HTTP-level tests: a real PostgreSQL database of its own, the mock
 * provider as a separate HTTP server, and the API listening on a loopback port. Tests talk to it
 * with plain fetch, exactly like a merchant's backend would.
 */
import type { FastifyInstance } from 'fastify';
import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createApiProcess, mockProviderOptions } from '../../src/runtime/api.js';
import { buildMockProviderServer } from '../../src/mock-provider/app.js';
import { startWorker, type WorkerHandle } from '../../src/worker/worker.js';
import type { ConnectorRegistry } from '../../src/connectors/registry.js';
import { createTestDatabase, type TestDatabase } from './db.js';

export const ADMIN_KEY = 'test_admin_key_0123456789abcdef';

export interface Harness {
  url: string;
  providerUrl: string;
  database: TestDatabase;
  config: Config;
  app: FastifyInstance;
  provider: FastifyInstance;
  /** Every log line written by the API (and worker) so far. */
  logs: string[];
  /** Set when started with { worker: true }. */
  worker: WorkerHandle | null;
  /** The API's connector registry (with its circuit breakers), for calling use cases directly. */
  connectors: ConnectorRegistry;
  close(): Promise<void>;
}

export interface HarnessOptions {
  worker?: boolean;
  /** Delay before the provider settles a tok_async* charge and reports it; default 1000 ms. */
  asyncDelayMs?: number;
}

export async function startHarness(env: Record<string, string> = {}, opts: HarnessOptions = {}): Promise<Harness> {
  const database = await createTestDatabase();
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const config = loadConfig({
    SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
    SWITCHYARD_DATA_DIR: '.test-data/harness',
    DATABASE_URL: database.url,
    LOG_LEVEL: 'info',
    CONNECTOR_AUTHORIZE_TIMEOUT_MS: '1500',
    CONNECTOR_TIMEOUT_MS: '1500',
    MOCK_PROVIDER_HANG_MS: '4000',
    // Tests assert exact outcomes of bursts (50 racing payments, say) on machines of any speed;
    // shedding on a database queue has its own test (test/ops/shedding-db-wait.test.ts).
    OVERLOAD_DB_WAIT_MS: '5000',
    ...env,
  });
  const log = createLogger(config.LOG_LEVEL, sink);
  // The provider first, on its own port; its webhooks go to the API once that listens.
  let apiUrl = 'http://127.0.0.1:1';
  const provider = await buildMockProviderServer({
    ...mockProviderOptions(config, database.db, 'http://127.0.0.1:1'),
    webhookUrl: () => `${apiUrl}/v1/connectors/{connector}/webhooks`,
    ...(opts.asyncDelayMs !== undefined ? { asyncDelayMs: opts.asyncDelayMs } : {}),
    logger: false,
  } as Parameters<typeof buildMockProviderServer>[0]);
  await provider.listen({ host: '127.0.0.1', port: 0 });
  const providerAddr = provider.server.address();
  const providerUrl = `http://127.0.0.1:${typeof providerAddr === 'object' && providerAddr ? providerAddr.port : 0}`;
  const cfg = { ...config, MOCK_PROVIDER_URL: providerUrl };
  const api = await createApiProcess(cfg, database.db, database.url, log, providerUrl);
  await api.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = api.app.server.address();
  apiUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const worker = opts.worker ? await startWorker(cfg, database.db, database.url, log, { connectors: api.connectors }) : null;
  return {
    url: apiUrl,
    providerUrl,
    database,
    config: cfg,
    app: api.app,
    provider,
    logs,
    worker,
    connectors: api.connectors,
    async close() {
      await Promise.all([api.app.close(), worker?.stop()]);
      await api.close();
      await provider.close();
      await database.drop();
    },
  };
}

// Response bodies are navigated freely by assertions; a wrong path fails the assertion reading it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JsonBody = Record<string, any>;

export interface ApiResponse<T = JsonBody> {
  status: number;
  headers: Headers;
  body: T;
}

export async function call<T = JsonBody>(
  h: { url: string },
  method: string,
  path: string,
  opts: { key?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.key) headers['x-api-key'] = opts.key;
  let payload: string | undefined;
  if (opts.raw !== undefined) payload = opts.raw;
  else if (opts.body !== undefined) payload = JSON.stringify(opts.body);
  if (payload !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const res = await fetch(`${h.url}${path}`, { method, headers, body: payload });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* keep the text */
  }
  return { status: res.status, headers: res.headers, body: body as T };
}

export interface MerchantWithKey {
  id: string;
  key: string;
}

export async function createMerchant(h: { url: string }, attrs: Record<string, unknown> = {}): Promise<MerchantWithKey> {
  const m = await call(h, 'POST', '/v1/admin/merchants', {
    key: ADMIN_KEY,
    body: { name: 'Test Merchant', onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'gold', ...attrs },
  });
  if (m.status !== 201) throw new Error(`merchant create failed: ${m.status} ${JSON.stringify(m.body)}`);
  const k = await call(h, 'POST', `/v1/admin/merchants/${m.body.id}/api_keys`, { key: ADMIN_KEY });
  if (k.status !== 201) throw new Error(`key create failed: ${k.status}`);
  return { id: m.body.id as string, key: k.body.key as string };
}

let refCounter = 0;

export function paymentBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  refCounter += 1;
  return {
    amount: 150_000,
    currency: 'INR',
    payment_method: 'card',
    payment_method_token: 'tok_success',
    // base36: a run of 13+ decimal digits could pass the Luhn check and be refused as a card number
    reference_id: `order_${process.pid.toString(36)}_${Date.now().toString(36)}_${refCounter.toString(36)}`,
    customer: { email: 'asha@example.com', phone: '+919876543210' },
    ...overrides,
  };
}

/** Polls until `check` returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
