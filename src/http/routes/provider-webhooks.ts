import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../domain/errors.js';
import type { Db } from '../../db/pool.js';
import type { ConnectorRegistry } from '../../connectors/registry.js';
import { receiveWebhook } from '../../inbound/receive.js';
import { listProviderEvents, reprocessProviderEvent } from '../../inbound/admin.js';
import { idParam, listLimit } from '../schemas/common.js';

/**
 * Inbound provider webhooks need the exact bytes the provider signed, so this scope parses every
 * body as a Buffer.
 */
export async function providerWebhookRoutes(app: FastifyInstance, db: Db, connectors: ConnectorRegistry): Promise<void> {
  await app.register(async (scoped) => {
    scoped.removeAllContentTypeParsers();
    scoped.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    scoped.withTypeProvider<ZodTypeProvider>().post('/v1/connectors/:connector/webhooks', {
      schema: {
        tags: ['provider webhooks'],
        summary: 'Receive a provider webhook (signature verified on the raw body)',
        params: z.object({ connector: z.string().min(1).max(40) }).strict(),
      },
    }, async (req) => {
      const connector = connectors.get(req.params.connector);
      if (!connector) throw new AppError('RESOURCE_NOT_FOUND', `No connector named '${req.params.connector}'.`);
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const result = await receiveWebhook(db, connector, body, req.headers, String(req.id));
      if (result.failed > 0) {
        // Stored as failed for the worker; 500 asks the provider to send it again as well.
        throw new AppError('WEBHOOK_PROCESSING_FAILED', 'The event was stored and will be processed again.');
      }
      return { ok: true, ...result };
    });
  });

  const r = app.withTypeProvider<ZodTypeProvider>();
  const security: Record<string, string[]>[] = [{ adminKey: [] }];
  r.get('/v1/admin/provider_events', {
    schema: {
      tags: ['admin'],
      summary: 'Inbound provider events, e.g. the failed ones (the dead-letter queue)',
      security,
      querystring: z.object({ status: z.enum(['received', 'processed', 'ignored', 'unmatched', 'failed']).optional(), limit: listLimit, starting_after: z.string().max(64).optional() }).strict(),
    },
  }, async (req) => listProviderEvents(db, req.query));
  r.post('/v1/admin/provider_events/:id/reprocess', {
    schema: { tags: ['admin'], summary: 'Apply a failed or unmatched provider event again', security, params: idParam('pe') },
  }, async (req) => reprocessProviderEvent(db, req.params.id, String(req.id)));
}
