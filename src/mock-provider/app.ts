import Fastify from 'fastify';
import type { FastifyError, FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Db } from '../db/pool.js';
import type { ProviderMode } from './charges.js';
import { listPendingCharges } from './charges.js';
import { apiError } from './effects.js';
import type { FlakyOptions } from './flaky.js';
import { FlakyDice } from './flaky.js';
import { Lifecycle } from './lifecycle.js';
import type { ProviderContext } from './routes.js';
import { registerProviderRoutes, scheduleSettlement } from './routes.js';
import { WebhookSender } from './webhooks.js';

export type { FlakyOptions } from './flaky.js';

export interface MockProviderOptions {
  db: Db;
  /** How long tok_timeout_* (and flaky timeouts) hang; must exceed the client's read timeout. */
  hangMs: number;
  webhookSecret: string;
  /**
   * Where webhooks go. `{connector}` is replaced by `mock` or `flaky`, so one template such as
   * `http://127.0.0.1:8080/v1/connectors/{connector}/webhooks` serves both modes. Unset: none sent.
   * A function is read at each send, for a receiver whose address is known only later.
   */
  webhookUrl?: string | (() => string | undefined);
  /** Overrides webhookUrl for flaky-mode charges. */
  flakyWebhookUrl?: string;
  flaky: FlakyOptions;
  /** Delay before an accepted-pending (tok_async*) charge settles; default 1000 ms. */
  asyncDelayMs?: number;
  /**
   * Also report synchronous effects (authorize, decline, capture, void, refund) by webhook, as real
   * providers do; default false, when only asynchronous settlements are reported.
   */
  webhooksForAllEffects?: boolean;
  /** Webhook deliveries before giving up (default 5) and the first retry delay (default 250 ms). */
  webhookMaxAttempts?: number;
  webhookRetryBaseMs?: number;
}

function webhookTarget(opts: MockProviderOptions, mode: ProviderMode): string | undefined {
  const url = typeof opts.webhookUrl === 'function' ? opts.webhookUrl() : opts.webhookUrl;
  const template = mode === 'flaky' ? (opts.flakyWebhookUrl ?? url) : url;
  return template?.replaceAll('{connector}', mode);
}

/**
 * The simulated payment provider, as a Fastify plugin with relative routes: the mock mode at
 * /v1/..., the flaky mode at /flaky/v1/.... Closing the host app cancels its hangs, pending
 * settlements and webhook retries (preClose), so shutdown never waits on them.
 */
export async function mockProviderPlugin(app: FastifyInstance, opts: MockProviderOptions): Promise<void> {
  const lifecycle = new Lifecycle();
  const dice = new FlakyDice(opts.flaky);
  const log = app.log;
  const webhooks = new WebhookSender({
    secret: opts.webhookSecret,
    urlFor: (mode) => webhookTarget(opts, mode),
    lifecycle,
    dice,
    log,
    maxAttempts: opts.webhookMaxAttempts,
    retryBaseMs: opts.webhookRetryBaseMs,
  });
  const ctx: ProviderContext = {
    db: opts.db,
    hangMs: opts.hangMs,
    asyncDelayMs: opts.asyncDelayMs ?? 1000,
    webhooksForAllEffects: opts.webhooksForAllEffects ?? false,
    lifecycle,
    dice,
    webhooks,
    log,
  };

  app.addHook('preClose', async () => {
    await lifecycle.close();
    await webhooks.close();
  });

  // Charges accepted as pending by a process that stopped before settling them are settled now.
  app.addHook('onReady', async () => {
    try {
      for (const pending of await listPendingCharges(opts.db)) {
        scheduleSettlement(ctx, pending.id, Math.max(0, ctx.asyncDelayMs - pending.age_ms));
      }
    } catch (err) {
      log.warn({ err }, 'mock provider could not look for pending charges');
    }
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const clientError = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500;
    if (clientError) return reply.code(err.statusCode!).send(apiError('invalid_request', err.message));
    req.log.error({ err }, 'mock provider failed');
    // Possibly after the transaction committed: a client must treat this as "may have acted".
    return reply.code(500).send(apiError('internal_error', 'The provider failed.'));
  });

  await registerProviderRoutes(app, ctx, 'mock');
  await app.register(async (flaky) => registerProviderRoutes(flaky, ctx, 'flaky'), { prefix: '/flaky' });
}

export interface MockProviderServerOptions extends MockProviderOptions {
  logger?: FastifyServerOptions['logger'];
  /** Where the provider's routes are mounted; default '' (the root). */
  prefix?: string;
}

/** The provider on its own, for `switchyard mock-provider`; the caller listens and closes it. */
export async function buildMockProviderServer(opts: MockProviderServerOptions): Promise<FastifyInstance> {
  const { logger, prefix, ...providerOpts } = opts;
  const app = Fastify({ logger: logger ?? false });
  app.get('/health', async () => ({ status: 'ok' }));
  await app.register(mockProviderPlugin, { ...providerOpts, prefix: prefix ?? '' });
  return app;
}
