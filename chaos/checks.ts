/**
 * The invariants, checked after the quiet period against the database, the mock provider's own
 * ledger (its tables, same database), the webhook receiver's records and what the clients saw.
 * Every check yields a count and a few examples; any non-zero count is a violation.
 */
import type { Db } from '../src/db/pool.js';
import { canTransition, PAYMENT_STATUSES, type PaymentStatus } from '../src/domain/state-machine.js';
import type { WebhookReceiver } from './receiver.js';
import type { Observations } from './workload.js';

export interface CheckResult {
  name: string;
  description: string;
  violations: number;
  examples: unknown[];
}

export interface Warning {
  name: string;
  count: number;
  examples: unknown[];
}

interface PaymentLedgerRow {
  id: string;
  merchant_id: string;
  reference_id: string;
  status: PaymentStatus;
  amount: number;
  amount_captured: number;
  amount_capturable: number;
  amount_refunded: number;
  reconciliation_status: string;
  connector: string | null;
  payment_method_token: string;
  auth_n: number;
  auth_amount: number;
  capture_n: number;
  capture_amount: number;
  void_n: number;
  refund_n: number;
  refund_amount: number;
  refunds_succeeded: number;
  refunds_live: number;
}

const MAX_EXAMPLES = 8;

class Check {
  violations = 0;
  examples: unknown[] = [];
  constructor(
    readonly name: string,
    readonly description: string,
  ) {}
  add(example: unknown): void {
    this.violations += 1;
    if (this.examples.length < MAX_EXAMPLES) this.examples.push(example);
  }
  result(): CheckResult {
    return { name: this.name, description: this.description, violations: this.violations, examples: this.examples };
  }
}

const statusEvent = (to: string) => (to === 'pending' ? 'payment.created' : `payment.${to}`);

export interface CheckInput {
  db: Db;
  receiver: WebhookReceiver;
  obs: Observations;
  unexpectedExits: { name: string; at: number; code: number | null; signal: string | null; tail: string }[];
}

export interface CheckOutput {
  checks: CheckResult[];
  warnings: Warning[];
  counts: Record<string, number>;
  /** The whole record of a few payments named by violations: the reproduction material. */
  stories: Record<string, unknown>[];
}

/** Everything the database and the provider know about one payment, in time order. */
export async function paymentStory(db: Db, paymentId: string): Promise<Record<string, unknown>> {
  const q = async (sql: string) => (await db.query(sql, [paymentId])).rows;
  const t = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')`;
  return {
    payment: (await q(`SELECT id, merchant_id, reference_id, status, amount, amount_captured, amount_refunded, capture_method, connector, provider_reference, payment_method_token, reconciliation_status, metadata->>'chaos_flow' AS flow, ${t('created_at')} AS created FROM payments WHERE id = $1`))[0],
    history: await q(`SELECT from_status, to_status, cause, actor, request_id, ${t('created_at')} AS at FROM payment_status_history WHERE payment_id = $1 ORDER BY id`),
    attempts: await q(`SELECT id, operation, connector, status, amount, error_code, provider_reference, provider_status, reconcile_attempts, ${t('created_at')} AS created, ${t('completed_at')} AS completed FROM payment_attempts WHERE payment_id = $1 ORDER BY id`),
    provider_ledger: await q(`SELECT operation, amount, idempotency_key, provider_reference, ${t('created_at')} AS at FROM mock_provider_ledger WHERE payment_id = $1 ORDER BY id`),
    provider_operations: await q(`SELECT idempotency_key, operation, mode, response_status, charge_id, ${t('created_at')} AS at FROM mock_provider_operations WHERE payment_id = $1 ORDER BY created_at`),
    refunds: await q(`SELECT id, amount, status, failure_code, ${t('created_at')} AS created FROM refunds WHERE payment_id = $1 ORDER BY id`),
    idempotency_keys: await q(`SELECT key, path, state, recovery_point, response_status, ${t('created_at')} AS created, ${t('updated_at')} AS updated FROM idempotency_keys WHERE resource_id = $1 OR path LIKE '/v1/payments/' || $1 || '/%' ORDER BY created_at`),
    events: await q(`SELECT id, type, sequence, correlation_id, ${t('created_at')} AS at FROM events WHERE payment_id = $1 ORDER BY sequence`),
    provider_events: await q(`SELECT provider_event_id, type, status, result, attempt_id, ${t('received_at')} AS at FROM provider_events WHERE payment_id = $1 ORDER BY received_at`),
  };
}

export async function runChecks({ db, receiver, obs, unexpectedExits }: CheckInput): Promise<CheckOutput> {
  const q = async <T>(sql: string, values: unknown[] = []) => (await db.query(sql, values)).rows as T[];

  const doubleCharge = new Check('double_charge', 'a payment authorized more than once at the provider, or two charged payments for one order reference');
  const lostCharge = new Check('lost_charge', 'charged at the provider but failed, canceled without a void, or still pending/processing here (and not in manual review)');
  const phantom = new Check('phantom_charge', 'authorized/captured/settled/refunded here with no authorization at the provider');
  const amounts = new Check('amount_mismatch', "the provider's captured/refunded totals differ from amount_captured/amount_refunded");
  const attemptLedger = new Check('attempt_vs_ledger', 'a provider effect whose attempt is not succeeded, a succeeded attempt the provider never performed, or an effect under no attempt');
  const history = new Check('invalid_history', 'a status history that is not a path of the state machine, skips, regresses or ends elsewhere than the payment');
  const refundsOver = new Check('refunds_above_capture', 'pending + succeeded refunds above amount_captured, or amount_refunded not the sum of succeeded refunds');
  const open = new Check('unresolved_after_quiet', 'attempts started/unknown, refunds pending, payments processing or provider charges pending after the quiet period');
  const lostEvent = new Check('lost_event', 'a committed transition (history row, refund) without its outbox event');
  const undelivered = new Check('undelivered_event', 'an event never accepted (2xx) by the subscribed receiver, deliveries not dropped');
  const signatures = new Check('bad_webhook', 'a webhook with a bad signature or a webhook-id other than its event id');
  const idempotency = new Check('idempotency', 'one idempotency key answered with two different resources, or a live-reference duplicate');
  const observed = new Check('observed_state_lost', 'a client was answered a payment or refund status that the database does not have in its history / final state');
  const clientAnomaly = new Check('client_anomaly', 'the API accepted something it must refuse (refund above capture, cancel of a captured payment)');
  const crashes = new Check('process_crash', 'an api/worker/provider process exited without being killed by the harness');

  // --- the provider's ledger against each payment -------------------------------------------
  const rows = await q<PaymentLedgerRow>(`
    SELECT p.id, p.merchant_id, p.reference_id, p.status, p.amount, p.amount_captured, p.amount_capturable, p.amount_refunded,
           p.reconciliation_status, p.connector, p.payment_method_token,
           COALESCE(l.auth_n, 0)::int AS auth_n, COALESCE(l.auth_amount, 0)::bigint AS auth_amount,
           COALESCE(l.capture_n, 0)::int AS capture_n, COALESCE(l.capture_amount, 0)::bigint AS capture_amount,
           COALESCE(l.void_n, 0)::int AS void_n,
           COALESCE(l.refund_n, 0)::int AS refund_n, COALESCE(l.refund_amount, 0)::bigint AS refund_amount,
           COALESCE(r.succeeded, 0)::bigint AS refunds_succeeded, COALESCE(r.live, 0)::bigint AS refunds_live
      FROM payments p
      LEFT JOIN (SELECT payment_id,
                        count(*) FILTER (WHERE operation = 'authorize') AS auth_n,
                        sum(amount) FILTER (WHERE operation = 'authorize') AS auth_amount,
                        count(*) FILTER (WHERE operation = 'capture') AS capture_n,
                        sum(amount) FILTER (WHERE operation = 'capture') AS capture_amount,
                        count(*) FILTER (WHERE operation = 'void') AS void_n,
                        count(*) FILTER (WHERE operation = 'refund') AS refund_n,
                        sum(amount) FILTER (WHERE operation = 'refund') AS refund_amount
                   FROM mock_provider_ledger GROUP BY payment_id) l ON l.payment_id = p.id
      LEFT JOIN (SELECT payment_id,
                        sum(amount) FILTER (WHERE status = 'succeeded') AS succeeded,
                        sum(amount) FILTER (WHERE status IN ('pending','succeeded')) AS live
                   FROM refunds GROUP BY payment_id) r ON r.payment_id = p.id`);

  const manualReview: unknown[] = [];
  const chargedPerReference = new Map<string, string[]>();
  const livePerReference = new Map<string, string[]>();
  for (const p of rows) {
    const ex = { payment: p.id, status: p.status, token: p.payment_method_token, connector: p.connector, reconciliation: p.reconciliation_status, ledger: { authorize: p.auth_n, capture: `${p.capture_n}/${p.capture_amount}`, void: p.void_n, refund: `${p.refund_n}/${p.refund_amount}` }, db: { captured: p.amount_captured, refunded: p.amount_refunded } };
    if (p.reconciliation_status === 'manual_review') manualReview.push(ex);
    const refKey = `${p.merchant_id}/${p.reference_id}`;
    if (p.auth_n > 0 && p.void_n === 0 && p.status !== 'failed') chargedPerReference.set(refKey, [...(chargedPerReference.get(refKey) ?? []), p.id]);
    if (p.status !== 'failed' && p.status !== 'canceled') livePerReference.set(refKey, [...(livePerReference.get(refKey) ?? []), p.id]);

    if (p.auth_n > 1) doubleCharge.add(ex);
    const charged = p.auth_n >= 1;
    const settledHere = p.status === 'captured' || p.status === 'settled' || p.status === 'refunded';
    // (A charged payment still `processing` is not lost yet: it is reported as unresolved.)
    if (charged && p.reconciliation_status !== 'manual_review') {
      if (p.status === 'failed' || p.status === 'pending') lostCharge.add(ex);
      if (p.status === 'canceled' && p.void_n === 0) lostCharge.add(ex);
    }
    if (!charged && (p.status === 'authorized' || settledHere)) phantom.add(ex);
    if (charged && p.auth_amount !== p.amount * p.auth_n) amounts.add({ ...ex, why: 'authorized amount differs from the payment amount' });
    if (settledHere) {
      if (p.capture_n !== 1 || p.capture_amount !== p.amount_captured) amounts.add({ ...ex, why: 'captured amount' });
    } else if (p.status !== 'processing' && (p.capture_n !== 0 || p.amount_captured !== 0)) {
      amounts.add({ ...ex, why: `captured at the provider but ${p.status} here` });
    }
    if (p.refund_amount !== p.amount_refunded) amounts.add({ ...ex, why: 'refunded amount' });
    if (p.void_n > 1 || (p.void_n === 1 && p.status !== 'canceled' && p.reconciliation_status !== 'manual_review')) amounts.add({ ...ex, why: 'void' });
    if (p.status === 'refunded' && p.amount_refunded !== p.amount_captured) amounts.add({ ...ex, why: 'refunded but not fully' });

    if (p.refunds_live > p.amount_captured) refundsOver.add({ payment: p.id, captured: p.amount_captured, pending_and_succeeded: p.refunds_live });
    if (p.refunds_succeeded !== p.amount_refunded) refundsOver.add({ payment: p.id, amount_refunded: p.amount_refunded, succeeded_refunds: p.refunds_succeeded });
  }
  for (const [ref, ids] of chargedPerReference) if (ids.length > 1) doubleCharge.add({ reference: ref, charged_payments: ids });
  for (const [ref, ids] of livePerReference) if (ids.length > 1) idempotency.add({ reference: ref, live_payments: ids });

  // --- every provider effect against the attempt that asked for it ----------------------------
  const effects = await q<{ payment_id: string; operation: string; amount: number; idempotency_key: string; attempt_id: string | null; attempt_operation: string | null; attempt_status: string | null; attempt_amount: number | null; refund_id: string | null; refund_status: string | null; refund_amount: number | null }>(`
    SELECT l.payment_id, l.operation, l.amount, l.idempotency_key, a.id AS attempt_id, a.operation AS attempt_operation,
           a.status AS attempt_status, a.amount AS attempt_amount, a.refund_id, r.status AS refund_status, r.amount AS refund_amount
      FROM mock_provider_ledger l
      LEFT JOIN payment_attempts a ON a.id = l.idempotency_key
      LEFT JOIN refunds r ON r.id = a.refund_id
     ORDER BY l.id`);
  for (const e of effects) {
    if (!e.attempt_id) {
      attemptLedger.add({ why: 'provider effect under no attempt', ...e });
      continue;
    }
    const sameOperation = e.attempt_operation === e.operation || (e.attempt_operation === 'authorize' && e.operation === 'capture');
    if (!sameOperation) attemptLedger.add({ why: 'effect of another operation', ...e });
    // An attempt still open is reported as unresolved; a completed one must agree with the provider.
    if (e.attempt_status === 'failed') attemptLedger.add({ why: 'provider performed it, attempt is failed', ...e });
    if (e.operation === 'refund' && e.attempt_status === 'succeeded' && (e.refund_status !== 'succeeded' || e.refund_amount !== e.amount)) attemptLedger.add({ why: `provider refunded, refund is ${e.refund_status}`, ...e });
  }
  const succeededWithoutEffect = await q<{ id: string; payment_id: string; operation: string; connector: string; error_code: string | null; provider_status: string | null }>(`
    SELECT a.id, a.payment_id, a.operation, a.connector, a.error_code, a.provider_status FROM payment_attempts a
     WHERE a.status = 'succeeded'
       AND NOT EXISTS (SELECT 1 FROM mock_provider_ledger l WHERE l.idempotency_key = a.id AND l.operation = a.operation)`);
  for (const a of succeededWithoutEffect) attemptLedger.add({ why: 'succeeded attempt, nothing at the provider', ...a });
  const orphanCharges = await q<{ payment_id: string }>(`SELECT DISTINCT l.payment_id FROM mock_provider_ledger l LEFT JOIN payments p ON p.id = l.payment_id WHERE p.id IS NULL`);
  for (const o of orphanCharges) attemptLedger.add({ why: 'provider effect for a payment that does not exist', ...o });

  // --- histories ------------------------------------------------------------------------------
  const hist = await q<{ payment_id: string; from_status: string | null; to_status: string; cause: string; actor: string; id: number }>(
    'SELECT id, payment_id, from_status, to_status, cause, actor FROM payment_status_history ORDER BY payment_id, id',
  );
  const byPayment = new Map<string, typeof hist>();
  for (const h of hist) {
    let list = byPayment.get(h.payment_id);
    if (!list) byPayment.set(h.payment_id, (list = []));
    list.push(h);
  }
  const statusOf = new Map(rows.map((p) => [p.id, p.status]));
  const isStatus = (s: string | null): s is PaymentStatus => s !== null && (PAYMENT_STATUSES as readonly string[]).includes(s);
  for (const p of rows) {
    const list = byPayment.get(p.id) ?? [];
    const path = list.map((h) => `${h.from_status ?? '∅'}→${h.to_status} (${h.cause}, ${h.actor})`);
    if (list.length === 0) {
      history.add({ payment: p.id, why: 'no history' });
      continue;
    }
    const first = list[0]!;
    if (first.from_status !== null || first.to_status !== 'pending') history.add({ payment: p.id, why: 'does not start with ∅→pending', path });
    let bad = false;
    for (let k = 1; k < list.length && !bad; k++) {
      const prev = list[k - 1]!;
      const h = list[k]!;
      if (h.from_status !== prev.to_status) {
        history.add({ payment: p.id, why: `step ${k} starts at ${h.from_status}, previous ended at ${prev.to_status}`, path });
        bad = true;
      } else if (!isStatus(h.from_status) || !isStatus(h.to_status) || !canTransition(h.from_status, h.to_status)) {
        history.add({ payment: p.id, why: `illegal transition ${h.from_status}→${h.to_status}`, path });
        bad = true;
      }
    }
    if (!bad && list[list.length - 1]!.to_status !== p.status) history.add({ payment: p.id, why: `history ends at ${list[list.length - 1]!.to_status}, payment is ${p.status}`, path });
  }

  // --- the outbox has an event for every committed transition ---------------------------------
  const events = await q<{ id: string; merchant_id: string; payment_id: string | null; type: string; sequence: number; object_id: string | null; dispatched: boolean }>(
    `SELECT id, merchant_id, payment_id, type, sequence, data->'object'->>'id' AS object_id, dispatched_at IS NOT NULL AS dispatched FROM events ORDER BY payment_id, sequence`,
  );
  const eventCounts = new Map<string, number>();
  const bump = (k: string) => eventCounts.set(k, (eventCounts.get(k) ?? 0) + 1);
  for (const e of events) {
    if (e.payment_id && e.type.startsWith('payment.') && e.type !== 'payment.reconciliation_required') bump(`${e.payment_id}|${e.type}`);
    if (e.type.startsWith('refund.') && e.object_id) bump(`${e.object_id}|${e.type}`);
  }
  const wanted = new Map<string, number>();
  for (const h of hist) {
    const k = `${h.payment_id}|${statusEvent(h.to_status)}`;
    wanted.set(k, (wanted.get(k) ?? 0) + 1);
  }
  const refundRows = await q<{ id: string; payment_id: string; status: string; amount: number }>('SELECT id, payment_id, status, amount FROM refunds');
  for (const r of refundRows) {
    wanted.set(`${r.id}|refund.created`, 1);
    if (r.status === 'succeeded') wanted.set(`${r.id}|refund.succeeded`, 1);
    if (r.status === 'failed') wanted.set(`${r.id}|refund.failed`, 1);
  }
  for (const [k, n] of wanted) {
    const got = eventCounts.get(k) ?? 0;
    if (got !== n) lostEvent.add({ what: k, transitions: n, events: got });
  }
  for (const [k, n] of eventCounts) if (!wanted.has(k)) lostEvent.add({ what: k, transitions: 0, events: n, why: 'event without a transition' });
  const sequences = new Map<string, number[]>();
  for (const e of events) if (e.payment_id) sequences.set(e.payment_id, [...(sequences.get(e.payment_id) ?? []), e.sequence]);
  for (const [pid, seqs] of sequences) {
    for (let k = 1; k < seqs.length; k++) {
      if (seqs[k]! <= seqs[k - 1]!) {
        lostEvent.add({ payment: pid, why: 'sequence not strictly increasing', seqs });
        break;
      }
    }
  }

  // --- every event reached the receiver -------------------------------------------------------
  const deliveries = await q<{ event_id: string; statuses: string[]; endpoints: number }>(`
    SELECT e.id AS event_id, COALESCE(array_agg(d.status) FILTER (WHERE d.id IS NOT NULL), '{}') AS statuses, count(DISTINCT w.id)::int AS endpoints
      FROM events e
      JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id AND w.status <> 'deleted'
      LEFT JOIN webhook_deliveries d ON d.event_id = e.id AND d.endpoint_id = w.id
     GROUP BY e.id`);
  let dropped = 0;
  let dead = 0;
  for (const d of deliveries) {
    if (d.statuses.includes('dead')) dead += 1;
    if (d.statuses.length > 0 && d.statuses.every((s) => s === 'dropped')) {
      dropped += 1;
      continue;
    }
    const rec = receiver.records.get(d.event_id);
    if (!rec || rec.accepted === 0) undelivered.add({ event: d.event_id, deliveries: d.statuses, received: rec ? { receipts: rec.receipts, answers: rec.answers } : 'never' });
  }
  for (const b of receiver.badSignatures.slice(0, 50)) signatures.add({ why: 'bad signature', ...b });
  for (const m of receiver.mismatchedIds.slice(0, 50)) signatures.add({ why: 'webhook-id differs from the event id', ...m });
  const knownEvents = new Set(events.map((e) => e.id));
  for (const id of receiver.records.keys()) if (!knownEvents.has(id)) signatures.add({ why: 'received an event the database does not have', id });

  // --- what clients were told -----------------------------------------------------------------
  for (const [key, ids] of obs.keyResources) if (ids.size > 1) idempotency.add({ key, resources: [...ids] });
  const historyStatuses = new Map<string, Set<string>>();
  for (const h of hist) {
    let s = historyStatuses.get(h.payment_id);
    if (!s) historyStatuses.set(h.payment_id, (s = new Set()));
    s.add(h.to_status);
  }
  for (const [pid, seen] of obs.paymentStatuses) {
    const had = historyStatuses.get(pid);
    if (!had) {
      observed.add({ payment: pid, why: 'a client was answered this payment; the database has no such payment', seen: [...seen] });
      continue;
    }
    for (const s of seen) if (!had.has(s)) observed.add({ payment: pid, flow: obs.paymentFlow.get(pid), why: `answered '${s}', never in its history`, history: [...had], final: statusOf.get(pid) });
  }
  const refundStatus = new Map(refundRows.map((r) => [r.id, r.status]));
  for (const [rid, seen] of obs.refundStatuses) {
    const final = refundStatus.get(rid);
    if (!final) observed.add({ refund: rid, why: 'answered a refund the database does not have' });
    else if ((seen.has('succeeded') && final !== 'succeeded') || (seen.has('failed') && final !== 'failed')) observed.add({ refund: rid, seen: [...seen], final });
  }
  for (const a of obs.anomalies) if (a.kind !== 'replay_status_differs') clientAnomaly.add(a);

  // --- nothing left open ----------------------------------------------------------------------
  const openRows = await q<{ kind: string; id: string; payment_id: string; detail: string | null }>(`
    SELECT 'attempt ' || operation || ' ' || status AS kind, id, payment_id,
           connector || ' ' || COALESCE(error_code, '-') || ' ' || COALESCE(provider_status, '-') || ' reconciles=' || reconcile_attempts
             || ' age=' || round(extract(epoch FROM now() - created_at)) || 's'
             || ' next_reconcile_in=' || COALESCE(round(extract(epoch FROM next_reconcile_at - now())) || 's', 'unset')
             || CASE WHEN reconcile_attempts = 0 AND next_reconcile_at > now() + interval '60 seconds'
                     THEN ' (claimed by a reconciliation sweep that never finished it: its worker was killed?)' ELSE '' END AS detail
      FROM payment_attempts WHERE status IN ('started','unknown')
    UNION ALL SELECT 'refund pending', id, payment_id, NULL FROM refunds WHERE status = 'pending'
    UNION ALL SELECT 'payment processing', id, id, payment_method_token FROM payments WHERE status = 'processing'
    UNION ALL SELECT 'provider charge pending', id, payment_id, token FROM mock_provider_charges WHERE status = 'pending'`);
  for (const o of openRows) open.add(o);

  for (const x of unexpectedExits) crashes.add({ process: x.name, code: x.code, signal: x.signal, tail: x.tail.slice(-800) });

  // --- counts ---------------------------------------------------------------------------------
  const one = async (sql: string) => Number(((await q<{ n: string | number }>(sql))[0]?.n) ?? 0);
  const byStatus = await q<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM payments GROUP BY status ORDER BY status');
  const attemptsBy = await q<{ k: string; n: number }>(
    `SELECT connector || ' ' || operation || ' ' || status || COALESCE(' ' || error_code, '') AS k, count(*)::int AS n FROM payment_attempts GROUP BY 1 ORDER BY 1`,
  );
  const counts: Record<string, number> = {
    payments: rows.length,
    refunds: refundRows.length,
    events: events.length,
    attempts: await one('SELECT count(*) AS n FROM payment_attempts'),
    provider_ledger_rows: await one('SELECT count(*) AS n FROM mock_provider_ledger'),
    provider_events_received: await one('SELECT count(*) AS n FROM provider_events'),
    provider_events_unmatched_or_failed: await one(`SELECT count(*) AS n FROM provider_events WHERE status IN ('unmatched','failed','received')`),
    webhook_deliveries: await one('SELECT count(*) AS n FROM webhook_deliveries'),
    webhook_delivery_attempts: await one('SELECT count(*) AS n FROM webhook_delivery_attempts'),
    webhook_deliveries_dead: dead,
    webhook_events_dropped: dropped,
    webhook_receipts: receiver.total,
    webhook_duplicate_receipts: [...receiver.records.values()].reduce((s, r) => s + Math.max(0, r.receipts - 1), 0),
    manual_review: manualReview.length,
  };
  for (const s of byStatus) counts[`payments_${s.status}`] = s.n;
  for (const a of attemptsBy) counts[`attempts: ${a.k}`] = a.n;

  const warnings: Warning[] = [];
  if (manualReview.length > 0) warnings.push({ name: 'manual_review', count: manualReview.length, examples: manualReview.slice(0, MAX_EXAMPLES) });
  const replayDiffs = obs.anomalies.filter((a) => a.kind === 'replay_status_differs');
  if (replayDiffs.length > 0) warnings.push({ name: 'replay_status_differs', count: replayDiffs.length, examples: replayDiffs.slice(0, MAX_EXAMPLES) });
  if (obs.flowErrors.length > 0) warnings.push({ name: 'harness_flow_errors', count: obs.flowErrors.length, examples: obs.flowErrors.slice(0, 3) });

  const all = [doubleCharge, lostCharge, phantom, amounts, attemptLedger, history, refundsOver, open, lostEvent, undelivered, signatures, idempotency, observed, clientAnomaly, crashes];
  const storyIds: string[] = [];
  for (const c of all) {
    for (const e of c.examples as Record<string, unknown>[]) {
      const id = [e.payment, e.payment_id].find((v): v is string => typeof v === 'string' && v.startsWith('pay_'));
      if (id && !storyIds.includes(id) && storyIds.length < 6) storyIds.push(id);
    }
  }
  const stories: Record<string, unknown>[] = [];
  for (const id of storyIds) stories.push(await paymentStory(db, id));
  return { checks: all.map((c) => c.result()), warnings, counts, stories };
}
