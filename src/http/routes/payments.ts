import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createPayment } from '../../payments/create.js';
import { confirmPayment } from '../../payments/confirm.js';
import { capturePayment } from '../../payments/capture.js';
import { cancelPayment } from '../../payments/cancel.js';
import { refundPayment } from '../../payments/refund.js';
import { findPayment, findRefund, listAttempts, listHistory, listPaymentEvents, listPayments, listRefunds } from '../../payments/queries.js';
import { paymentToApi, refundToApi } from '../../payments/types.js';
import type { PaymentDeps, OperationContext } from '../../payments/context.js';
import { runIdempotent, type IdempotencySettings } from '../idempotency.js';
import { cancelBody, captureBody, createPaymentBody, emptyBody, listPaymentsQuery, refundBody } from '../schemas/payments.js';
import { idParam } from '../schemas/common.js';
import type { FastifyRequest } from 'fastify';
import { inSpan } from '../../observability/tracing.js';

const security: Record<string, string[]>[] = [{ apiKey: [] }, { bearer: [] }];
// Optional bodies are nullish: Fastify validates a request without a body as null, not undefined.
const idempotencyHeader = z.object({ 'idempotency-key': z.string().optional().describe('1–255 printable characters; see the idempotency guide.') });

function ctxOf(req: FastifyRequest): OperationContext {
  return { merchant: req.merchant!, requestId: String(req.id) };
}

export function paymentRoutes(app: FastifyInstance, deps: PaymentDeps, idem: IdempotencySettings): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const scope = (req: FastifyRequest) => req.merchant!.id;

  r.post('/v1/payments', {
    schema: { tags: ['payments'], summary: 'Create (and by default confirm) a payment', security, body: createPaymentBody, headers: idempotencyHeader },
  }, async (req, reply) =>
    runIdempotent(req, reply, scope(req), idem, async (recovery) => {
      const { payment } = await inSpan('payments.create', { 'switchyard.merchant_id': req.merchant!.id }, () => createPayment(deps, ctxOf(req), req.body, recovery));
      req.paymentId = payment.id;
      return { status: 201, body: paymentToApi(payment) };
    }),
  );

  r.get('/v1/payments', {
    schema: { tags: ['payments'], summary: 'List payments, newest first', security, querystring: listPaymentsQuery },
  }, async (req) =>
    listPayments(deps.db, req.merchant!.id, {
      status: req.query.status,
      reference_id: req.query.reference_id,
      created_gte: req.query['created[gte]'],
      created_lt: req.query['created[lt]'],
      limit: req.query.limit,
      starting_after: req.query.starting_after,
    }),
  );

  r.get('/v1/payments/:id', { schema: { tags: ['payments'], summary: 'Retrieve a payment', security, params: idParam('pay') } }, async (req) =>
    paymentToApi(await findPayment(deps.db, req.merchant!.id, req.params.id)),
  );

  r.post('/v1/payments/:id/confirm', {
    schema: { tags: ['payments'], summary: 'Send a pending payment to its connector', security, params: idParam('pay'), body: emptyBody.nullish(), headers: idempotencyHeader },
  }, async (req, reply) =>
    runIdempotent(req, reply, scope(req), idem, async (recovery) => ({
      status: 200,
      body: paymentToApi(await inSpan('payments.confirm', { 'switchyard.payment_id': req.params.id }, () => confirmPayment(deps, ctxOf(req), req.params.id, recovery))),
    })),
  );

  r.post('/v1/payments/:id/capture', {
    schema: { tags: ['payments'], summary: 'Capture an authorized payment (partially or fully)', security, params: idParam('pay'), body: captureBody.nullish(), headers: idempotencyHeader },
  }, async (req, reply) =>
    runIdempotent(req, reply, scope(req), idem, async (recovery) => ({
      status: 200,
      body: paymentToApi(await inSpan('payments.capture', { 'switchyard.payment_id': req.params.id }, () => capturePayment(deps, ctxOf(req), req.params.id, req.body?.amount, recovery))),
    })),
  );

  r.post('/v1/payments/:id/cancel', {
    schema: { tags: ['payments'], summary: 'Cancel a pending payment or void an authorized one', security, params: idParam('pay'), body: cancelBody.nullish(), headers: idempotencyHeader },
  }, async (req, reply) =>
    runIdempotent(req, reply, scope(req), idem, async (recovery) => ({
      status: 200,
      body: paymentToApi(await inSpan('payments.cancel', { 'switchyard.payment_id': req.params.id }, () => cancelPayment(deps, ctxOf(req), req.params.id, req.body?.reason, recovery))),
    })),
  );

  r.post('/v1/payments/:id/refunds', {
    schema: { tags: ['refunds'], summary: 'Refund a captured payment (partially or fully)', security, params: idParam('pay'), body: refundBody.nullish(), headers: idempotencyHeader },
  }, async (req, reply) =>
    runIdempotent(req, reply, scope(req), idem, async (recovery) => ({
      status: 201,
      body: refundToApi(
        await inSpan('payments.refund', { 'switchyard.payment_id': req.params.id }, () =>
          refundPayment(deps, ctxOf(req), req.params.id, { amount: req.body?.amount, reason: req.body?.reason }, recovery),
        ),
      ),
    })),
  );

  r.get('/v1/payments/:id/attempts', { schema: { tags: ['payments'], summary: 'Every provider interaction of a payment', security, params: idParam('pay') } }, async (req) =>
    listAttempts(deps.db, req.merchant!.id, req.params.id),
  );
  r.get('/v1/payments/:id/history', { schema: { tags: ['payments'], summary: 'The audit trail of status changes', security, params: idParam('pay') } }, async (req) =>
    listHistory(deps.db, req.merchant!.id, req.params.id),
  );
  r.get('/v1/payments/:id/refunds', { schema: { tags: ['refunds'], summary: 'Refunds of a payment', security, params: idParam('pay') } }, async (req) =>
    listRefunds(deps.db, req.merchant!.id, req.params.id),
  );
  r.get('/v1/payments/:id/events', { schema: { tags: ['events'], summary: 'Events of a payment, in sequence', security, params: idParam('pay') } }, async (req) =>
    listPaymentEvents(deps.db, req.merchant!.id, req.params.id),
  );
  r.get('/v1/refunds/:id', { schema: { tags: ['refunds'], summary: 'Retrieve a refund', security, params: idParam('re') } }, async (req) =>
    findRefund(deps.db, req.merchant!.id, req.params.id),
  );
}
