/**
 * Runs a POST handler under its Idempotency-Key (SPEC §9). Without the header the handler simply
 * runs. With it: a finished request is replayed, a running one answers 409 IN_USE, and a request
 * whose predecessor died resumes from the recovery point that predecessor committed.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, isAppError } from '../domain/errors.js';
import type { Db } from '../db/pool.js';
import { fingerprint, isValidIdempotencyKey } from '../idempotency/fingerprint.js';
import { beginRequest, completeRequest, recordRecoveryPoint, releaseRequest, type CompletedResponses } from '../idempotency/store.js';
import type { Recovery } from '../payments/context.js';
import { ERROR_STATUS, STORED_ERROR_CODES } from './error-status.js';
import { errorBody } from './errors.js';

export interface HandlerResult {
  status: number;
  body: unknown;
}

export interface IdempotencySettings {
  db: Db;
  lockSeconds: number;
  ttlSeconds: number;
  /** Finished responses this process has seen, replayed without the database (ADR 0010). */
  cache?: CompletedResponses;
  onReplay?: () => void;
}

export async function runIdempotent(
  req: FastifyRequest,
  reply: FastifyReply,
  scope: string,
  settings: IdempotencySettings,
  handler: (recovery: Recovery | null) => Promise<HandlerResult>,
): Promise<FastifyReply> {
  const header = req.headers['idempotency-key'];
  if (header === undefined) {
    const result = await handler(null);
    return reply.code(result.status).send(result.body);
  }
  if (typeof header !== 'string' || !isValidIdempotencyKey(header)) {
    throw new AppError('IDEMPOTENCY_KEY_INVALID', 'Idempotency-Key must be 1 to 255 printable ASCII characters.');
  }
  const path = req.url.split('?')[0]!;
  const begun = await beginRequest(settings.db, {
    scope,
    key: header,
    fingerprint: fingerprint(req.method, path, req.body ?? null),
    method: req.method,
    path,
    lockSeconds: settings.lockSeconds,
    ttlSeconds: settings.ttlSeconds,
  }, settings.cache);
  if (begun.kind === 'replay') {
    settings.onReplay?.();
    // Nothing is created by a replay, so 201 is answered as 200.
    return reply
      .header('Idempotent-Replayed', 'true')
      .code(begun.status === 201 ? 200 : begun.status)
      .send(begun.body);
  }
  const { ref } = begun;
  const recovery: Recovery = {
    resumed: begun.resumed,
    resourceId: begun.resourceId,
    record: (tx, resourceId) => recordRecoveryPoint(tx, ref, resourceId),
  };
  let result: HandlerResult;
  try {
    result = await handler(recovery);
  } catch (err) {
    if (isAppError(err) && STORED_ERROR_CODES.has(err.code)) {
      await completeRequest(settings.db, ref, ERROR_STATUS[err.code], errorBody(err, String(req.id)), settings.cache);
    } else {
      await releaseRequest(settings.db, ref).catch(() => undefined);
    }
    throw err;
  }
  await completeRequest(settings.db, ref, result.status, result.body, settings.cache);
  return reply.code(result.status).send(result.body);
}
