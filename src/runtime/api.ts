/** Assembles the API process: connectors, admin key, the HTTP app and (optionally) the mock provider. */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import type { Db } from '../db/pool.js';
import type { Logger } from '../lib/logger.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import { attemptClaimSeconds, buildConnectors, closeConnectors } from './connectors.js';
import { mockProviderPlugin } from '../mock-provider/app.js';
import { loadKeyHasher } from '../merchants/secrets.js';
import { buildApp } from '../http/app.js';
import { loadAdminKey, type AdminKey } from './admin-key.js';
import { startBoss, type PgBoss } from '../worker/queue.js';
import { createRateLimiter } from '../protection/rate-limit.js';
import { createReadOnlySwitch } from '../protection/read-only.js';
import { registerDatabaseGauges } from '../observability/db-gauges.js';

export interface ApiProcess {
  app: FastifyInstance;
  adminKey: AdminKey;
  connectors: ConnectorRegistry;
  boss: PgBoss;
  /** Stops taking requests, lets in-flight ones finish, then releases connections. */
  close(): Promise<void>;
}

export function mockProviderOptions(config: Config, db: Db, selfUrl: string) {
  return {
    db,
    hangMs: config.MOCK_PROVIDER_HANG_MS,
    webhookSecret: config.MOCK_PROVIDER_WEBHOOK_SECRET,
    webhookUrl: `${selfUrl}/v1/connectors/{connector}/webhooks`,
    flaky: {
      seed: config.FLAKY_SEED,
      failureRate: config.FLAKY_FAILURE_RATE,
      timeoutRate: config.FLAKY_TIMEOUT_RATE,
      latencyMs: config.FLAKY_LATENCY_MS,
    },
  };
}

/**
 * `selfUrl` is where this process will listen; without MOCK_PROVIDER_URL the mock provider is
 * mounted here under /mock-provider and the connectors reach it over real HTTP on loopback.
 */
export async function createApiProcess(config: Config, db: Db, databaseUrl: string, log: Logger, selfUrl: string): Promise<ApiProcess> {
  const mountProvider = !config.MOCK_PROVIDER_URL;
  const providerUrl = config.MOCK_PROVIDER_URL ?? `${selfUrl}/mock-provider`;
  const connectors = buildConnectors(config, providerUrl);
  const boss = await startBoss({ connectionString: databaseUrl, worker: false, deliveryExpireSeconds: config.WEBHOOK_JOB_EXPIRE_SECONDS });
  registerDatabaseGauges(db);
  const rateLimiter = createRateLimiter({
    windowSeconds: config.RATE_LIMIT_WINDOW_SECONDS,
    perTier: { platinum: config.RATE_LIMIT_PLATINUM, gold: config.RATE_LIMIT_GOLD, silver: config.RATE_LIMIT_SILVER, bronze: config.RATE_LIMIT_BRONZE },
    global: config.RATE_LIMIT_GLOBAL,
    redisUrl: config.REDIS_URL,
  });
  const adminKey = await loadAdminKey(db, config.SWITCHYARD_ADMIN_KEY, config.SWITCHYARD_DATA_DIR);
  const app = await buildApp({
    db,
    connectors,
    hasher: await loadKeyHasher(db),
    verifyAdminKey: adminKey.verify,
    logger: log,
    bodyLimit: config.BODY_LIMIT_BYTES,
    idempotency: { lockSeconds: config.IDEMPOTENCY_LOCK_SECONDS, ttlSeconds: config.IDEMPOTENCY_TTL_SECONDS, cacheEntries: config.IDEMPOTENCY_CACHE_ENTRIES },
    apiKeyCacheSeconds: config.API_KEY_CACHE_SECONDS,
    boss,
    mode: config.SWITCHYARD_MODE,
    rateLimiter,
    readOnly: createReadOnlySwitch(db),
    maxInFlight: config.MAX_IN_FLIGHT,
    overloadDbWaitMs: config.OVERLOAD_DB_WAIT_MS,
    attemptClaimSeconds: attemptClaimSeconds(config),
    plugins: mountProvider
      ? [async (a) => a.register(async (scoped) => mockProviderPlugin(scoped, mockProviderOptions(config, db, selfUrl)), { prefix: '/mock-provider' })]
      : [],
  });
  return {
    app,
    adminKey,
    connectors,
    boss,
    async close() {
      await app.close();
      await closeConnectors(connectors);
      await rateLimiter.close();
      await boss.stop({ graceful: false, wait: true });
    },
  };
}
