/**
 * Errors are values with a stable code. The HTTP status of each code lives in one table
 * (src/http/error-status.ts); domain and use-case code never speaks HTTP.
 */
export type ErrorCode =
  | 'SCHEMA_MISSING_FIELD'
  | 'SCHEMA_INVALID_FIELD'
  | 'SCHEMA_INVALID_AMOUNT'
  | 'SCHEMA_INVALID_CURRENCY'
  | 'SCHEMA_INVALID_EMAIL'
  | 'SCHEMA_INVALID_PHONE'
  | 'SCHEMA_SENSITIVE_DATA'
  | 'INVALID_JSON'
  | 'WEBHOOK_SIGNATURE_INVALID'
  | 'WEBHOOK_PROCESSING_FAILED'
  | 'IDEMPOTENCY_KEY_INVALID'
  | 'AUTH_MISSING_API_KEY'
  | 'AUTH_INVALID_API_KEY'
  | 'ENTITY_MERCHANT_INACTIVE'
  | 'ENTITY_MERCHANT_KYC_INVALID'
  | 'RESOURCE_NOT_FOUND'
  | 'ROUTE_NOT_FOUND'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'IDEMPOTENCY_KEY_IN_USE'
  | 'PAYMENT_REFERENCE_IN_USE'
  | 'PAYMENT_INVALID_STATE'
  | 'WEBHOOK_DELIVERY_PENDING'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'RULE_AMOUNT_ABOVE_MAX'
  | 'RULE_AMOUNT_BELOW_MIN'
  | 'RULE_INVALID_PAYMENT_METHOD'
  | 'RULE_KYC_TIER_LIMIT'
  | 'RULE_CAPTURE_AMOUNT_EXCEEDS'
  | 'RULE_REFUND_AMOUNT_EXCEEDS'
  | 'PAYMENT_DECLINED'
  | 'RISK_VELOCITY_EXCEEDED'
  | 'RATE_LIMITED'
  | 'CONNECTOR_UNAVAILABLE'
  | 'CONNECTOR_ERROR'
  | 'OVERLOADED'
  | 'READ_ONLY'
  | 'INTERNAL_ERROR';

export type ValidationLayer = 'schema' | 'entity' | 'business' | 'compliance' | 'risk';

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly layer: ValidationLayer | undefined;
  /** Seconds, sent as Retry-After. */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: Record<string, unknown>; layer?: ValidationLayer; retryAfter?: number } = {},
  ) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.details = opts.details;
    this.layer = opts.layer;
    this.retryAfter = opts.retryAfter;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
