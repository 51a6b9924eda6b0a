import type { NormalizedProviderEvent } from '../port.js';

/**
 * Stripe webhook events normalized for Switchyard. Parsing works on the JSON alone (the caller has
 * verified the signature already), so it does not depend on the SDK's typings of every event.
 *
 * Which attempt an event belongs to: Stripe echoes the idempotency key of the API request that
 * caused an event in `event.request.idempotency_key` — that is our attempt id when the request was
 * ours (`att_…`). Events with no such request (asynchronous settlement, Dashboard actions, expiry)
 * fall back to the attempt id we put in the object's metadata, but only where that metadata names
 * the attempt the event is about: a PaymentIntent's metadata names its authorize attempt, a
 * refund's names its refund attempt. A charge's metadata (copied from the intent) never names a
 * refund attempt, so `charge.refunded` carries no attempt id unless the request echoes one.
 */

type Json = Record<string, unknown>;

const asObject = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

const ATTEMPT_ID = /^att_[0-9a-z]+$/;
const ourAttempt = (v: unknown): string | null => {
  const s = str(v);
  return s && ATTEMPT_ID.test(s) ? s : null;
};

type EventType = NormalizedProviderEvent['type'];

interface Normalized {
  type: EventType;
  providerReference: string | null;
  /** The attempt named by the object's metadata, when the event is about that attempt. */
  metadataAttempt: string | null;
  amount?: number;
  failureCode?: string;
}

function fromPaymentIntent(eventType: string, pi: Json): Normalized {
  const metadata = asObject(pi.metadata);
  const authorizeAttempt = ourAttempt(metadata.attempt_id);
  const base = { providerReference: str(pi.id) };
  switch (eventType) {
    case 'payment_intent.amount_capturable_updated':
      if (pi.status === 'requires_capture' && (num(pi.amount_capturable) ?? 0) > 0) {
        return { ...base, type: 'authorized', metadataAttempt: authorizeAttempt, amount: num(pi.amount_capturable) };
      }
      return { ...base, type: 'other', metadataAttempt: null };
    case 'payment_intent.succeeded':
      return {
        ...base,
        type: 'captured',
        // With automatic capture the authorize attempt is what captured; a manual intent was
        // captured by a later capture attempt, which only the request echo can name.
        metadataAttempt: pi.capture_method === 'manual' ? null : authorizeAttempt,
        amount: num(pi.amount_received),
      };
    case 'payment_intent.payment_failed': {
      const error = asObject(pi.last_payment_error);
      const failureCode = str(error.decline_code) ?? str(error.code) ?? 'declined';
      return { ...base, type: 'failed', metadataAttempt: authorizeAttempt, amount: num(pi.amount), failureCode };
    }
    case 'payment_intent.canceled':
      return { ...base, type: 'voided', metadataAttempt: null, amount: num(pi.amount) };
    default:
      return { ...base, type: 'other', metadataAttempt: null };
  }
}

function fromRefund(eventType: string, refund: Json): Normalized {
  const base = {
    providerReference: str(refund.payment_intent),
    metadataAttempt: ourAttempt(asObject(refund.metadata).attempt_id),
    amount: num(refund.amount),
  };
  if (refund.status === 'succeeded' && eventType !== 'refund.failed') return { ...base, type: 'refunded' };
  if (refund.status === 'failed' || refund.status === 'canceled' || eventType === 'refund.failed') {
    return { ...base, type: 'refund_failed', failureCode: str(refund.failure_reason) ?? 'refund_failed' };
  }
  return { ...base, type: 'other' };
}

function normalize(eventType: string, object: Json): Normalized {
  if (eventType.startsWith('payment_intent.')) return fromPaymentIntent(eventType, object);
  if (eventType === 'charge.refunded') {
    const providerReference = str(object.payment_intent);
    // Canceling an uncaptured intent "refunds" its uncaptured charge: that is the void, which
    // payment_intent.canceled reports; it is not a refund.
    if (object.captured === false) return { type: 'other', providerReference, metadataAttempt: null };
    // The charge: amount_refunded is the running total over all its refunds.
    return { type: 'refunded', providerReference, metadataAttempt: null, amount: num(object.amount_refunded) };
  }
  if (eventType === 'refund.created' || eventType === 'refund.updated' || eventType === 'refund.failed' || eventType === 'charge.refund.updated') {
    return fromRefund(eventType, object);
  }
  return { type: 'other', providerReference: str(object.payment_intent) ?? (object.object === 'payment_intent' ? str(object.id) : null), metadataAttempt: null };
}

/**
 * Parses a verified Stripe webhook. Throws on a body that is not a Stripe event at all, so the
 * caller can refuse it; an event type Switchyard does not act on comes back as 'other'.
 */
export function parseStripeWebhook(rawBody: Buffer): NormalizedProviderEvent[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawBody.toString('utf8'));
  } catch {
    throw new Error('stripe webhook body is not JSON');
  }
  const event = asObject(parsed);
  const id = str(event.id);
  const type = str(event.type);
  if (!id || !type || event.object !== 'event') throw new Error('stripe webhook body is not a Stripe event');
  const object = asObject(asObject(event.data).object);
  const n = normalize(type, object);
  const requestAttempt = ourAttempt(asObject(event.request).idempotency_key);
  const created = num(event.created) ?? Date.now() / 1000;
  return [
    {
      providerEventId: id,
      providerReference: n.providerReference,
      attemptId: requestAttempt ?? n.metadataAttempt,
      paymentId: str(asObject(object.metadata).payment_id),
      type: n.type,
      ...(n.amount !== undefined ? { amount: n.amount } : {}),
      ...(n.failureCode !== undefined ? { failureCode: n.failureCode } : {}),
      occurredAt: new Date(created * 1000).toISOString(),
    },
  ];
}
