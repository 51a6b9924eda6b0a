import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Db, Tx } from '../db/pool.js';
import type { ProviderMode } from './charges.js';
import { chargeView } from './charges.js';
import type { Effect, FollowUp } from './effects.js';
import { apiError, authorizeCharge, captureCharge, refundCharge, settlePendingCharge, voidCharge } from './effects.js';
import type { FlakyDice, FlakyFault } from './flaky.js';
import { readMockLedger } from './ledger.js';
import type { Lifecycle } from './lifecycle.js';
import { ProviderClosedError } from './lifecycle.js';
import type { Claim } from './operations.js';
import { findOperation, runIdempotent } from './operations.js';
import { amountBody, chargeBody, describeIssues } from './schemas.js';
import type { WebhookSender } from './webhooks.js';

export interface ProviderContext {
  db: Db;
  hangMs: number;
  asyncDelayMs: number;
  webhooksForAllEffects: boolean;
  lifecycle: Lifecycle;
  dice: FlakyDice;
  webhooks: WebhookSender;
  log: { warn: (obj: object, msg: string) => void };
}

const MAX_SETTLE_TRIES = 10;

/** Settles an accepted-pending charge and reports it; a database hiccup only postpones it. */
export function scheduleSettlement(ctx: ProviderContext, chargeId: string, delayMs: number, tries = 1): void {
  ctx.lifecycle.schedule(delayMs, async () => {
    try {
      const settled = await settlePendingCharge(ctx.db, chargeId);
      if (settled) ctx.webhooks.emit(settled.charge.mode, settled.event);
    } catch (err) {
      if (ctx.lifecycle.closed) return;
      ctx.log.warn({ err, chargeId, tries }, 'mock provider could not settle a pending charge');
      if (tries < MAX_SETTLE_TRIES) scheduleSettlement(ctx, chargeId, 1000, tries + 1);
    }
  });
}

function idempotencyKey(req: FastifyRequest): string | null {
  const value = req.headers['idempotency-key'];
  if (typeof value !== 'string' || value.length < 1 || value.length > 255) return null;
  return value;
}

/** Stands for a provider that goes silent: the client sees nothing at all, not even an error. */
function drop(reply: FastifyReply): FastifyReply {
  reply.hijack();
  reply.raw.destroy();
  return reply;
}

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).send(body);
}

/** The flaky mode's draw for this request, after its latency; always 'none' in mock mode. */
async function chaos(ctx: ProviderContext, mode: ProviderMode): Promise<FlakyFault> {
  if (mode !== 'flaky') return 'none';
  const draw = ctx.dice.drawRequest();
  if (draw.latencyMs > 0) await ctx.lifecycle.sleep(draw.latencyMs);
  return draw.fault;
}

interface Execution {
  claim: Omit<Claim, 'mode'>;
  effect: (tx: Tx) => Promise<Effect>;
  /** tok_timeout_uncharged: hang before doing anything, then answer without having acted. */
  hangBefore?: boolean;
  /** tok_timeout_charged: act and commit, then answer too late. */
  hangAfter?: boolean;
}

async function execute(ctx: ProviderContext, mode: ProviderMode, reply: FastifyReply, x: Execution): Promise<FastifyReply> {
  try {
    const fault = await chaos(ctx, mode);
    if (fault === 'fail') {
      return send(reply, 500, apiError('provider_unavailable_not_charged', 'The provider failed before acting; nothing was charged.'));
    }
    if (x.hangBefore || fault === 'hang_uncharged') {
      await ctx.lifecycle.sleep(ctx.hangMs);
      return send(reply, 503, apiError('provider_timeout', 'The provider timed out before acting; nothing was charged.'));
    }
    const result = await runIdempotent(ctx.db, { ...x.claim, mode }, x.effect);
    if (result.kind === 'conflict') {
      return send(reply, 409, apiError('idempotency_conflict', 'This idempotency key was used for a different request.'));
    }
    if (result.kind === 'replayed') {
      reply.header('idempotent-replayed', 'true');
      return send(reply, result.status, result.body);
    }
    if (result.followUp) afterCommit(ctx, mode, result.followUp);
    // Only the request that acted hangs: a retry with the same key gets its answer at once.
    if (x.hangAfter || fault === 'hang_charged') await ctx.lifecycle.sleep(ctx.hangMs);
    return send(reply, result.status, result.body);
  } catch (err) {
    if (err instanceof ProviderClosedError) return drop(reply);
    throw err;
  }
}

function afterCommit(ctx: ProviderContext, mode: ProviderMode, followUp: FollowUp): void {
  if (followUp.settleChargeId) scheduleSettlement(ctx, followUp.settleChargeId, ctx.asyncDelayMs);
  if (ctx.webhooksForAllEffects) for (const event of followUp.events) ctx.webhooks.emit(mode, event);
}

function invalid(reply: FastifyReply, code: string, message: string): FastifyReply {
  return send(reply, 400, apiError(code, message));
}

const MISSING_KEY = 'An Idempotency-Key header of 1 to 255 characters is required.';

/** The provider's API, registered once per mode: at the root for mock, under /flaky for flaky. */
export async function registerProviderRoutes(app: FastifyInstance, ctx: ProviderContext, mode: ProviderMode): Promise<void> {
  app.post('/v1/charges', async (req, reply) => {
    const key = idempotencyKey(req);
    if (!key) return invalid(reply, 'idempotency_key_missing', MISSING_KEY);
    const parsed = chargeBody.safeParse(req.body);
    if (!parsed.success) return invalid(reply, 'invalid_request', describeIssues(parsed.error));
    const b = parsed.data;
    if (!b.token.startsWith('tok_')) return invalid(reply, 'invalid_token', 'Payment method tokens start with tok_.');
    return execute(ctx, mode, reply, {
      claim: { key, operation: 'authorize', request: [b.payment_id, b.amount, b.currency, b.token, b.capture] },
      effect: (tx) => authorizeCharge(tx, {
        key, mode, paymentId: b.payment_id, amount: b.amount, currency: b.currency, token: b.token, capture: b.capture,
      }),
      hangBefore: b.token === 'tok_timeout_uncharged',
      hangAfter: b.token === 'tok_timeout_charged',
    });
  });

  const chargeOperation = (
    operation: 'capture' | 'void' | 'refund',
    run: typeof captureCharge,
  ) => async (req: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    const key = idempotencyKey(req);
    if (!key) return invalid(reply, 'idempotency_key_missing', MISSING_KEY);
    const parsed = amountBody.safeParse(req.body);
    if (!parsed.success) return invalid(reply, 'invalid_request', describeIssues(parsed.error));
    const { amount, currency } = operation === 'void' ? { amount: undefined, currency: undefined } : parsed.data;
    const chargeId = req.params.id;
    return execute(ctx, mode, reply, {
      claim: { key, operation, request: [chargeId, amount ?? null, currency ?? null] },
      effect: (tx) => run(tx, { key, chargeId, amount, currency }),
    });
  };
  app.post('/v1/charges/:id/capture', chargeOperation('capture', captureCharge));
  app.post('/v1/charges/:id/void', chargeOperation('void', voidCharge));
  app.post('/v1/charges/:id/refunds', chargeOperation('refund', refundCharge));

  app.get<{ Params: { key: string } }>('/v1/operations/:key', async (req, reply) => {
    try {
      const fault = await chaos(ctx, mode);
      if (fault === 'fail') return send(reply, 500, apiError('provider_unavailable', 'The provider is unavailable.'));
      // A lookup cannot charge, so a drawn timeout only makes it slow.
      if (fault !== 'none') await ctx.lifecycle.sleep(ctx.hangMs);
    } catch (err) {
      if (err instanceof ProviderClosedError) return drop(reply);
      throw err;
    }
    const op = await findOperation(ctx.db, req.params.key);
    if (!op) return send(reply, 404, apiError('not_found', 'No operation with this idempotency key.'));
    return send(reply, 200, {
      idempotency_key: op.idempotency_key,
      operation: op.operation,
      mode: op.mode,
      status_code: op.response_status,
      body: op.response_body,
      payment_id: op.payment_id,
      charge_id: op.charge_id,
      charge: op.charge ? chargeView(op.charge) : null,
      created_at: op.created_at.toISOString(),
    });
  });

  app.get<{ Querystring: { payment_id?: string } }>('/v1/ledger', async (req, reply) => {
    const paymentId = req.query.payment_id;
    if (typeof paymentId !== 'string' || paymentId.length === 0) {
      return invalid(reply, 'invalid_request', 'payment_id is required.');
    }
    return send(reply, 200, { data: await readMockLedger(ctx.db, paymentId) });
  });
}
