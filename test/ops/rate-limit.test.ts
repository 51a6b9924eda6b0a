/**
 * Rate limits (SPEC §14): per merchant by rate tier and one global limit, answered 429 RATE_LIMITED
 * with Retry-After and RateLimit-* headers; refused requests store nothing. With REDIS_URL the
 * counters are shared by every api process; when Redis cannot be reached, an in-process insurance
 * limiter keeps serving (and limiting) traffic instead of refusing it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/lib/logger.js';
import { createApiProcess, type ApiProcess } from '../../src/runtime/api.js';
import { ADMIN_KEY, call, createMerchant, startHarness, waitFor, type ApiResponse, type Harness } from '../support/harness.js';
import { freePort } from '../support/process.js';
import { HIGH_VELOCITY, body, delta, expectError, loopbackRedisUrl, retryAfter, scrape } from './helpers.js';

const harnesses: Harness[] = [];
const extraApis: ApiProcess[] = [];

async function harness(env: Record<string, string>): Promise<Harness> {
  const h = await startHarness(env);
  harnesses.push(h);
  return h;
}

/** A second api process on the harness's database and configuration, listening on loopback. */
async function secondInstance(h: Harness): Promise<{ url: string }> {
  const api = await createApiProcess(h.config, h.database.db, h.database.url, createLogger('silent'), h.providerUrl);
  extraApis.push(api);
  await api.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = api.app.server.address();
  return { url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` };
}

afterAll(async () => {
  for (const api of extraApis) await api.close();
  for (const h of harnesses) await h.close();
});

function limitHeaders(res: ApiResponse): { limit: number; remaining: number; reset: number } {
  const summary = `${res.status} ${JSON.stringify(res.body)}`;
  for (const h of ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']) expect(res.headers.get(h), `${h} on ${summary}`).toMatch(/^\d+$/);
  return {
    limit: Number(res.headers.get('ratelimit-limit')),
    remaining: Number(res.headers.get('ratelimit-remaining')),
    reset: Number(res.headers.get('ratelimit-reset')),
  };
}

function expectAllowed(res: ApiResponse, limit: number, remaining: number, windowSeconds: number): void {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const l = limitHeaders(res);
  expect(l).toMatchObject({ limit, remaining });
  expect(l.reset).toBeGreaterThanOrEqual(0);
  expect(l.reset).toBeLessThanOrEqual(windowSeconds);
  expect(res.headers.get('retry-after')).toBeNull();
}

function expectLimited(res: ApiResponse, limit: number, windowSeconds: number, scope: 'merchant' | 'global'): void {
  const err = expectError(res, 429, 'RATE_LIMITED');
  expect(err.message).toMatch(scope === 'global' ? /service/ : /merchant/);
  const wait = retryAfter(res, 1, windowSeconds);
  const l = limitHeaders(res);
  expect(l.limit).toBe(limit);
  expect(l.remaining).toBe(0);
  expect(l.reset).toBe(wait);
}

const list = (h: { url: string }, key: string) => call(h, 'GET', '/v1/payments?limit=1', { key });

describe('per-merchant limits by rate tier', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ RATE_LIMIT_WINDOW_SECONDS: '30', RATE_LIMIT_BRONZE: '5', RATE_LIMIT_GOLD: '1000', RATE_LIMIT_GLOBAL: '100000' });
  });

  it("a bronze merchant's 6th request in the window → 429 RATE_LIMITED; a gold merchant at the same time is unaffected", async () => {
    const bronze = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    const gold = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    const before = await scrape(h);

    // Interleaved: the gold merchant's traffic neither uses up nor is held back by the bronze limit.
    let goldRemaining = 1000;
    for (let i = 0; i < 5; i++) {
      expectAllowed(await list(h, bronze.key), 5, 4 - i, 30);
      goldRemaining -= 1;
      expectAllowed(await list(h, gold.key), 1000, goldRemaining, 30);
    }
    expectLimited(await list(h, bronze.key), 5, 30, 'merchant');
    // Every kind of request counts, a payment included; nothing is created for it.
    const b = body();
    expectLimited(await call(h, 'POST', '/v1/payments', { key: bronze.key, body: b }), 5, 30, 'merchant');
    expect((await h.database.db.query('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1', [bronze.id])).rows[0].n).toBe(0);

    for (let i = 0; i < 5; i++) {
      goldRemaining -= 1;
      expectAllowed(await list(h, gold.key), 1000, goldRemaining, 30);
    }
    const paid = await call(h, 'POST', '/v1/payments', { key: gold.key, body: body() });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    expect(limitHeaders(paid)).toMatchObject({ limit: 1000, remaining: goldRemaining - 1 });
    // Still refused: the window is 30 s long.
    expectLimited(await list(h, bronze.key), 5, 30, 'merchant');

    const after = await scrape(h);
    expect(delta(before, after, 'switchyard_rate_limited_total', { scope: 'merchant' })).toBe(3);
    expect(delta(before, after, 'switchyard_rate_limited_total', { scope: 'global' })).toBe(0);
  });

  it('requests that never reach a merchant are not limited by it: the admin API and health answer', async () => {
    const bronze = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    for (let i = 0; i < 5; i++) expect((await list(h, bronze.key)).status).toBe(200);
    expectLimited(await list(h, bronze.key), 5, 30, 'merchant');
    const admin = await call(h, 'GET', `/v1/admin/merchants/${bronze.id}`, { key: ADMIN_KEY });
    expect(admin.status).toBe(200);
    expect(admin.headers.get('ratelimit-limit')).toBeNull();
    expect((await call(h, 'GET', '/health/readiness')).status).toBe(200);
    // A bad key is refused as such, not counted against anyone.
    expectError(await list(h, 'sk_test_not_a_real_key'), 401, 'AUTH_INVALID_API_KEY');
  });
});

describe('the global limit', () => {
  it('refuses every merchant once the whole service has used it up, whatever their tier', async () => {
    const h = await harness({ RATE_LIMIT_WINDOW_SECONDS: '30', RATE_LIMIT_GLOBAL: '6', RATE_LIMIT_PLATINUM: '1000', RATE_LIMIT_GOLD: '1000', RATE_LIMIT_BRONZE: '1000' });
    const a = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'platinum' });
    const b = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    const before = await scrape(h);
    for (let i = 0; i < 3; i++) {
      expectAllowed(await list(h, a.key), 1000, 999 - i, 30);
      expectAllowed(await list(h, b.key), 1000, 999 - i, 30);
    }
    // Six requests between them: the seventh is refused for both, by the global limit.
    expectLimited(await list(h, a.key), 6, 30, 'global');
    expectLimited(await list(h, b.key), 6, 30, 'global');
    expectLimited(await call(h, 'POST', '/v1/payments', { key: a.key, body: body() }), 6, 30, 'global');
    const c = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'platinum' });
    expectLimited(await list(h, c.key), 6, 30, 'global');
    const after = await scrape(h);
    expect(delta(before, after, 'switchyard_rate_limited_total', { scope: 'global' })).toBe(4);
    expect(delta(before, after, 'switchyard_rate_limited_total', { scope: 'merchant' })).toBe(0);
  });
});

describe('refused requests store nothing', () => {
  it('an Idempotency-Key used on a 429 is free: after the window resets, the same key creates the payment', async () => {
    const h = await harness({ RATE_LIMIT_WINDOW_SECONDS: '2', RATE_LIMIT_BRONZE: '2', RATE_LIMIT_GLOBAL: '100000' });
    const m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    const send = (b: Record<string, unknown>, key: string) => call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers: { 'idempotency-key': key } });

    // Use the window up, then send the payment under its key. Should the 2 s window turn over in
    // between and let it through, try again with a fresh payment and key.
    let b: Record<string, unknown> = {};
    let key = '';
    let limited: ApiResponse | undefined;
    for (let tries = 0; tries < 5 && !limited; tries++) {
      b = body();
      key = `rl_${b.reference_id as string}`;
      await list(h, m.key);
      await list(h, m.key);
      const r = await send(b, key);
      if (r.status === 429) limited = r;
      else expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    expect(limited, 'a payment refused by the rate limit').toBeDefined();
    expectLimited(limited!, 2, 2, 'merchant');
    const post = () => send(b, key);
    const stored = async () => ({
      keys: (await h.database.db.query('SELECT count(*)::int AS n FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [m.id, key])).rows[0].n as number,
      payments: (await h.database.db.query('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1 AND reference_id = $2', [m.id, b.reference_id])).rows[0].n as number,
    });
    expect(await stored()).toEqual({ keys: 0, payments: 0 });

    // Polled with the very same key and body: every 429 stays unstored, the first request let
    // through after the reset runs for real (201, not a replay).
    const created = await waitFor(async () => {
      const r = await post();
      if (r.status === 429) {
        expectLimited(r, 2, 2, 'merchant');
        expect(await stored()).toEqual({ keys: 0, payments: 0 });
        return undefined;
      }
      return r;
    }, 10_000, 'the rate-limit window to reset');
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.headers.get('idempotent-replayed')).toBeNull();
    expect(created.body).toMatchObject({ status: 'captured', reference_id: b.reference_id });
    expect(await stored()).toEqual({ keys: 1, payments: 1 });

    // Now it is stored: the same key replays it (once the limit lets the request in).
    const replay = await waitFor(async () => {
      const r = await post();
      return r.status === 429 ? undefined : r;
    }, 10_000, 'the rate-limit window to reset again');
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(created.body.id);
  });
});

describe('limits across api processes', () => {
  it('with Redis: one limit shared by two api instances; without it: each instance limits on its own', async () => {
    const redisUrl = await loopbackRedisUrl();
    if (redisUrl) {
      // Two api instances on one database and one Redis. The limiter's keys have fixed prefixes
      // (switchyard:rl:*), so a fresh merchant keeps this test's counters apart from any other run.
      const a = await harness({ REDIS_URL: redisUrl, RATE_LIMIT_WINDOW_SECONDS: '30', RATE_LIMIT_BRONZE: '5' });
      const b = await secondInstance(a);
      const m = await createMerchant(a, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
      const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
      try {
        const order = [a, b, a, b, b];
        for (let i = 0; i < 5; i++) expectAllowed(await list(order[i]!, m.key), 5, 4 - i, 30);
        // Five requests split across both: the sixth is refused on either.
        expectLimited(await list(a, m.key), 5, 30, 'merchant');
        expectLimited(await list(b, m.key), 5, 30, 'merchant');
        expect(Number(await redis.get(`switchyard:rl:tier:bronze:${m.id}`))).toBe(7);
        expect(await redis.pttl(`switchyard:rl:tier:bronze:${m.id}`)).toBeGreaterThan(0);
      } finally {
        await redis.del(`switchyard:rl:tier:bronze:${m.id}`);
        redis.disconnect();
      }
    } else {
      // No Redis: REDIS_URL names a closed port. Each instance falls back to its own in-process
      // counters, so the limit holds per instance, and nothing is refused because Redis is down.
      const closed = `redis://127.0.0.1:${await freePort()}`;
      const a = await harness({ REDIS_URL: closed, RATE_LIMIT_WINDOW_SECONDS: '30', RATE_LIMIT_BRONZE: '5' });
      const b = await secondInstance(a);
      const m = await createMerchant(a, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
      for (let i = 0; i < 5; i++) {
        expectAllowed(await list(a, m.key), 5, 4 - i, 30);
        expectAllowed(await list(b, m.key), 5, 4 - i, 30);
      }
      expectLimited(await list(a, m.key), 5, 30, 'merchant');
      expectLimited(await list(b, m.key), 5, 30, 'merchant');
    }
  });

  it('Redis unreachable: requests are still served, and limited by the in-process insurance limiter', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const h = await harness({ REDIS_URL: closed, RATE_LIMIT_WINDOW_SECONDS: '30', RATE_LIMIT_BRONZE: '5' });
    const m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'bronze' });
    const paid = await call(h, 'POST', '/v1/payments', { key: m.key, body: body() });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    expect(limitHeaders(paid)).toMatchObject({ limit: 5, remaining: 4 });
    for (let i = 0; i < 4; i++) expectAllowed(await list(h, m.key), 5, 3 - i, 30);
    expectLimited(await list(h, m.key), 5, 30, 'merchant');
    // Not a Redis error leaking out as a 5xx: the API as a whole keeps working.
    expect((await call(h, 'GET', '/health/readiness')).status).toBe(200);
  });
});
