/**
 * Per-merchant rate limits by rate tier, plus one global limit (SPEC §14). With REDIS_URL the
 * counters live in Redis and every api process shares them; without it each process counts alone.
 */
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RateTier } from '../domain/merchant.js';

export interface RateLimitSettings {
  windowSeconds: number;
  perTier: Record<RateTier, number>;
  global: number;
  redisUrl?: string | undefined;
}

export interface Decision {
  allowed: boolean;
  scope: 'merchant' | 'global';
  limit: number;
  remaining: number;
  resetSeconds: number;
}

export interface RateLimiter {
  take(merchantId: string, tier: RateTier): Promise<Decision>;
  close(): Promise<void>;
}

export function createRateLimiter(s: RateLimitSettings): RateLimiter {
  const redis = s.redisUrl ? new Redis(s.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false }) : null;
  redis?.on('error', () => undefined);
  const make = (keyPrefix: string, points: number): RateLimiterAbstract =>
    redis
      ? new RateLimiterRedis({
          storeClient: redis,
          keyPrefix: `switchyard:rl:${keyPrefix}`,
          points,
          duration: s.windowSeconds,
          // If Redis is down, fall back to counting in this process rather than refusing traffic.
          insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: s.windowSeconds }),
        })
      : new RateLimiterMemory({ keyPrefix, points, duration: s.windowSeconds });
  const tiers = Object.fromEntries(Object.entries(s.perTier).map(([tier, points]) => [tier, make(`tier:${tier}`, points)])) as Record<RateTier, RateLimiterAbstract>;
  const global = make('global', s.global);

  const decide = async (limiter: RateLimiterAbstract, key: string, limit: number, scope: Decision['scope']): Promise<Decision> => {
    try {
      const r = await limiter.consume(key, 1);
      return { allowed: true, scope, limit, remaining: r.remainingPoints, resetSeconds: Math.ceil(r.msBeforeNext / 1000) };
    } catch (err) {
      if (err instanceof RateLimiterRes) return { allowed: false, scope, limit, remaining: 0, resetSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)) };
      throw err;
    }
  };

  return {
    async take(merchantId, tier) {
      const g = await decide(global, 'all', s.global, 'global');
      if (!g.allowed) return g;
      const limit = s.perTier[tier];
      return decide(tiers[tier], merchantId, limit, 'merchant');
    },
    async close() {
      redis?.disconnect();
    },
  };
}
