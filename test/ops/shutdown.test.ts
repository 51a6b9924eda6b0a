/**
 * Graceful shutdown (SPEC §1, §15): `switchyard api` as a real child process under steady load
 * gets SIGTERM. Readiness goes down before it exits, every request it accepted gets a complete
 * answer (the database is the judge: each payment row it holds was answered 201 or 402), and it
 * exits 0 within the bound. The `worker` process serves /metrics and health on WORKER_METRICS_PORT
 * and exits 0 on SIGTERM too.
 */
import { request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { buildMockProviderServer } from '../../src/mock-provider/app.js';
import { mockProviderOptions } from '../../src/runtime/api.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { ADMIN_KEY, call, waitFor } from '../support/harness.js';
import { freePort, spawnCli, type Spawned } from '../support/process.js';
import { HIGH_VELOCITY, body, parseProm } from './helpers.js';

const HANG_MS = 6000;
const AUTHORIZE_TIMEOUT_MS = 2500;
/** SIGTERM to exit, at most: the slowest request in flight plus room for a loaded machine. */
const EXIT_BOUND_MS = 15_000;

let database: TestDatabase;
let provider: FastifyInstance;
let providerUrl: string;
const children: Spawned[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await provider?.close();
  await database?.drop();
});

/** The mock provider in this process, its webhooks aimed at the api child on `apiPort`. */
async function startProvider(apiPort: number): Promise<void> {
  const config = loadConfig({ DATABASE_URL: database.url, MOCK_PROVIDER_HANG_MS: String(HANG_MS) });
  provider = await buildMockProviderServer({
    ...mockProviderOptions(config, database.db, `http://127.0.0.1:${apiPort}`),
    logger: false,
  } as Parameters<typeof buildMockProviderServer>[0]);
  await provider.listen({ host: '127.0.0.1', port: 0 });
  const addr = provider.server.address();
  providerUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

/** The exit code, or 'still running' if the process has not exited within `ms`. */
async function exitWithin(c: Spawned, ms: number): Promise<number | null | string> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('still running'), ms);
  });
  try {
    return await Promise.race([c.exited, bound]);
  } finally {
    clearTimeout(timer);
  }
}

async function started(c: Spawned, banner: string): Promise<void> {
  await waitFor(async () => {
    if (c.child.exitCode !== null) throw new Error(`exited during start (${c.child.exitCode}):\n${c.output()}`);
    return c.output().includes(banner) ? true : undefined;
  }, 60_000, banner);
}

/** One GET on a fresh connection: the status, or the network error's code. */
function probe(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    req.on('timeout', () => req.destroy(new Error('probe timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.end();
  });
}

interface Sent {
  reference: string;
  slow: boolean;
  beforeSignal: boolean;
  /** HTTP status, or the network error. */
  status?: number;
  error?: string;
  doneAt?: number;
}

describe('switchyard api: SIGTERM under load', () => {
  it('readiness goes down, accepted requests all complete, the database agrees, exit 0', { timeout: 120_000 }, async () => {
    const port = await freePort();
    await startProvider(port);
    const base = `http://127.0.0.1:${port}`;
    const api = spawnCli(['api'], {
      DATABASE_URL: database.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
      SWITCHYARD_DATA_DIR: '.test-data/ops-shutdown',
      LOG_LEVEL: 'warn',
      MOCK_PROVIDER_URL: providerUrl,
      CONNECTOR_AUTHORIZE_TIMEOUT_MS: String(AUTHORIZE_TIMEOUT_MS),
      REDIS_URL: undefined,
    });
    children.push(api);
    await started(api, 'listening on');
    expect(await probe(`${base}/health/readiness`)).toBe(200);

    const m = await call({ url: base }, 'POST', '/v1/admin/merchants', {
      key: ADMIN_KEY,
      body: { name: 'Shutdown Co', onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'platinum', ...HIGH_VELOCITY },
    });
    expect(m.status).toBe(201);
    const k = await call({ url: base }, 'POST', `/v1/admin/merchants/${m.body.id}/api_keys`, { key: ADMIN_KEY });
    expect(k.status).toBe(201);
    const key = k.body.key as string;

    // Steady, bounded load: 200 payments, 20 at a time; one in ten hangs on the provider for
    // the whole authorize timeout, one in seven is declined.
    const TOTAL = 200;
    const CONCURRENCY = 20;
    const sent: Sent[] = [];
    let next = 0;
    let signalled = false;
    let signalAt = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= TOTAL) return;
        const slow = i % 10 === 3;
        const token = slow ? 'tok_timeout_uncharged' : i % 7 === 0 ? 'tok_decline' : 'tok_success';
        const b = body({ payment_method_token: token });
        const s: Sent = { reference: b.reference_id as string, slow, beforeSignal: !signalled };
        sent.push(s);
        try {
          const res = await fetch(`${base}/v1/payments`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(b) });
          await res.arrayBuffer();
          s.status = res.status;
        } catch (err) {
          const cause = (err as { cause?: { code?: string; message?: string } }).cause;
          s.error = cause?.code ?? cause?.message ?? (err as Error).message;
        }
        s.doneAt = Date.now();
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, () => worker()));

    // Mid-load, with slow payments in flight: SIGTERM.
    await waitFor(async () => {
      const done = sent.filter((s) => s.doneAt !== undefined).length;
      const slowInFlight = sent.filter((s) => s.slow && s.doneAt === undefined).length;
      return done >= 50 && slowInFlight >= 2 ? true : undefined;
    }, 60_000, 'load to be under way with slow payments in flight');
    const inFlightAtSignal = sent.filter((s) => s.doneAt === undefined);
    signalled = true;
    signalAt = Date.now();
    api.child.kill('SIGTERM');

    // Readiness goes down while the process is still alive (draining the slow payments).
    const probes: { result: number | string; alive: boolean }[] = [];
    const readinessDown = await waitFor(async () => {
      const result = await probe(`${base}/health/readiness`);
      const alive = api.child.exitCode === null && api.child.signalCode === null;
      probes.push({ result, alive });
      return result !== 200 && alive ? result : undefined;
    }, 10_000, 'readiness to go down before the exit');
    // Down means not 200: an HTTP 503, or no connection (the listener closes at once on SIGTERM).
    expect([503, 'ECONNREFUSED', 'ECONNRESET']).toContain(readinessDown);

    const code = await exitWithin(api, EXIT_BOUND_MS);
    const exitedAt = Date.now();
    await load;

    // Every request sent before the signal got a whole HTTP answer: no hang-ups, no resets.
    const before = sent.filter((s) => s.beforeSignal);
    const after = sent.filter((s) => !s.beforeSignal);
    const lost = before.filter((s) => s.status === undefined);
    expect(lost.map((s) => `${s.reference}: ${s.error}`), 'requests sent before SIGTERM without an answer').toEqual([]);
    for (const s of before) expect([201, 402, 503], `${s.reference}`).toContain(s.status);
    // The slow ones that were in flight were drained, not cut: their answers came after the signal.
    const drained = inFlightAtSignal.filter((s) => s.slow);
    expect(drained.length).toBeGreaterThanOrEqual(2);
    for (const s of drained) {
      expect(s.status, `${s.reference}: ${s.error ?? ''}`).toBe(201);
      expect(s.doneAt!).toBeGreaterThan(signalAt);
    }
    // After the signal, new work is turned away (refused connections or 503), or finished if it
    // was already accepted; nothing else.
    for (const s of after) {
      if (s.status !== undefined) expect([201, 402, 503]).toContain(s.status);
      else expect(s.error).toMatch(/ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET|other side closed/);
    }
    expect(before.length + after.length).toBe(TOTAL);

    // It exited by itself, cleanly and in time: 0, not 143 (128 + SIGTERM) nor 1 (grace period over).
    expect(code, `exit code after SIGTERM (${exitedAt - signalAt} ms); output:\n${api.output()}`).toBe(0);
    expect(exitedAt - signalAt).toBeLessThan(EXIT_BOUND_MS);
    expect(api.output()).not.toMatch(/shutdown failed|grace period over/);

    // The database is the judge: every payment it holds was answered 201 or 402, and every 201 or
    // 402 answered is a payment it holds. Nothing accepted was lost, nothing refused was stored.
    const rows = await database.db.query<{ reference_id: string; status: string }>('SELECT reference_id, status FROM payments WHERE merchant_id = $1', [m.body.id]);
    const byRef = new Map(sent.map((s) => [s.reference, s]));
    for (const row of rows.rows) {
      const s = byRef.get(row.reference_id);
      expect(s, `payment ${row.reference_id} in the database was never sent`).toBeDefined();
      expect([201, 402], `payment ${row.reference_id} (${row.status}) was answered ${s!.status ?? s!.error}`).toContain(s!.status);
    }
    const answered = sent.filter((s) => s.status === 201 || s.status === 402);
    expect(rows.rows.length).toBe(answered.length);
    expect(answered.length).toBeGreaterThanOrEqual(50);
    // And nothing is left half-done: no payment stuck before its first connector call.
    const stuck = await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1 AND status = 'pending'`, [m.body.id]);
    expect(stuck.rows[0]!.n).toBe(0);

    // Reported for the record (not asserted beyond the above): how the post-signal requests fared.
    const summary = {
      before: before.length,
      after: after.length,
      afterRefused: after.filter((s) => s.status === undefined).length,
      after503: after.filter((s) => s.status === 503).length,
      before503: before.filter((s) => s.status === 503).length,
      probes: probes.map((p) => p.result),
    };
    console.log(`shutdown under load: ${JSON.stringify(summary)}`);
  });
});

describe('switchyard worker with WORKER_METRICS_PORT', () => {
  it('serves /metrics and health on its own port, and exits 0 on SIGTERM', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const w = spawnCli(['worker'], {
      DATABASE_URL: database.url,
      WORKER_METRICS_PORT: String(port),
      HOST: '127.0.0.1',
      SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
      SWITCHYARD_DATA_DIR: '.test-data/ops-shutdown',
      LOG_LEVEL: 'warn',
      MOCK_PROVIDER_URL: providerUrl ?? 'http://127.0.0.1:9',
      REDIS_URL: undefined,
    });
    children.push(w);
    await started(w, `metrics and health on port ${port}`);
    const base = `http://127.0.0.1:${port}`;

    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const scrape = parseProm(await metrics.text());
    for (const name of ['switchyard_webhook_deliveries_total', 'switchyard_reconciliation_outcomes_total', 'switchyard_connector_calls_total']) {
      expect(scrape.types.get(name), name).toBe('counter');
    }
    for (const name of ['switchyard_webhook_backlog', 'switchyard_webhook_oldest_pending_age_seconds', 'switchyard_job_queue_depth', 'switchyard_payments_needing_review']) {
      expect(scrape.types.get(name), name).toBe('gauge');
    }
    expect(scrape.samples.find((s) => s.name === 'switchyard_webhook_backlog')?.value).toBe(0);
    expect(scrape.samples.some((s) => s.name.startsWith('switchyard_process_'))).toBe(true);

    const readiness = await fetch(`${base}/health/readiness`);
    expect(readiness.status).toBe(200);
    expect(await readiness.json()).toEqual({ status: 'ok', checks: { database: true, migrations: true, draining: false } });
    for (const path of ['/health/liveness', '/health/startup']) expect((await fetch(`${base}${path}`)).status).toBe(200);
    const missing = await fetch(`${base}/v1/payments`);
    expect(missing.status).toBe(404);
    await missing.arrayBuffer();

    const signalAt = Date.now();
    w.child.kill('SIGTERM');
    const code = await exitWithin(w, EXIT_BOUND_MS);
    expect(code, `exit code after SIGTERM (143 = 128 + SIGTERM); output:\n${w.output()}`).toBe(0);
    expect(Date.now() - signalAt).toBeLessThan(EXIT_BOUND_MS);
    expect(await probe(`${base}/health/readiness`)).toBe('ECONNREFUSED');
  });
});
