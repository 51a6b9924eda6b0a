/**
 * Settlement over HTTP (SPEC §13). Operators start a batch and read every batch; a merchant reads
 * its own share of a batch.
 *
 * POST answers 201 with the `pending` batch at once and starts running it in this process without
 * awaiting it (under the batch lease). If this process dies or shuts down mid-run, the batch stays
 * `running` with its checkpoint, and the worker's resume sweep finishes it.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../../db/pool.js';
import type { Logger } from '../../lib/logger.js';
import { runIdempotent, type IdempotencySettings } from '../idempotency.js';
import { idParam, listLimit } from '../schemas/common.js';
import { runSettlement, type RunOptions } from '../../settlement/run.js';
import {
  createSettlement,
  getSettlementReport,
  listSettlementErrors,
  listSettlements,
  MAX_CHUNK_SIZE,
  SETTLEMENT_STATUSES,
  settlementToApi,
} from '../../settlement/store.js';

const adminSecurity: Record<string, string[]>[] = [{ adminKey: [] }];
const merchantSecurity: Record<string, string[]>[] = [{ apiKey: [] }, { bearer: [] }];
const idempotencyHeader = z.object({ 'idempotency-key': z.string().optional().describe('1–255 printable characters; see the idempotency guide.') });

export const createSettlementBody = z
  .object({
    cutoff: z.iso
      .datetime({ offset: true })
      .optional()
      .describe('Settle payments captured before this instant (ISO-8601); default now. Must not be in the future.'),
    chunk_size: z.number().int().min(1).max(MAX_CHUNK_SIZE).optional().describe('Payments per transaction; default 1000.'),
  })
  .strict();

export interface SettlementRouteOptions {
  /** With it, POST honours Idempotency-Key like every other POST (SPEC §9). */
  idempotency?: IdempotencySettings;
  /** Chunk retries, lease TTL and so on for runs started by the API. */
  run?: Omit<RunOptions, 'signal' | 'log'>;
  log?: Logger;
}

export function settlementRoutes(app: FastifyInstance, db: Db, opts: SettlementRouteOptions = {}): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const log = opts.log ?? (app.log as unknown as Logger);

  // Runs started here stop between chunks when the server closes; the worker resumes them.
  const controller = new AbortController();
  const running = new Set<Promise<unknown>>();
  app.addHook('onClose', async () => {
    controller.abort();
    await Promise.allSettled([...running]);
  });
  const startInBackground = (id: string) => {
    const p = runSettlement(db, id, { ...opts.run, signal: controller.signal, log }).catch((err: unknown) =>
      log.warn({ job: 'settlement', settlement_id: id, err: (err as Error).message }, 'settlement run failed; the worker will resume it'),
    );
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  r.post('/v1/admin/settlements', {
    schema: {
      tags: ['settlements'],
      summary: 'Start a settlement batch; answered at once with the pending batch, which runs in the background',
      security: adminSecurity,
      body: createSettlementBody.nullish(),
      headers: idempotencyHeader,
    },
  }, async (req, reply) => {
    const create = async () => {
      const s = await createSettlement(db, {
        ...(req.body?.cutoff !== undefined ? { cutoff: new Date(req.body.cutoff) } : {}),
        ...(req.body?.chunk_size !== undefined ? { chunkSize: req.body.chunk_size } : {}),
      });
      startInBackground(s.id);
      return { status: 201, body: settlementToApi(s) };
    };
    if (opts.idempotency) return runIdempotent(req, reply, 'admin', opts.idempotency, create);
    const result = await create();
    return reply.code(result.status).send(result.body);
  });

  r.get('/v1/admin/settlements', {
    schema: {
      tags: ['settlements'],
      summary: 'Settlement batches, newest first',
      security: adminSecurity,
      querystring: z.object({ status: z.enum(SETTLEMENT_STATUSES).optional(), limit: listLimit, starting_after: z.string().max(64).optional() }).strict(),
    },
  }, async (req) => listSettlements(db, { limit: req.query.limit, ...(req.query.status ? { status: req.query.status } : {}), ...(req.query.starting_after ? { startingAfter: req.query.starting_after } : {}) }));

  r.get('/v1/admin/settlements/:id', {
    schema: { tags: ['settlements'], summary: 'A settlement batch: progress, counts and gross / refunded / net per currency', security: adminSecurity, params: idParam('stl') },
  }, async (req) => getSettlementReport(db, req.params.id));

  r.get('/v1/admin/settlements/:id/errors', {
    schema: {
      tags: ['settlements'],
      summary: 'Payments a batch could not settle, with the reason',
      security: adminSecurity,
      params: idParam('stl'),
      querystring: z.object({ limit: listLimit, starting_after: z.coerce.number().int().min(0).optional() }).strict(),
    },
  }, async (req) => listSettlementErrors(db, req.params.id, { limit: req.query.limit, ...(req.query.starting_after !== undefined ? { startingAfter: req.query.starting_after } : {}) }));

  r.post('/v1/admin/settlements/:id/run', {
    schema: {
      tags: ['settlements'],
      summary: 'Run a failed or unfinished batch again from its checkpoint (in the background); a completed batch is left as it is',
      security: adminSecurity,
      params: idParam('stl'),
    },
  }, async (req, reply) => {
    const report = await getSettlementReport(db, req.params.id);
    if (report.status !== 'completed') startInBackground(report.id);
    return reply.code(202).send(report);
  });

  r.get('/v1/settlements/:id', {
    schema: {
      tags: ['settlements'],
      summary: "Your share of a settlement batch: counts and gross / refunded / net per currency of your payments (404 when it settled none of them)",
      security: merchantSecurity,
      params: idParam('stl'),
    },
  }, async (req) => getSettlementReport(db, req.params.id, { merchantId: req.merchant!.id }));
}
