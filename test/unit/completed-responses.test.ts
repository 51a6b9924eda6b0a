/**
 * The in-process cache of finished idempotent responses (ADR 0010), without a database: a bounded
 * LRU that never answers at or past the key's expiry. Time is a clock the test moves, never a sleep.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { CompletedResponses } from '../../src/idempotency/store.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('IDEMPOTENCY_CACHE_ENTRIES', () => {
  it('defaults to 10,000; 0 turns the cache off; never negative', () => {
    expect(loadConfig({}).IDEMPOTENCY_CACHE_ENTRIES).toBe(10_000);
    expect(loadConfig({ IDEMPOTENCY_CACHE_ENTRIES: '0' }).IDEMPOTENCY_CACHE_ENTRIES).toBe(0);
    expect(() => loadConfig({ IDEMPOTENCY_CACHE_ENTRIES: '-1' })).toThrow(/IDEMPOTENCY_CACHE_ENTRIES/);
  });
});

describe('CompletedResponses', () => {
  const response = (expiresAt: number, fingerprint = 'fp') => ({ fingerprint, status: 201, body: { id: 'pay_1' }, expiresAt });

  it('answers a response until its key expires, then forgets it', () => {
    const c = clock();
    const cache = new CompletedResponses(10, c.now);
    cache.set('mer_1', 'k', response(c.now() + 1000));
    expect(cache.get('mer_1', 'k')).toMatchObject({ status: 201, body: { id: 'pay_1' } });
    expect(cache.get('mer_2', 'k')).toBeUndefined(); // scoped to the merchant
    c.advance(999);
    expect(cache.get('mer_1', 'k')).toBeDefined();
    c.advance(1);
    expect(cache.get('mer_1', 'k')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('is bounded: the least recently used response goes first', () => {
    const cache = new CompletedResponses(2);
    const later = Date.now() + 3_600_000;
    cache.set('s', 'a', response(later));
    cache.set('s', 'b', response(later));
    cache.get('s', 'a');
    cache.set('s', 'c', response(later));
    expect(cache.size).toBe(2);
    expect(cache.get('s', 'b')).toBeUndefined();
    expect(cache.get('s', 'a')).toBeDefined();
  });

  it('with 0 entries keeps nothing', () => {
    const cache = new CompletedResponses(0);
    cache.set('s', 'a', response(Date.now() + 3_600_000));
    expect(cache.get('s', 'a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
