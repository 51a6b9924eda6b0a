/**
 * The API-key cache (ADR 0010), over real HTTP and at merchantForKey on the same database: a key
 * revoked, or a merchant updated, through this process takes effect at once; a change made by another
 * process (here: straight in the database) only once the TTL ran out, which this harness sets to
 * 300 s to make that visible. Unknown keys are never cached.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, createMerchant, startHarness, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY } from './helpers.js';
import { ApiKeyCache, createApiKey, insertMerchant, merchantForKey, revokeApiKey, updateMerchant } from '../../src/merchants/store.js';
import { loadKeyHasher, type KeyHasher } from '../../src/merchants/secrets.js';
import { countingQueries } from '../support/db.js';

let h: Harness;
let hasher: KeyHasher;

beforeAll(async () => {
  h = await startHarness({ API_KEY_CACHE_SECONDS: '300' });
  hasher = await loadKeyHasher(h.database.db);
});
afterAll(async () => h?.close());

const list = (key: string) => call(h, 'GET', '/v1/payments?limit=1', { key });

describe('API-key cache', () => {
  it('a key revoked through the admin API is refused at once, though it was just cached', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    expect((await list(m.key)).status).toBe(200);
    const keyId = (await h.database.db.query<{ id: string }>('SELECT id FROM api_keys WHERE merchant_id = $1', [m.id])).rows[0]!.id;
    const revoked = await call(h, 'DELETE', `/v1/admin/api_keys/${keyId}`, { key: ADMIN_KEY });
    expect(revoked.status).toBe(200);
    const after = await list(m.key);
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('AUTH_INVALID_API_KEY');
  });

  it('a merchant updated through the admin API is seen at once (its new rate tier)', async () => {
    const m = await createMerchant(h, { ...HIGH_VELOCITY, rate_tier: 'gold' });
    expect((await list(m.key)).headers.get('ratelimit-limit')).toBe(String(h.config.RATE_LIMIT_GOLD));
    const patched = await call(h, 'PATCH', `/v1/admin/merchants/${m.id}`, { key: ADMIN_KEY, body: { rate_tier: 'silver' } });
    expect(patched.status).toBe(200);
    expect((await list(m.key)).headers.get('ratelimit-limit')).toBe(String(h.config.RATE_LIMIT_SILVER));
  });

  it('a revocation by another process is not seen within the TTL; unknown keys are never cached', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    expect((await list(m.key)).status).toBe(200);
    await h.database.db.query('UPDATE api_keys SET revoked_at = now() WHERE merchant_id = $1', [m.id]);
    expect((await list(m.key)).status).toBe(200); // still within this process's 300 s

    // Unknown keys are asked for every time: a key created after a refused attempt works at once.
    const other = await createMerchant(h, HIGH_VELOCITY);
    expect((await list(`${other.key}_not_yet`)).status).toBe(401);
    const k = await call(h, 'POST', `/v1/admin/merchants/${other.id}/api_keys`, { key: ADMIN_KEY });
    expect(k.status).toBe(201);
    expect((await list(k.body.key as string)).status).toBe(200);
    // No clear key reaches the logs.
    const logs = h.logs.join('');
    expect(logs).not.toContain(m.key);
    expect(logs).not.toContain(k.body.key as string);
  });
});

const counted = () => countingQueries(h.database.db);

describe('merchantForKey with the cache', () => {
  async function merchantWithKey(name: string) {
    const m = await insertMerchant(h.database.db, { name, onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'gold' });
    const k = await createApiKey(h.database.db, hasher, m.id);
    return { m, k };
  }

  it('asks the database once per TTL for a known key, and every time for an unknown one', async () => {
    const { m, k } = await merchantWithKey('cached');
    const cache = new ApiKeyCache({ ttlSeconds: 60 });
    const c = counted();
    expect((await merchantForKey(c.db, hasher, k.key, cache))?.id).toBe(m.id);
    expect((await merchantForKey(c.db, hasher, k.key, cache))?.id).toBe(m.id);
    expect(c.statements()).toBe(1);
    expect(await merchantForKey(c.db, hasher, `${k.key}x`, cache)).toBeNull();
    expect(await merchantForKey(c.db, hasher, `${k.key}x`, cache)).toBeNull();
    expect(c.statements()).toBe(3);
    expect(cache.size).toBe(1);
  });

  it('forgets a key revoked, or a merchant updated, through this process at once', async () => {
    const { m, k } = await merchantWithKey('forget');
    const cache = new ApiKeyCache({ ttlSeconds: 60 });
    expect((await merchantForKey(h.database.db, hasher, k.key, cache))?.rate_tier).toBe('gold');
    await updateMerchant(h.database.db, m.id, { rate_tier: 'bronze' }, cache);
    expect((await merchantForKey(h.database.db, hasher, k.key, cache))?.rate_tier).toBe('bronze');
    await revokeApiKey(h.database.db, k.id, cache);
    expect(await merchantForKey(h.database.db, hasher, k.key, cache)).toBeNull();
  });

  it('without a cache, or with a TTL of 0, sees a change made elsewhere at once', async () => {
    const { k } = await merchantWithKey('uncached');
    const off = new ApiKeyCache({ ttlSeconds: 0 });
    expect(await merchantForKey(h.database.db, hasher, k.key, off)).not.toBeNull();
    expect(await merchantForKey(h.database.db, hasher, k.key)).not.toBeNull();
    await revokeApiKey(h.database.db, k.id); // as another process would: this cache is not told
    expect(await merchantForKey(h.database.db, hasher, k.key, off)).toBeNull();
    expect(await merchantForKey(h.database.db, hasher, k.key)).toBeNull();
  });
});
