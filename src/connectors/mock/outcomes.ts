import type { ConnectorOperation, ConnectorOutcome, ProviderStatus, SyncOutcome } from '../port.js';
import type { Exchange } from './http.js';

/**
 * How the mock provider's answers become outcomes. The rule that matters: anything that may have
 * reached the provider without a definite answer is `unknown`, never `error`, because `error`
 * (charged: false) allows failing over to another connector.
 */

type Json = Record<string, unknown>;

const asObject = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function providerError(body: unknown): { code?: string; message?: string; chargeId?: string } {
  const e = asObject(asObject(body).error);
  return { code: asString(e.code), message: asString(e.message), chargeId: asString(e.charge_id) };
}

// The one 5xx the provider promises was raised before acting.
export const NOT_CHARGED_CODE = 'provider_unavailable_not_charged';

function successStatus(operation: ConnectorOperation, body: Json): ProviderStatus {
  switch (operation) {
    case 'authorize':
      return body.status === 'captured' ? 'captured' : 'authorized';
    case 'capture':
      return 'captured';
    case 'void':
      return 'voided';
    case 'refund':
      return 'refunded';
  }
}

export function outcomeFromResponse(operation: ConnectorOperation, status: number, body: unknown): ConnectorOutcome {
  const b = asObject(body);
  const id = asString(b.id);
  if (status === 200 && id) return { outcome: 'succeeded', providerReference: id, providerStatus: successStatus(operation, b), raw: body };
  if (status === 202 && id) return { outcome: 'pending', providerReference: id, raw: body };
  const err = providerError(body);
  if (status === 402) {
    return {
      outcome: 'declined',
      code: err.code ?? 'declined',
      message: err.message ?? 'Declined by the provider.',
      ...(err.chargeId ? { providerReference: err.chargeId } : {}),
      raw: body,
    };
  }
  // The provider looked at this request and refused it (bad token, amount, state): an answer about
  // this payment, like a decline — not a sign the provider is unhealthy, and no reason to fail over.
  if (status === 400 || status === 404 || status === 422) {
    return { outcome: 'declined', code: err.code ?? `http_${status}`, message: err.message ?? `Provider refused the request (${status}).`, raw: body };
  }
  // Our key was already used for another request: that one may have charged, so this is not a
  // certain non-charge and must never allow failover.
  if (status === 409 && err.code === 'idempotency_conflict') {
    return { outcome: 'unknown', reason: 'provider_error', message: err.message ?? 'The provider saw this idempotency key with another request.' };
  }
  if (status >= 400 && status < 500) {
    return { outcome: 'error', charged: false, code: err.code ?? `http_${status}`, message: err.message ?? `Provider answered ${status}.`, raw: body };
  }
  if (status >= 500 && err.code === NOT_CHARGED_CODE) {
    return { outcome: 'error', charged: false, code: NOT_CHARGED_CODE, message: err.message ?? 'Provider unavailable; nothing was charged.', raw: body };
  }
  // A 5xx, or a success without a charge id: the provider may or may not have acted.
  return { outcome: 'unknown', reason: 'provider_error', message: err.message ?? `Provider answered ${status}.` };
}

export function outcomeFromExchange(operation: ConnectorOperation, x: Exchange): ConnectorOutcome {
  switch (x.kind) {
    case 'response':
      return outcomeFromResponse(operation, x.status, x.body);
    case 'unreachable':
      return { outcome: 'error', charged: false, code: 'connector_unreachable', message: `${x.code}: ${x.message}` };
    case 'timeout':
      return { outcome: 'unknown', reason: 'timeout', message: x.message };
    case 'network':
      return { outcome: 'unknown', reason: 'network', message: x.message };
  }
}

/** The charge as it is now decides an operation that was accepted as pending. */
function settledOutcome(stored: Json, charge: Json): ConnectorOutcome | null {
  const id = asString(charge.id);
  if (!id) return null;
  switch (charge.status) {
    case 'pending':
      return { outcome: 'pending', providerReference: id, raw: stored };
    case 'authorized':
    case 'captured':
      return { outcome: 'succeeded', providerReference: id, providerStatus: charge.status, raw: stored };
    // Authorized first, voided since: the authorization itself succeeded.
    case 'voided':
      return { outcome: 'succeeded', providerReference: id, providerStatus: 'authorized', raw: stored };
    case 'failed':
      return {
        outcome: 'declined',
        code: asString(charge.failure_code) ?? 'declined',
        message: 'The asynchronous payment failed.',
        providerReference: id,
        raw: stored,
      };
    default:
      return null;
  }
}

const isOperation = (v: unknown): v is ConnectorOperation =>
  v === 'authorize' || v === 'capture' || v === 'void' || v === 'refund';

export function syncOutcomeFromExchange(requested: ConnectorOperation, x: Exchange): SyncOutcome {
  if (x.kind !== 'response') {
    // A failed lookup says nothing about the attempt: even "unreachable" only means not now.
    return { outcome: 'unknown', reason: x.kind === 'timeout' ? 'timeout' : 'network', message: x.message };
  }
  if (x.status === 404 && providerError(x.body).code === 'not_found') return { outcome: 'not_found' };
  if (x.status !== 200) {
    return { outcome: 'unknown', reason: 'provider_error', message: `Operation lookup answered ${x.status}.` };
  }
  const stored = asObject(x.body);
  const operation = isOperation(stored.operation) ? stored.operation : requested;
  const statusCode = typeof stored.status_code === 'number' ? stored.status_code : 0;
  if (statusCode === 202 && stored.charge) {
    const settled = settledOutcome(stored, asObject(stored.charge));
    if (settled) return settled;
  }
  const outcome = outcomeFromResponse(operation, statusCode, stored.body);
  return outcome.outcome === 'unknown' ? outcome : { ...outcome, raw: stored };
}
