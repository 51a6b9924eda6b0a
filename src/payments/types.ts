import type { PaymentStatus } from '../domain/state-machine.js';

export interface PaymentRow {
  id: string;
  merchant_id: string;
  status: PaymentStatus;
  amount: number;
  currency: string;
  amount_capturable: number;
  amount_captured: number;
  amount_refunded: number;
  payment_method: string;
  payment_method_token: string;
  reference_id: string;
  customer: { email: string; phone: string; name?: string };
  capture_method: 'automatic' | 'manual';
  connector: string | null;
  provider_reference: string | null;
  description: string | null;
  metadata: Record<string, unknown>;
  failure_code: string | null;
  failure_message: string | null;
  reconciliation_status: 'synced' | 'pending_reconciliation' | 'manual_review';
  version: number;
  event_sequence: number;
  created_at: Date;
  updated_at: Date;
}

export interface AttemptRow {
  id: string;
  payment_id: string;
  merchant_id: string;
  refund_id: string | null;
  operation: 'authorize' | 'capture' | 'void' | 'refund';
  connector: string;
  status: 'started' | 'succeeded' | 'failed' | 'unknown';
  amount: number | null;
  provider_reference: string | null;
  provider_status: string | null;
  error_code: string | null;
  error_message: string | null;
  request: unknown;
  response: unknown;
  created_at: Date;
  completed_at: Date | null;
  reconcile_attempts: number;
  next_reconcile_at: Date | null;
}

export interface RefundRow {
  id: string;
  payment_id: string;
  merchant_id: string;
  amount: number;
  currency: string;
  status: 'pending' | 'succeeded' | 'failed';
  reason: string | null;
  failure_code: string | null;
  failure_message: string | null;
  provider_reference: string | null;
  created_at: Date;
  updated_at: Date;
}

/** Who caused a change, for the audit trail. */
export interface Actor {
  actor: string; // 'merchant:mer_…', 'provider:mock', 'worker', 'admin'
  requestId: string | null;
}

export function paymentToApi(p: PaymentRow): Record<string, unknown> {
  return {
    id: p.id,
    object: 'payment',
    status: p.status,
    amount: p.amount,
    currency: p.currency,
    amount_capturable: p.amount_capturable,
    amount_captured: p.amount_captured,
    amount_refunded: p.amount_refunded,
    payment_method: p.payment_method,
    reference_id: p.reference_id,
    customer: p.customer,
    capture_method: p.capture_method,
    connector: p.connector,
    description: p.description,
    metadata: p.metadata,
    failure_code: p.failure_code,
    failure_message: p.failure_message,
    reconciliation_status: p.reconciliation_status,
    version: p.version,
    created_at: p.created_at.toISOString(),
    updated_at: p.updated_at.toISOString(),
  };
}

export function refundToApi(r: RefundRow): Record<string, unknown> {
  return {
    id: r.id,
    object: 'refund',
    payment_id: r.payment_id,
    amount: r.amount,
    currency: r.currency,
    status: r.status,
    reason: r.reason,
    failure_code: r.failure_code,
    failure_message: r.failure_message,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  };
}

export function attemptToApi(a: AttemptRow): Record<string, unknown> {
  return {
    id: a.id,
    object: 'payment_attempt',
    payment_id: a.payment_id,
    refund_id: a.refund_id,
    operation: a.operation,
    connector: a.connector,
    status: a.status,
    amount: a.amount,
    provider_reference: a.provider_reference,
    error_code: a.error_code,
    error_message: a.error_message,
    created_at: a.created_at.toISOString(),
    completed_at: a.completed_at?.toISOString() ?? null,
  };
}
