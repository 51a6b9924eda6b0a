/**
 * The Connector port: the only way Switchyard talks to a payment provider.
 *
 * Connectors never throw for anything the provider or the network did: every call resolves to an
 * outcome. `unknown` means the request may have reached the provider (timeout, reset) and must
 * never be treated as a failure; `error` with `charged: false` means the provider certainly did
 * not act (connection refused, a definite non-charging error) so failing over is safe.
 */
export type ConnectorOperation = 'authorize' | 'capture' | 'void' | 'refund';

export type ProviderStatus = 'authorized' | 'captured' | 'pending' | 'voided' | 'refunded';

export type ConnectorOutcome =
  | { outcome: 'succeeded'; providerReference: string; providerStatus: ProviderStatus; raw?: unknown }
  | { outcome: 'pending'; providerReference: string; raw?: unknown }
  | { outcome: 'declined'; code: string; message: string; providerReference?: string; raw?: unknown }
  | { outcome: 'error'; charged: false; code: string; message: string; raw?: unknown }
  | { outcome: 'unknown'; reason: 'timeout' | 'network' | 'provider_error'; message: string };

export type SyncOutcome = ConnectorOutcome | { outcome: 'not_found' };

export interface AuthorizeRequest {
  /** The attempt id, sent as the provider-side idempotency key. */
  attemptId: string;
  paymentId: string;
  amount: number;
  currency: string;
  paymentMethod: string;
  paymentMethodToken: string;
  /** true: authorize and capture in one step (capture_method automatic). */
  capture: boolean;
  traceHeaders?: Record<string, string>;
}

export interface CaptureRequest {
  attemptId: string;
  paymentId: string;
  providerReference: string;
  amount: number;
  currency: string;
  traceHeaders?: Record<string, string>;
}

export interface VoidRequest {
  attemptId: string;
  paymentId: string;
  providerReference: string;
  traceHeaders?: Record<string, string>;
}

export interface RefundRequest {
  attemptId: string;
  paymentId: string;
  refundId: string;
  providerReference: string;
  amount: number;
  currency: string;
  traceHeaders?: Record<string, string>;
}

export interface SyncRequest {
  attemptId: string;
  paymentId: string;
  operation: ConnectorOperation;
  providerReference?: string | null;
}

/** A provider webhook normalized to what Switchyard needs. */
export interface NormalizedProviderEvent {
  providerEventId: string;
  providerReference: string | null;
  /** Our attempt id when the provider echoes it back (the idempotency key). */
  attemptId: string | null;
  paymentId: string | null;
  type: 'authorized' | 'captured' | 'failed' | 'voided' | 'refunded' | 'refund_failed' | 'other';
  amount?: number;
  failureCode?: string;
  occurredAt: string;
}

export interface Connector {
  readonly name: string;
  authorize(req: AuthorizeRequest): Promise<ConnectorOutcome>;
  capture(req: CaptureRequest): Promise<ConnectorOutcome>;
  void(req: VoidRequest): Promise<ConnectorOutcome>;
  refund(req: RefundRequest): Promise<ConnectorOutcome>;
  /** Status of one earlier attempt, looked up by its idempotency key. */
  sync(req: SyncRequest): Promise<SyncOutcome>;
  verifyWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): boolean;
  parseWebhook(rawBody: Buffer): NormalizedProviderEvent[];
}
