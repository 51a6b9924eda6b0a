/**
 * The real crash test (SPEC §9 "Crash safety", §16 fault tests): the API runs as a child process
 * (`node --import tsx src/cli/main.ts api`), is killed with SIGKILL in the middle of a payment,
 * and restarted; a retry with the same Idempotency-Key must finish the payment and the provider's
 * own ledger must show exactly one charge.
 *
 * The mock provider and the database are a harness's (the harness's in-process API is not used).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, paymentBody, startHarness, waitFor, type ApiResponse, type Harness, type MerchantWithKey } from '../support/harness.js';
import { attemptsOf, dbLedger, errorCode, ofOperation, paymentsForReference, keyReleased, paymentState, reference } from '../races/helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface ApiChild {
  url: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<void>;
}

let h: Harness;
let dataDir: string;
let port: number;
const children = new Set<ChildProcess>();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(p));
    });
  });
}

function childEnv(providerUrl: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: h.database.url,
    MOCK_PROVIDER_URL: providerUrl,
    HOST: '127.0.0.1',
    PORT: String(port),
    SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
    IDEMPOTENCY_LOCK_SECONDS: '1',
    CONNECTOR_AUTHORIZE_TIMEOUT_MS: '20000',
    LOG_LEVEL: 'warn',
    SWITCHYARD_DATA_DIR: dataDir,
  };
}

/** Spawns the API and waits until /health/readiness answers 200. */
async function startApi(providerUrl: string): Promise<ApiChild> {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'api'], {
    cwd: ROOT,
    env: childEnv(providerUrl),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      children.delete(child);
      resolve();
    });
  });
  const api: ApiChild = { url: `http://127.0.0.1:${port}`, child, output: () => out, exited };
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(
    async () => {
      if (dead) throw new Error(`the API child exited before it was ready:\n${out}`);
      const res = await fetch(`${api.url}/health/readiness`).catch(() => null);
      return res?.status === 200 ? true : undefined;
    },
    30_000,
    'the API child to be ready',
  );
  return api;
}

async function kill(api: ApiChild): Promise<void> {
  api.child.kill('SIGKILL');
  await api.exited;
}

function postPayment(api: { url: string }, m: MerchantWithKey, body: Record<string, unknown>, key: string): Promise<ApiResponse> {
  return call(api, 'POST', '/v1/payments', { key: m.key, body, headers: { 'idempotency-key': key } });
}

/** Retries while the key is still held (409 with Retry-After), for at most 20 s. */
async function retryWhileInUse(api: { url: string }, m: MerchantWithKey, body: Record<string, unknown>, key: string): Promise<ApiResponse> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await postPayment(api, m, body, key);
    if (!(res.status === 409 && errorCode(res.body) === 'IDEMPOTENCY_KEY_IN_USE')) return res;
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    if (Date.now() > deadline) throw new Error('the idempotency key stayed in use');
    await keyReleased(h.database.db, m.id, key);
  }
}

async function paymentIdFor(merchantId: string, ref: string): Promise<string> {
  return waitFor(
    async () => (await paymentsForReference(h.database.db, merchantId, ref))[0]?.id,
    15_000,
    `the payment row for ${ref}`,
  );
}

async function idempotencyRow(merchantId: string, key: string) {
  const r = await h.database.db.query<{ state: string; recovery_point: string; resource_id: string | null }>(
    'SELECT state, recovery_point, resource_id FROM idempotency_keys WHERE merchant_id = $1 AND key = $2',
    [merchantId, key],
  );
  return r.rows[0];
}

/** After the restart: the retry finishes the payment, once charged, and then replays. */
async function expectRecovered(
  api: ApiChild,
  m: MerchantWithKey,
  body: Record<string, unknown>,
  key: string,
  paymentId: string,
  attemptId: string,
  expected: 'captured' | 'authorized',
): Promise<void> {
  const res = await retryWhileInUse(api, m, body, key);
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  expect(res.body.id).toBe(paymentId);
  expect(res.body.status).toBe(expected);

  const p = await paymentState(h.database.db, paymentId);
  expect(p.status).toBe(expected);
  expect(p.amount_captured).toBe(expected === 'captured' ? p.amount : 0);
  expect(await paymentsForReference(h.database.db, m.id, String(body.reference_id))).toHaveLength(1);
  // The attempt the dead process left open was settled, not duplicated.
  const attempts = await attemptsOf(h.database.db, paymentId);
  expect(attempts.map((a) => [a.id, a.operation, a.status])).toEqual([[attemptId, 'authorize', 'succeeded']]);
  // The provider charged exactly once, under that attempt's id.
  const ledger = await dbLedger(h.database.db, paymentId);
  expect(ofOperation(ledger, 'authorize').map((l) => l.idempotency_key)).toEqual([attemptId]);
  expect(ofOperation(ledger, 'capture')).toHaveLength(expected === 'captured' ? 1 : 0);
  const charges = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM mock_provider_charges WHERE payment_id = $1', [paymentId]);
  expect(charges.rows[0]!.n).toBe(1);
  expect((await idempotencyRow(m.id, key))?.state).toBe('completed');

  // A further retry replays the stored answer and does nothing else.
  const replay = await postPayment(api, m, body, key);
  expect(replay.status).toBe(200);
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.body.id).toBe(paymentId);
  expect(replay.body.status).toBe(expected);
  expect(ofOperation(await dbLedger(h.database.db, paymentId), 'authorize')).toHaveLength(1);
  expect(await attemptsOf(h.database.db, paymentId)).toHaveLength(1);
}

interface BlackHole {
  url: string;
  /** Everything the API sent to it. */
  received(): string;
  close(): Promise<void>;
}

/** A "provider" that accepts connections and never answers: a request is sent, never served. */
async function startBlackHole(): Promise<BlackHole> {
  const chunks: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (d: Buffer) => chunks.push(d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`,
    received: () => chunks.join(''),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

beforeAll(async () => {
  // The provider hangs far longer than the test needs to kill the API mid-call.
  h = await startHarness({ MOCK_PROVIDER_HANG_MS: '30000' });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'switchyard-crash-'));
  port = await freePort();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await h?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('the API process killed mid-payment', () => {
  let m: MerchantWithKey;

  it.each([
    ['automatic', 'captured'],
    ['manual', 'authorized'],
  ] as const)(
    'killed after the provider charged (tok_timeout_charged, %s capture): the retry charges nothing more',
    async (captureMethod, expected) => {
      const first = await startApi(h.providerUrl);
      m ??= await createMerchant(first, { limits: { velocity: { max_payments: 1000, window_seconds: 300 } } });
      const body = paymentBody({
        payment_method_token: 'tok_timeout_charged',
        capture_method: captureMethod,
        reference_id: reference(`crash_charged_${captureMethod}`),
      });
      const key = `crash_charged_${String(body.reference_id)}`;

      // Not awaited: the provider charges and then holds its answer back.
      const inflight = postPayment(first, m, body, key).then(
        (r) => r,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
      const paymentId = await paymentIdFor(m.id, String(body.reference_id));
      await waitFor(
        async () => (ofOperation(await dbLedger(h.database.db, paymentId), 'authorize').length > 0 ? true : undefined),
        15_000,
        'the provider to record the charge',
      );
      await kill(first);

      // The request died with the process: no answer ever came.
      expect(await inflight).toBeInstanceOf(Error);
      // The provider has charged; Switchyard has not stored the result.
      const attempts = await attemptsOf(h.database.db, paymentId);
      expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'started']]);
      expect((await paymentState(h.database.db, paymentId)).status).toBe('pending');
      expect(ofOperation(await dbLedger(h.database.db, paymentId), 'authorize')).toHaveLength(1);
      expect(await idempotencyRow(m.id, key)).toMatchObject({ state: 'in_progress', recovery_point: 'resource_created', resource_id: paymentId });

      const second = await startApi(h.providerUrl);
      try {
        await expectRecovered(second, m, body, key, paymentId, attempts[0]!.id, expected);
      } finally {
        await kill(second);
      }
    },
  );

  it('killed while its provider call hangs before reaching the provider: the retry charges exactly once', async () => {
    const blackHole = await startBlackHole();
    try {
      const first = await startApi(blackHole.url);
      const merchant = m ?? (await createMerchant(first, { limits: { velocity: { max_payments: 1000, window_seconds: 300 } } }));
      const body = paymentBody({ reference_id: reference('crash_blackhole') });
      const key = `crash_blackhole_${String(body.reference_id)}`;
      const inflight = postPayment(first, merchant, body, key).then(
        (r) => r,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
      const paymentId = await paymentIdFor(merchant.id, String(body.reference_id));
      // The attempt is committed before the call, and the call has left the process.
      await waitFor(async () => (blackHole.received().includes('POST /v1/charges') ? true : undefined), 15_000, 'the authorize request to be sent');
      await kill(first);
      expect(await inflight).toBeInstanceOf(Error);

      const attempts = await attemptsOf(h.database.db, paymentId);
      expect(attempts.map((a) => [a.operation, a.status])).toEqual([['authorize', 'started']]);
      expect(blackHole.received()).toContain(attempts[0]!.id); // sent under the attempt id as its key
      expect((await paymentState(h.database.db, paymentId)).status).toBe('pending');
      expect(await dbLedger(h.database.db, paymentId)).toEqual([]);
      expect(await idempotencyRow(merchant.id, key)).toMatchObject({ state: 'in_progress', resource_id: paymentId });

      // Restarted against the real provider: the retry asks it about the attempt, learns it never
      // arrived, and sends it now under the same key.
      const second = await startApi(h.providerUrl);
      try {
        await expectRecovered(second, merchant, body, key, paymentId, attempts[0]!.id, 'captured');
      } finally {
        await kill(second);
      }
    } finally {
      await blackHole.close();
    }
  });

  it.each(['capture', 'refund'] as const)('killed mid-%s (provider call hanging): the retry with the same key acts exactly once', async (operation) => {
    // The payment is made through the harness's own API against the real provider.
    const merchant = m ?? (await createMerchant(h, { limits: { velocity: { max_payments: 1000, window_seconds: 300 } } }));
    const created = await call(h, 'POST', '/v1/payments', {
      key: merchant.key,
      body: paymentBody({ amount: 100_000, capture_method: operation === 'capture' ? 'manual' : 'automatic', reference_id: reference(`crash_${operation}`) }),
    });
    expect(created.status).toBe(201);
    const paymentId = created.body.id as string;
    const route = operation === 'capture' ? `/v1/payments/${paymentId}/capture` : `/v1/payments/${paymentId}/refunds`;
    const body = { amount: operation === 'capture' ? 60_000 : 25_000 };
    const key = `crash_${operation}_${paymentId}`;
    const send = (api: { url: string }) => call(api, 'POST', route, { key: merchant.key, body, headers: { 'idempotency-key': key } });

    const blackHole = await startBlackHole();
    let attemptId: string;
    try {
      const first = await startApi(blackHole.url);
      const inflight = send(first).then(
        (r) => r,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
      await waitFor(async () => (blackHole.received().includes('POST /v1/charges/') ? true : undefined), 15_000, `the ${operation} request to be sent`);
      await kill(first);
      expect(await inflight).toBeInstanceOf(Error);
      const open = (await attemptsOf(h.database.db, paymentId)).filter((a) => a.operation === operation);
      expect(open.map((a) => a.status)).toEqual(['started']);
      attemptId = open[0]!.id;
      expect(blackHole.received()).toContain(attemptId);
      expect(ofOperation(await dbLedger(h.database.db, paymentId), operation === 'capture' ? 'capture' : 'refund')).toEqual([]);
      expect(await idempotencyRow(merchant.id, key)).toMatchObject({ state: 'in_progress', resource_id: attemptId });
    } finally {
      await blackHole.close();
    }

    const second = await startApi(h.providerUrl);
    try {
      const deadline = Date.now() + 20_000;
      let res = await send(second);
      while (res.status === 409 && errorCode(res.body) === 'IDEMPOTENCY_KEY_IN_USE' && Date.now() < deadline) {
        await keyReleased(h.database.db, merchant.id, key);
        res = await send(second);
      }
      expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
      const p = await paymentState(h.database.db, paymentId);
      const ledger = await dbLedger(h.database.db, paymentId);
      const attempts = (await attemptsOf(h.database.db, paymentId)).filter((a) => a.operation === operation);
      expect(attempts.map((a) => [a.id, a.status])).toEqual([[attemptId, 'succeeded']]);
      if (operation === 'capture') {
        expect(res.body.status).toBe('captured');
        expect(p.status).toBe('captured');
        expect(p.amount_captured).toBe(60_000);
        expect(ofOperation(ledger, 'capture').map((l) => [l.idempotency_key, l.amount])).toEqual([[attemptId, 60_000]]);
      } else {
        expect(res.body.status).toBe('succeeded');
        expect(res.body.amount).toBe(25_000);
        expect(p.status).toBe('captured');
        expect(p.amount_refunded).toBe(25_000);
        expect(ofOperation(ledger, 'refund').map((l) => [l.idempotency_key, l.amount])).toEqual([[attemptId, 25_000]]);
        const refunds = await h.database.db.query<{ status: string; amount: number }>('SELECT status, amount FROM refunds WHERE payment_id = $1', [paymentId]);
        expect(refunds.rows).toEqual([{ status: 'succeeded', amount: 25_000 }]);
      }
      const replay = await send(second);
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.body).toEqual(res.body);
      expect(await dbLedger(h.database.db, paymentId)).toEqual(ledger);
    } finally {
      await kill(second);
    }
  });
});
