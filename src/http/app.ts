/**
 * The HTTP API: one Fastify instance with request ids, auth, the card-number guard, zod
 * validation that also generates the OpenAPI document, and the error table.
 */
import type { ServerResponse } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import sjson from 'secure-json-parse';
import type { Logger } from 'pino';
import { AppError } from '../domain/errors.js';
import { findCardNumber } from '../domain/sensitive-data.js';
import { findUnstorableText } from '../domain/storable-text.js';
import { admitRequest, connectionWaitMs, type Db } from '../db/pool.js';
import { migrationsApplied } from '../db/migrate.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { KeyHasher } from '../merchants/secrets.js';
import { ApiKeyCache, merchantForKey } from '../merchants/store.js';
import { CompletedResponses } from '../idempotency/store.js';
import { newId } from '../lib/ids.js';
import { invalidKey, requireKey } from './auth.js';
import { sendError, toAppError } from './errors.js';
import { paymentRoutes } from './routes/payments.js';
import { adminRoutes } from './routes/admin.js';
import { webhookRoutes } from './routes/webhooks.js';
import { providerWebhookRoutes } from './routes/provider-webhooks.js';
import { settlementRoutes } from './routes/settlements.js';
import type { PgBoss } from '../worker/queue.js';
import type { Mode } from '../webhooks/url-policy.js';
import type { RateLimiter } from '../protection/rate-limit.js';
import type { ReadOnlySwitch } from '../protection/read-only.js';
import { metrics, registry } from '../observability/metrics.js';
import { context, contextFrom, SpanKind, trace, tracer } from '../observability/tracing.js';
import type { Context, Span } from '@opentelemetry/api';
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';

export interface AppOptions {
  db: Db;
  connectors: ConnectorRegistry;
  hasher: KeyHasher;
  /** Constant-time check of a presented admin key. */
  verifyAdminKey: (clear: string) => boolean;
  logger: Logger;
  bodyLimit: number;
  /** cacheEntries: finished responses kept in memory for replays (default 10,000; 0: none). */
  idempotency: { lockSeconds: number; ttlSeconds: number; cacheEntries?: number };
  /** How long a looked-up API key is trusted without the database (default 2 s; 0: always ask). */
  apiKeyCacheSeconds?: number;
  /** The job engine, for replays the API schedules (retry, redeliver, recover). */
  boss: PgBoss;
  mode: Mode;
  rateLimiter: RateLimiter;
  readOnly: ReadOnlySwitch;
  /** Requests this process works on at once before it sheds load with 503 OVERLOADED. */
  maxInFlight: number;
  /**
   * New requests are shed while the oldest caller waiting for a database connection in this
   * process has waited longer than this (ms); 0: never. Default 250.
   */
  overloadDbWaitMs?: number;
  /** See PaymentDeps.claimSeconds. */
  attemptClaimSeconds: number;
  /** Mounts extra plugins (the mock provider under /mock-provider) before the app is ready. */
  plugins?: ((app: FastifyInstance) => Promise<void>)[];
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

function readOnlyError(): AppError {
  return new AppError('READ_ONLY', 'Switchyard is in read-only mode for maintenance; reads work, changes are refused for now.', { retryAfter: 30 });
}

/** A request refused by load shedding (counted): before anything was read or written, so a retry is safe. */
function shed(): AppError {
  metrics.shed.inc();
  return new AppError('OVERLOADED', 'This instance is overloaded; retry shortly.', { retryAfter: 1 });
}

function routeKind(url: string): 'public' | 'admin' | 'merchant' {
  if (url.startsWith('/v1/admin/')) return 'admin';
  if (url.startsWith('/v1/connectors/')) return 'public';
  if (url.startsWith('/v1/')) return 'merchant';
  return 'public';
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  let draining = false;
  const overloadDbWaitMs = opts.overloadDbWaitMs ?? 250;
  // Per app, not per module: each instance has its own database and its own view of it (ADR 0010).
  const keyCache = new ApiKeyCache({ ttlSeconds: opts.apiKeyCacheSeconds ?? 2 });

  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    // One log line per request, written by our onResponse hook with the ids that matter.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : newId('evt').replace('evt_', 'req_');
    },
    requestIdHeader: false,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('merchant', null);
  // Readiness turns false before the listener closes, so load balancers stop sending first.
  app.decorate('startDraining', () => {
    draining = true;
  });
  app.decorateRequest('otel', null);
  app.decorateRequest('paymentId', null);

  // Tracing: a server span per request, joined to the caller's traceparent; handlers run inside it.
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req, reply) {
      const ctx = (req as FastifyRequest & { otel: { ctx: Context } | null }).otel?.ctx ?? context.active();
      return context.with(ctx, () => handler.call(this, req, reply));
    };
  });

  // Strict JSON: prototype pollution keys refused; an empty body is no body.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch {
      done(new AppError('INVALID_JSON', 'The request body is not valid JSON.'), undefined);
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Switchyard API', version: '1.0.0', description: 'Payment orchestration: every amount is an integer in minor units.' },
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
          bearer: { type: 'http', scheme: 'bearer' },
          adminKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'The admin key (SWITCHYARD_ADMIN_KEY)' },
        },
      },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  let inFlight = 0;
  // Responses still being worked on, so that shutdown can end their keep-alive connections.
  const open = new Set<ServerResponse>();
  app.addHook('onRequest', async (req, reply) => {
    reply.header('X-Request-Id', String(req.id));
    const parent = contextFrom(req.headers);
    const span = tracer().startSpan(`HTTP ${req.method}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': req.url.split('?')[0], 'switchyard.request_id': String(req.id) } }, parent);
    (req as FastifyRequest & { otel: { span: Span; ctx: Context } }).otel = { span, ctx: trace.setSpan(parent, span) };
    open.add(reply.raw);
    reply.raw.once('close', () => open.delete(reply.raw));
    const kind = routeKind(req.url);
    if (kind === 'public' && !req.url.startsWith('/v1/')) return; // health, metrics, docs: never shed nor counted
    inFlight += 1;
    reply.raw.once('close', () => {
      inFlight -= 1;
    });
    // A standing queue for database connections: the work already accepted will not finish in
    // time for more. Refused before anything is read or written, so a retry is always safe.
    const dbWait = overloadDbWaitMs > 0 ? connectionWaitMs(opts.db) : 0;
    if (inFlight > opts.maxInFlight || dbWait > overloadDbWaitMs) {
      throw shed();
    }
    // Requests of this process are waiting for a connection: work already started goes first.
    const admission = overloadDbWaitMs > 0 ? admitRequest(opts.db, overloadDbWaitMs) : true;
    if (admission !== true) {
      const since = performance.now();
      const admitted = await admission;
      metrics.admissionWait.observe({ admitted: String(admitted) }, (performance.now() - since) / 1000);
      if (!admitted) throw shed();
    }
    const mutation = req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
    if (kind === 'public') {
      if (mutation && (await opts.readOnly.isOn())) throw readOnlyError();
      return;
    }
    const key = requireKey(req);
    if (kind === 'admin') {
      if (!opts.verifyAdminKey(key)) throw invalidKey();
      return;
    }
    const merchant = await merchantForKey(opts.db, opts.hasher, key, keyCache);
    if (!merchant) throw invalidKey();
    req.merchant = merchant;
    const d = await opts.rateLimiter.take(merchant.id, merchant.rate_tier);
    reply.header('RateLimit-Limit', String(d.limit));
    reply.header('RateLimit-Remaining', String(d.remaining));
    reply.header('RateLimit-Reset', String(d.resetSeconds));
    if (!d.allowed) {
      metrics.rateLimited.inc({ scope: d.scope });
      throw new AppError('RATE_LIMITED', d.scope === 'global' ? 'Too many requests to this service; slow down.' : 'Too many requests for this merchant; slow down.', {
        retryAfter: d.resetSeconds,
      });
    }
    if (mutation && (await opts.readOnly.isOn())) throw readOnlyError();
  });

  // Raw card numbers are refused before validation, storage or logging (SPEC §5).
  app.addHook('preValidation', async (req) => {
    if (Buffer.isBuffer(req.body)) return; // raw provider webhooks: signed bytes, not merchant input
    const hit = findCardNumber(req.body) ?? findCardNumber(req.query);
    if (hit) {
      throw new AppError('SCHEMA_SENSITIVE_DATA', 'Raw card numbers are never accepted; send a payment_method_token instead.', {
        layer: 'schema',
        details: { field: hit.join('.') },
      });
    }
    const unstorable = findUnstorableText(req.body) ?? findUnstorableText(req.query) ?? findUnstorableText(req.params);
    if (unstorable) {
      const field = unstorable.join('.');
      throw new AppError('SCHEMA_INVALID_FIELD', `Invalid field ${field || '(body)'}: text may not contain U+0000 or an unpaired surrogate.`, {
        layer: 'schema',
        details: { field },
      });
    }
  });

  app.addHook('onResponse', async (req, reply) => {
    const otel = (req as FastifyRequest & { otel: { span: Span } | null }).otel;
    if (otel) {
      otel.span.updateName(`HTTP ${req.method} ${req.routeOptions.url ?? 'unknown'}`);
      otel.span.setAttribute('http.route', req.routeOptions.url ?? 'unknown');
      otel.span.setAttribute('http.response.status_code', reply.statusCode);
      if (req.merchant) otel.span.setAttribute('switchyard.merchant_id', req.merchant.id);
      otel.span.end();
    }
    metrics.httpDuration.observe({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    const params = req.params as Record<string, unknown> | undefined;
    req.log.info(
      {
        req_id: req.id,
        method: req.method,
        route: req.routeOptions.url ?? 'unknown',
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        merchant_id: req.merchant?.id,
        payment_id: req.paymentId ?? (typeof params?.id === 'string' && params.id.startsWith('pay_') ? params.id : undefined),
      },
      'request',
    );
  });

  app.setErrorHandler(async (err, req, reply) => {
    const appErr = toAppError(err, req);
    if (appErr.code === 'INTERNAL_ERROR') req.log.error({ err: { type: (err as Error).name, message: (err as Error).message, stack: (err as Error).stack } }, 'unhandled error');
    return sendError(reply, appErr);
  });
  app.setNotFoundHandler(async (req, reply) =>
    sendError(reply, new AppError('ROUTE_NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}.`)),
  );

  const idem = {
    db: opts.db,
    lockSeconds: opts.idempotency.lockSeconds,
    ttlSeconds: opts.idempotency.ttlSeconds,
    cache: new CompletedResponses(opts.idempotency.cacheEntries ?? 10_000),
    onReplay: () => metrics.idempotentReplays.inc(),
  };
  const deps = { db: opts.db, connectors: opts.connectors, claimSeconds: opts.attemptClaimSeconds };
  paymentRoutes(app, deps, idem);
  adminRoutes(app, opts.db, opts.hasher, idem, opts.connectors, keyCache);
  settlementRoutes(app, opts.db, { idempotency: idem });
  webhookRoutes(app, { db: opts.db, boss: opts.boss, mode: opts.mode }, idem);
  await providerWebhookRoutes(app, opts.db, opts.connectors);

  app.get('/health/liveness', { schema: { tags: ['health'] } }, async () => ({ status: 'ok' }));
  app.get('/health/startup', { schema: { tags: ['health'] } }, async () => ({ status: 'ok' }));
  app.get('/health/readiness', { schema: { tags: ['health'] } }, async (_req, reply) => {
    const database = await opts.db.query('SELECT 1').then(() => true, () => false);
    const migrations = database && (await migrationsApplied(opts.db));
    const ready = database && migrations && !draining;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', checks: { database, migrations, draining } });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => reply.header('Content-Type', registry.contentType).send(await registry.metrics()));

  const adminR = app.withTypeProvider<ZodTypeProvider>();
  adminR.get('/v1/admin/read_only', { schema: { tags: ['admin'], summary: 'Whether read-only mode is on', security: [{ adminKey: [] }] } }, async () => ({
    object: 'read_only',
    enabled: await opts.readOnly.isOn(),
  }));
  adminR.put('/v1/admin/read_only', {
    schema: { tags: ['admin'], summary: 'Turn read-only mode on or off (mutations answer 503 READ_ONLY)', security: [{ adminKey: [] }], body: z.object({ enabled: z.boolean() }).strict() },
  }, async (req) => ({ object: 'read_only', enabled: await opts.readOnly.set(req.body.enabled) }));

  app.addHook('preClose', async () => {
    draining = true;
    // server.close() closes idle connections once, then waits for the rest. A connection busy now
    // would go back to idle keep-alive after its response and hold the close (and the process) open
    // until the client dropped it; so requests still running answer with Connection: close.
    for (const res of open) {
      if (!res.headersSent) res.shouldKeepAlive = false;
      else res.once('finish', () => res.socket?.end());
    }
  });

  for (const plugin of opts.plugins ?? []) await plugin(app);
  return app;
}

export type { FastifyRequest };
