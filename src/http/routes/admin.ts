import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Db } from '../../db/pool.js';
import type { KeyHasher } from '../../merchants/secrets.js';
import { createApiKey, getMerchant, insertMerchant, merchantToApi, revokeApiKey, updateMerchant, type ApiKeyCache } from '../../merchants/store.js';
import { readMockLedger } from '../../mock-provider/ledger.js';
import { runIdempotent, type IdempotencySettings } from '../idempotency.js';
import { createMerchantBody, ledgerQuery, updateMerchantBody } from '../schemas/admin.js';
import { idParam, listLimit } from '../schemas/common.js';
import type { ConnectorRegistry } from '../../connectors/registry.js';
import { listForReconciliation } from '../../reconciliation/sweep.js';
import { z } from 'zod';
import type { PartialMerchantLimits } from '../../domain/merchant.js';

const security: Record<string, string[]>[] = [{ adminKey: [] }];

/** keyCache: this process's API-key cache, which forgets a revoked key or an updated merchant at once. */
export function adminRoutes(app: FastifyInstance, db: Db, hasher: KeyHasher, idem: IdempotencySettings, connectors: ConnectorRegistry, keyCache?: ApiKeyCache): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post('/v1/admin/merchants', { schema: { tags: ['admin'], summary: 'Create a merchant', security, body: createMerchantBody } }, async (req, reply) =>
    runIdempotent(req, reply, 'admin', idem, async () => ({
      status: 201,
      body: merchantToApi(await insertMerchant(db, { ...req.body, limits: req.body.limits as PartialMerchantLimits | undefined })),
    })),
  );

  r.get('/v1/admin/merchants/:id', { schema: { tags: ['admin'], summary: 'Retrieve a merchant', security, params: idParam('mer') } }, async (req) =>
    merchantToApi(await getMerchant(db, req.params.id)),
  );

  r.patch('/v1/admin/merchants/:id', {
    schema: { tags: ['admin'], summary: 'Update a merchant (each limit group given replaces that group)', security, params: idParam('mer'), body: updateMerchantBody },
  }, async (req) => merchantToApi(await updateMerchant(db, req.params.id, { ...req.body, limits: req.body.limits as PartialMerchantLimits | undefined }, keyCache)));

  r.post('/v1/admin/merchants/:id/api_keys', {
    schema: { tags: ['admin'], summary: 'Create an API key; the clear key is answered once', security, params: idParam('mer') },
    // Not replayable under an Idempotency-Key on purpose: replaying would mean storing the clear key.
  }, async (req, reply) => reply.code(201).send({ object: 'api_key', ...(await createApiKey(db, hasher, req.params.id)) }));

  r.delete('/v1/admin/api_keys/:id', { schema: { tags: ['admin'], summary: 'Revoke an API key', security, params: idParam('key') } }, async (req) =>
    revokeApiKey(db, req.params.id, keyCache),
  );

  r.get('/v1/admin/connectors/mock/ledger', {
    schema: { tags: ['admin'], summary: "The mock provider's own ledger of effects for a payment", security, querystring: ledgerQuery },
  }, async (req) => ({ object: 'list', data: await readMockLedger(db, req.query.payment_id) }));

  r.get('/v1/admin/connectors', { schema: { tags: ['admin'], summary: 'Connectors and the state of their circuit breakers', security } }, async () => ({
    object: 'list',
    data: connectors.status().map((c) => ({ object: 'connector', name: c.name, available: connectors.isAvailable(c.name), circuit: c.circuit })),
    has_more: false,
  }));

  r.get('/v1/admin/reconciliation', {
    schema: {
      tags: ['admin'],
      summary: 'Payments by reconciliation status, e.g. the manual-review queue',
      security,
      querystring: z.object({ status: z.enum(['manual_review', 'pending_reconciliation', 'synced']).default('manual_review'), limit: listLimit, starting_after: z.string().max(64).optional() }).strict(),
    },
  }, async (req) => listForReconciliation(db, req.query.status, req.query.limit, req.query.starting_after));
}
