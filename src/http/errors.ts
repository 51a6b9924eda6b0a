/**
 * Turns every failure into the documented error JSON: {"error": {code, message, layer?, details?,
 * request_id}}. No stack trace or internal message ever leaves the process.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError, type ErrorCode } from '../domain/errors.js';
import { ERROR_STATUS } from './error-status.js';

export function errorBody(err: AppError, requestId: string): Record<string, unknown> {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.layer ? { layer: err.layer } : {}),
      ...(err.details ? { details: err.details } : {}),
      request_id: requestId,
    },
  };
}

export function sendError(reply: FastifyReply, err: AppError): FastifyReply {
  if (err.retryAfter !== undefined) reply.header('Retry-After', String(err.retryAfter));
  return reply.code(ERROR_STATUS[err.code]).send(errorBody(err, String(reply.request.id)));
}

interface ValidationIssue {
  /** The zod issue code (fastify-type-provider-zod puts it here, the rest of the issue in params). */
  keyword?: string;
  instancePath: string;
  message?: string;
  params: { issue?: { code: string; path?: PropertyKey[]; keys?: string[] }; keys?: string[] };
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

const FIELD_CODES: Record<string, ErrorCode> = {
  amount: 'SCHEMA_INVALID_AMOUNT',
  currency: 'SCHEMA_INVALID_CURRENCY',
  'customer.email': 'SCHEMA_INVALID_EMAIL',
  'customer.phone': 'SCHEMA_INVALID_PHONE',
};

/** Maps the first zod issue of a request to a stable schema error code. */
export function schemaError(issues: ValidationIssue[], context: string, input: unknown): AppError {
  const first = issues[0]!;
  const issue = first.params.issue ?? (first.keyword ? { code: first.keyword, keys: first.params.keys } : undefined);
  const path = issue?.path ?? first.instancePath.split('/').filter(Boolean);
  const field = path.map(String).join('.');
  const where = context === 'body' ? '' : `${context} `;
  if (issue?.code === 'unrecognized_keys') {
    const keys = issue.keys ?? [];
    const full = keys.map((k) => (field ? `${field}.${k}` : k));
    return new AppError('SCHEMA_INVALID_FIELD', `Unknown ${where}field${keys.length > 1 ? 's' : ''}: ${full.join(', ')}.`, {
      layer: 'schema',
      details: { fields: full },
    });
  }
  if (valueAt(input, path) === undefined && (issue?.code === 'invalid_type' || issue === undefined)) {
    return new AppError('SCHEMA_MISSING_FIELD', `Missing required ${where}field: ${field || '(body)'}.`, { layer: 'schema', details: { field } });
  }
  const code: ErrorCode = (context === 'body' && FIELD_CODES[field]) || 'SCHEMA_INVALID_FIELD';
  return new AppError(code, `Invalid ${where}field ${field || '(body)'}: ${first.message ?? 'invalid value'}.`, {
    layer: 'schema',
    details: { field },
  });
}

const PG_UNIQUE_CODES: Record<string, ErrorCode> = {
  payments_live_reference_uidx: 'PAYMENT_REFERENCE_IN_USE',
  payment_attempts_one_open_authorization_uidx: 'PAYMENT_INVALID_STATE',
  payment_attempts_one_authorization_uidx: 'PAYMENT_INVALID_STATE',
};

/** Classifies any thrown value as an AppError; unknown failures become INTERNAL_ERROR. */
export function toAppError(err: unknown, request: FastifyRequest): AppError {
  if (err instanceof AppError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const ctx = (err as FastifyError).validationContext ?? 'body';
    const input = ctx === 'body' ? request.body : ctx === 'querystring' ? request.query : ctx === 'params' ? request.params : request.headers;
    return schemaError(err.validation as unknown as ValidationIssue[], ctx, input);
  }
  const e = err as FastifyError & { constraint?: string; type?: string };
  if (e.code === '23505' && e.constraint && PG_UNIQUE_CODES[e.constraint]) {
    return new AppError(PG_UNIQUE_CODES[e.constraint]!, 'A conflicting request changed this resource at the same time; retry.', {});
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', 'The request body is larger than the limit.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError('INVALID_JSON', 'The request body is not valid JSON.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError('INVALID_JSON', 'The request body does not match its Content-Length.');
  }
  if (e instanceof SyntaxError || e.statusCode === 400) {
    return new AppError('INVALID_JSON', 'The request body is not valid JSON.');
  }
  return new AppError('INTERNAL_ERROR', 'Something went wrong on our side; the request may be retried with the same Idempotency-Key.');
}
