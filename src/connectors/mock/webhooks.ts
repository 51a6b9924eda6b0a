import type { NormalizedProviderEvent } from '../port.js';

type EventType = NormalizedProviderEvent['type'];

function normalizedType(type: unknown, status: unknown): EventType {
  switch (type) {
    case 'charge.succeeded':
      return status === 'captured' ? 'captured' : 'authorized';
    case 'charge.failed':
      return 'failed';
    case 'charge.captured':
      return 'captured';
    case 'charge.voided':
      return 'voided';
    case 'charge.refunded':
      return 'refunded';
    default:
      return 'other';
  }
}

const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);

/**
 * Parses a verified mock-provider webhook. Throws on a body that is not a mock event at all, so
 * the caller can refuse it; an unfamiliar event type comes back as 'other'.
 */
export function parseMockWebhook(rawBody: Buffer): NormalizedProviderEvent[] {
  let event: unknown;
  try {
    event = JSON.parse(rawBody.toString('utf8'));
  } catch {
    throw new Error('mock webhook body is not JSON');
  }
  if (!event || typeof event !== 'object') throw new Error('mock webhook body is not an object');
  const e = event as { id?: unknown; type?: unknown; created?: unknown; data?: unknown };
  const id = str(e.id);
  if (!id) throw new Error('mock webhook has no event id');
  const data = (e.data && typeof e.data === 'object' ? e.data : {}) as Record<string, unknown>;
  const created = typeof e.created === 'number' && Number.isFinite(e.created) ? e.created : Date.now() / 1000;
  return [
    {
      providerEventId: id,
      providerReference: str(data.charge_id),
      attemptId: str(data.idempotency_key),
      paymentId: str(data.payment_id),
      type: normalizedType(e.type, data.status),
      ...(typeof data.amount === 'number' ? { amount: data.amount } : {}),
      ...(str(data.failure_code) ? { failureCode: str(data.failure_code)! } : {}),
      occurredAt: new Date(created * 1000).toISOString(),
    },
  ];
}
