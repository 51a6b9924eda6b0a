import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Db } from '../../db/pool.js';
import type { PgBoss } from '../../worker/queue.js';
import type { Mode } from '../../webhooks/url-policy.js';
import { createEndpoint, deleteEndpoint, enableEndpoint, endpointToApi, findEndpoint, listEndpoints, rotateSecret } from '../../webhooks/endpoints.js';
import { deliveryToApi, findDelivery, listDeliveries, listDeliveryAttempts, recoverEndpoint, redeliverEvent, retryDelivery } from '../../webhooks/deliveries.js';
import { eventToApi, findEvent, listEvents } from '../../events/events.js';
import { runIdempotent, type IdempotencySettings } from '../idempotency.js';
import { idParam } from '../schemas/common.js';
import { emptyBody } from '../schemas/payments.js';
import { createEndpointBody, listDeliveriesQuery, listEventsQuery, recoverBody, rotateSecretBody } from '../schemas/webhooks.js';

const security: Record<string, string[]>[] = [{ apiKey: [] }, { bearer: [] }];

export interface WebhookRouteDeps {
  db: Db;
  boss: PgBoss;
  mode: Mode;
}

export function webhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps, idem: IdempotencySettings): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const mid = (req: FastifyRequest) => req.merchant!.id;
  const tags = ['webhooks'];

  r.post('/v1/webhook_endpoints', {
    schema: { tags, summary: 'Register a webhook endpoint; its signing secret is answered once', security, body: createEndpointBody },
  }, async (req, reply) =>
    runIdempotent(req, reply, mid(req), idem, async () => ({ status: 201, body: await createEndpoint(deps.db, mid(req), req.body, deps.mode) })),
  );
  r.get('/v1/webhook_endpoints', { schema: { tags, summary: 'List webhook endpoints', security } }, async (req) => listEndpoints(deps.db, mid(req)));
  r.get('/v1/webhook_endpoints/:id', { schema: { tags, summary: 'Retrieve a webhook endpoint', security, params: idParam('we') } }, async (req) =>
    endpointToApi(await findEndpoint(deps.db, mid(req), req.params.id)),
  );
  r.delete('/v1/webhook_endpoints/:id', { schema: { tags, summary: 'Delete a webhook endpoint', security, params: idParam('we') } }, async (req) =>
    deleteEndpoint(deps.db, mid(req), req.params.id),
  );
  r.post('/v1/webhook_endpoints/:id/enable', {
    schema: { tags, summary: 'Re-enable an endpoint disabled by a 410 Gone', security, params: idParam('we'), body: emptyBody.nullish() },
  }, async (req, reply) => runIdempotent(req, reply, mid(req), idem, async () => ({ status: 200, body: await enableEndpoint(deps.db, mid(req), req.params.id) })));
  r.post('/v1/webhook_endpoints/:id/rotate_secret', {
    schema: { tags, summary: 'Rotate the signing secret; both sign during the overlap', security, params: idParam('we'), body: rotateSecretBody.nullish() },
  }, async (req, reply) =>
    runIdempotent(req, reply, mid(req), idem, async () => ({
      status: 200,
      body: await rotateSecret(deps.db, mid(req), req.params.id, req.body?.overlap_seconds ?? 86_400),
    })),
  );
  r.post('/v1/webhook_endpoints/:id/recover', {
    schema: { tags, summary: 'Replay every dead or dropped delivery since a time', security, params: idParam('we'), body: recoverBody },
  }, async (req, reply) =>
    runIdempotent(req, reply, mid(req), idem, async () => ({ status: 200, body: await recoverEndpoint(deps.db, deps.boss, mid(req), req.params.id, req.body.since) })),
  );

  r.get('/v1/webhook_deliveries', { schema: { tags, summary: 'List deliveries, newest first', security, querystring: listDeliveriesQuery } }, async (req) =>
    listDeliveries(deps.db, mid(req), req.query),
  );
  r.get('/v1/webhook_deliveries/:id', { schema: { tags, summary: 'Retrieve a delivery', security, params: idParam('wd') } }, async (req) =>
    deliveryToApi(await findDelivery(deps.db, mid(req), req.params.id)),
  );
  r.get('/v1/webhook_deliveries/:id/attempts', { schema: { tags, summary: 'Every attempt of a delivery', security, params: idParam('wd') } }, async (req) =>
    listDeliveryAttempts(deps.db, mid(req), req.params.id),
  );
  r.post('/v1/webhook_deliveries/:id/retry', {
    schema: { tags, summary: 'Attempt a delivery again now', security, params: idParam('wd'), body: emptyBody.nullish() },
  }, async (req, reply) => runIdempotent(req, reply, mid(req), idem, async () => ({ status: 200, body: await retryDelivery(deps.db, deps.boss, mid(req), req.params.id) })));

  r.get('/v1/events', { schema: { tags: ['events'], summary: 'List events, newest first', security, querystring: listEventsQuery } }, async (req) =>
    listEvents(deps.db, mid(req), req.query),
  );
  r.get('/v1/events/:id', { schema: { tags: ['events'], summary: 'Retrieve an event', security, params: idParam('evt') } }, async (req) =>
    eventToApi(await findEvent(deps.db, mid(req), req.params.id)),
  );
  r.post('/v1/events/:id/redeliver', {
    schema: { tags: ['events'], summary: 'Deliver an event again to every endpoint subscribed to it', security, params: idParam('evt'), body: emptyBody.nullish() },
  }, async (req, reply) => runIdempotent(req, reply, mid(req), idem, async () => ({ status: 200, body: await redeliverEvent(deps.db, deps.boss, mid(req), req.params.id) })));
}
