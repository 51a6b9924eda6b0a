/**
 * Running one attempt against its connector. The attempt row is already committed as `started`;
 * here the network call happens outside any transaction and its outcome is applied in a new one.
 */
import { withTx } from '../db/pool.js';
import type { ConnectorOutcome } from '../connectors/port.js';
import { applyOutcome, type Applied } from './apply-outcome.js';
import { claimAttempt } from './store.js';
import type { PaymentDeps } from './context.js';
import type { Actor, AttemptRow, PaymentRow } from './types.js';

async function loadPayment(deps: PaymentDeps, id: string): Promise<PaymentRow> {
  return (await deps.db.query<PaymentRow>('SELECT * FROM payments WHERE id = $1', [id])).rows[0]!;
}

async function call(deps: PaymentDeps, p: PaymentRow, a: AttemptRow): Promise<ConnectorOutcome> {
  const connector = deps.connectors.get(a.connector);
  if (!connector) return { outcome: 'error', charged: false, code: 'connector_not_configured', message: `Connector '${a.connector}' is not configured.` };
  const base = { attemptId: a.id, paymentId: p.id };
  switch (a.operation) {
    case 'authorize':
      return connector.authorize({
        ...base,
        amount: p.amount,
        currency: p.currency,
        paymentMethod: p.payment_method,
        paymentMethodToken: p.payment_method_token,
        capture: p.capture_method === 'automatic',
      });
    case 'capture':
      return connector.capture({ ...base, providerReference: p.provider_reference ?? '', amount: a.amount ?? p.amount_capturable, currency: p.currency });
    case 'void':
      return connector.void({ ...base, providerReference: p.provider_reference ?? '' });
    case 'refund':
      return connector.refund({
        ...base,
        refundId: a.refund_id ?? '',
        providerReference: p.provider_reference ?? '',
        amount: a.amount ?? 0,
        currency: p.currency,
      });
  }
}

/**
 * Sends the attempt to its connector (the attempt id is the provider idempotency key) and applies
 * the result. `payment` is the row the attempt was created from, when the caller still has it.
 */
export async function executeAttempt(deps: PaymentDeps, attempt: AttemptRow, by: Actor, payment?: PaymentRow): Promise<Applied> {
  payment ??= await loadPayment(deps, attempt.payment_id);
  const outcome = await call(deps, payment, attempt);
  return withTx(deps.db, (tx) => applyOutcome(tx, attempt.id, outcome, by));
}

/**
 * Settles an attempt whose outcome is open (its request died, or timed out): ask the provider what
 * became of that idempotency key instead of calling blindly. Only when the provider has no record
 * of it is the request sent again — under the same key, so it still cannot take effect twice.
 */
export async function resolveAttempt(deps: PaymentDeps, attempt: AttemptRow, by: Actor): Promise<Applied> {
  await claimAttempt(deps.db, attempt.id, deps.claimSeconds);
  const connector = deps.connectors.get(attempt.connector);
  if (!connector) return executeAttempt(deps, attempt, by);
  const payment = await loadPayment(deps, attempt.payment_id);
  const status = await connector.sync({
    attemptId: attempt.id,
    paymentId: attempt.payment_id,
    operation: attempt.operation,
    providerReference: attempt.provider_reference ?? payment.provider_reference,
  });
  if (status.outcome === 'not_found') return executeAttempt(deps, attempt, by);
  return withTx(deps.db, (tx) => applyOutcome(tx, attempt.id, status, by));
}
