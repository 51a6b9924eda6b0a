/**
 * The API-key cache of the request hot path (ADR 0010), without a database: short TTL, bounded,
 * forgets on revoke and merchant update, never keeps a lookup that raced a forget. Time is a clock
 * the test moves, never a sleep.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { ApiKeyCache } from '../../src/merchants/store.js';
import type { Merchant } from '../../src/domain/merchant.js';

function merchant(id: string): Merchant {
  return { id, name: id, rate_tier: 'gold' } as Merchant;
}

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('API_KEY_CACHE_SECONDS', () => {
  it('defaults to 2; 0 turns the cache off; at most 300', () => {
    expect(loadConfig({}).API_KEY_CACHE_SECONDS).toBe(2);
    expect(loadConfig({ API_KEY_CACHE_SECONDS: '0' }).API_KEY_CACHE_SECONDS).toBe(0);
    expect(() => loadConfig({ API_KEY_CACHE_SECONDS: '301' })).toThrow(/API_KEY_CACHE_SECONDS/);
  });
});

describe('ApiKeyCache', () => {
  it('answers a key for its TTL and not a millisecond longer', () => {
    const c = clock();
    const cache = new ApiKeyCache({ ttlSeconds: 2, now: c.now });
    cache.set('h1', 'key_1', merchant('mer_1'), cache.mark());
    expect(cache.get('h1')?.id).toBe('mer_1');
    c.advance(1999);
    expect(cache.get('h1')?.id).toBe('mer_1');
    c.advance(1);
    expect(cache.get('h1')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.get('never')).toBeUndefined();
  });

  it('with a TTL of 0 keeps nothing', () => {
    const cache = new ApiKeyCache({ ttlSeconds: 0 });
    cache.set('h1', 'key_1', merchant('mer_1'), cache.mark());
    expect(cache.get('h1')).toBeUndefined();
    expect(cache.size).toBe(0);
    cache.forgetKey('key_1'); // nothing to forget: no error
  });

  it('holds at most maxEntries keys, dropping the least recently used', () => {
    const cache = new ApiKeyCache({ ttlSeconds: 60, maxEntries: 2 });
    cache.set('a', 'key_a', merchant('mer_a'), cache.mark());
    cache.set('b', 'key_b', merchant('mer_b'), cache.mark());
    expect(cache.get('a')).toBeDefined(); // a is now the most recently used
    cache.set('c', 'key_c', merchant('mer_c'), cache.mark());
    expect(cache.size).toBe(2);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')?.id).toBe('mer_a');
    expect(cache.get('c')?.id).toBe('mer_c');
  });

  it('forgets a revoked key, and every key of an updated merchant, and nothing else', () => {
    const cache = new ApiKeyCache({ ttlSeconds: 60 });
    cache.set('a1', 'key_a1', merchant('mer_a'), cache.mark());
    cache.set('a2', 'key_a2', merchant('mer_a'), cache.mark());
    cache.set('b1', 'key_b1', merchant('mer_b'), cache.mark());
    cache.forgetKey('key_a1');
    expect(cache.get('a1')).toBeUndefined();
    expect(cache.get('a2')?.id).toBe('mer_a');
    cache.forgetMerchant('mer_a');
    expect(cache.get('a2')).toBeUndefined();
    expect(cache.get('b1')?.id).toBe('mer_b');
  });

  it('does not keep a lookup that started before a forget (it may have read the old row)', () => {
    const cache = new ApiKeyCache({ ttlSeconds: 60 });
    const mark = cache.mark();
    cache.forgetMerchant('mer_a'); // the PATCH commits while the lookup's SELECT is under way
    cache.set('a1', 'key_a1', merchant('mer_a'), mark);
    expect(cache.get('a1')).toBeUndefined();
    cache.set('a1', 'key_a1', merchant('mer_a'), cache.mark());
    expect(cache.get('a1')?.id).toBe('mer_a');
  });
});
