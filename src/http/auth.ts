import type { FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.js';
import type { Merchant } from '../domain/merchant.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Readiness answers 503 from now on; the listener stays open until close(). */
    startDraining(): void;
  }
  interface FastifyRequest {
    merchant: Merchant | null;
    /** The payment a request created, for its log line. */
    paymentId: string | null;
  }
}

/** The key from `X-Api-Key: …` or `Authorization: Bearer …`, or null. */
export function presentedKey(req: FastifyRequest): string | null {
  const header = req.headers['x-api-key'];
  if (typeof header === 'string' && header.length > 0) return header;
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1]!;
  }
  return null;
}

export function requireKey(req: FastifyRequest): string {
  const key = presentedKey(req);
  if (!key) throw new AppError('AUTH_MISSING_API_KEY', 'Send your API key as X-Api-Key or Authorization: Bearer.');
  return key;
}

export function invalidKey(): AppError {
  return new AppError('AUTH_INVALID_API_KEY', 'The API key is not valid.');
}
