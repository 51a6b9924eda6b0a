import Stripe from 'stripe';
import type { ConnectorOutcome, SyncOutcome } from '../port.js';
import { classifyConnectionError } from './transport.js';

/**
 * How Stripe's answers become outcomes. The rule that matters: anything that may have reached
 * Stripe without a definite answer is `unknown`, never `error`, because `error` (charged: false)
 * allows failing over to another connector.
 */

type PaymentIntent = Stripe.PaymentIntent;
type Refund = Stripe.Refund;

const { errors } = Stripe;

function declineCode(pi: PaymentIntent): string {
  const e = pi.last_payment_error;
  return e?.decline_code || e?.code || 'declined';
}

/** What a PaymentIntent says about the authorization (create + confirm) that made it. */
export function authorizeOutcome(pi: PaymentIntent, fromSync = false): ConnectorOutcome {
  const ref = pi.id;
  switch (pi.status) {
    case 'requires_capture':
      return { outcome: 'succeeded', providerReference: ref, providerStatus: 'authorized', raw: pi };
    case 'succeeded':
      // Seen from a sync, a manual-capture intent that is succeeded was authorized by this attempt
      // and captured since (by a later capture attempt): the authorization itself is what we report.
      return {
        outcome: 'succeeded',
        providerReference: ref,
        providerStatus: fromSync && pi.capture_method === 'manual' ? 'authorized' : 'captured',
        raw: pi,
      };
    case 'processing':
      return { outcome: 'pending', providerReference: ref, raw: pi };
    case 'requires_action':
      // 3-D Secure or another customer step: a server-side authorization cannot complete it.
      return {
        outcome: 'declined',
        code: 'authentication_required',
        message: 'The payment requires a customer action (such as 3-D Secure) that a server-side authorization cannot complete.',
        providerReference: ref,
        raw: pi,
      };
    case 'requires_payment_method':
      return {
        outcome: 'declined',
        code: declineCode(pi),
        message: pi.last_payment_error?.message ?? 'The payment method was declined.',
        providerReference: ref,
        raw: pi,
      };
    case 'canceled':
      if (pi.last_payment_error) {
        return { outcome: 'declined', code: declineCode(pi), message: pi.last_payment_error.message ?? 'Declined.', providerReference: ref, raw: pi };
      }
      // Authorized first (a charge exists), voided since: the authorization itself succeeded.
      if (pi.latest_charge) return { outcome: 'succeeded', providerReference: ref, providerStatus: 'authorized', raw: pi };
      return { outcome: 'declined', code: 'canceled', message: 'The PaymentIntent was canceled before it was authorized.', providerReference: ref, raw: pi };
    case 'requires_confirmation':
      // We always create with confirm: true; an unconfirmed intent cannot have moved money.
      return { outcome: 'error', charged: false, code: 'payment_intent_unconfirmed', message: 'Stripe left the PaymentIntent unconfirmed.', raw: pi };
    default:
      return { outcome: 'unknown', reason: 'provider_error', message: `Unexpected PaymentIntent status '${String(pi.status)}'.` };
  }
}

export function captureOutcome(pi: PaymentIntent): ConnectorOutcome {
  if (pi.status === 'succeeded') return { outcome: 'succeeded', providerReference: pi.id, providerStatus: 'captured', raw: pi };
  if (pi.status === 'processing') return { outcome: 'pending', providerReference: pi.id, raw: pi };
  return { outcome: 'unknown', reason: 'provider_error', message: `Capture answered with PaymentIntent status '${pi.status}'.` };
}

export function voidOutcome(pi: PaymentIntent): ConnectorOutcome {
  if (pi.status === 'canceled') return { outcome: 'succeeded', providerReference: pi.id, providerStatus: 'voided', raw: pi };
  return { outcome: 'unknown', reason: 'provider_error', message: `Cancel answered with PaymentIntent status '${pi.status}'.` };
}

export function refundOutcome(refund: Refund): ConnectorOutcome {
  switch (refund.status) {
    case 'succeeded':
      return { outcome: 'succeeded', providerReference: refund.id, providerStatus: 'refunded', raw: refund };
    case 'pending':
    case 'requires_action':
      return { outcome: 'pending', providerReference: refund.id, raw: refund };
    case 'failed':
    case 'canceled':
      return {
        outcome: 'declined',
        code: refund.failure_reason ?? `refund_${refund.status}`,
        message: `The refund ${refund.status}.`,
        providerReference: refund.id,
        raw: refund,
      };
    default:
      return { outcome: 'unknown', reason: 'provider_error', message: `Unexpected refund status '${String(refund.status)}'.` };
  }
}

function rawOf(err: InstanceType<typeof errors.StripeError>): unknown {
  // The raw error minus the response headers the SDK attaches to it.
  const { headers: _headers, ...raw } = (err.raw ?? {}) as Record<string, unknown>;
  return raw;
}

/**
 * A thrown error from a call that asked Stripe to act. Never throws.
 */
export function outcomeFromError(err: unknown): ConnectorOutcome {
  if (err instanceof errors.StripeCardError) {
    // A card error on confirm carries the intent it left in requires_payment_method.
    const ref = err.payment_intent?.id;
    return {
      outcome: 'declined',
      code: err.decline_code || err.code || 'card_declined',
      message: err.message || 'The card was declined.',
      ...(ref ? { providerReference: ref } : {}),
      raw: rawOf(err),
    };
  }
  if (err instanceof errors.StripeIdempotencyError) {
    // The key (our attempt id) was used before with other parameters: this request did nothing,
    // but the earlier one under the same attempt id may have. Only a sync can tell.
    return { outcome: 'unknown', reason: 'provider_error', message: `Idempotency key reused with other parameters: ${err.message}` };
  }
  if (err instanceof errors.StripeRateLimitError) {
    return { outcome: 'error', charged: false, code: err.code ?? 'rate_limited', message: err.message || 'Rate limited by Stripe.', raw: rawOf(err) };
  }
  if (
    err instanceof errors.StripeInvalidRequestError ||
    err instanceof errors.StripeAuthenticationError ||
    err instanceof errors.StripePermissionError
  ) {
    const fallback = err instanceof errors.StripeInvalidRequestError ? 'invalid_request' : err instanceof errors.StripeAuthenticationError ? 'authentication_failed' : 'permission_denied';
    return { outcome: 'error', charged: false, code: err.code ?? fallback, message: err.message || `Stripe refused the request (${err.statusCode ?? '?'}).`, raw: rawOf(err) };
  }
  if (err instanceof errors.StripeConnectionError) {
    const failure = classifyConnectionError(err);
    switch (failure.kind) {
      case 'unreachable':
        return { outcome: 'error', charged: false, code: 'connector_unreachable', message: failure.message };
      case 'timeout':
        return { outcome: 'unknown', reason: 'timeout', message: failure.message };
      case 'network':
        return { outcome: 'unknown', reason: 'network', message: failure.message };
    }
  }
  if (err instanceof errors.StripeError) {
    // StripeAPIError (5xx, 409 idempotency_key_in_use, an unreadable answer) and anything else.
    return { outcome: 'unknown', reason: 'provider_error', message: err.message || `Stripe answered ${err.statusCode ?? 'an error'}.` };
  }
  // Not a Stripe error at all (a bug, or the SDK refusing before sending): we cannot prove
  // nothing was sent, so stay on the cautious side.
  return { outcome: 'unknown', reason: 'network', message: err instanceof Error ? err.message : String(err) };
}

/** A failed lookup says nothing about the attempt: even "unreachable" only means not now. */
export function syncOutcomeFromLookupError(err: unknown): SyncOutcome {
  if (err instanceof errors.StripeInvalidRequestError && err.statusCode === 404 && err.code === 'resource_missing') {
    return { outcome: 'not_found' };
  }
  if (err instanceof errors.StripeConnectionError && classifyConnectionError(err).kind === 'timeout') {
    return { outcome: 'unknown', reason: 'timeout', message: err.message };
  }
  if (err instanceof errors.StripeConnectionError) return { outcome: 'unknown', reason: 'network', message: err.message };
  return { outcome: 'unknown', reason: 'provider_error', message: err instanceof Error ? err.message : String(err) };
}
