/** Read side of payments: every query is scoped to the merchant, so foreign ids read as missing. */
import { AppError } from '../domain/errors.js';
import type { Queryable } from '../db/pool.js';
import { Filters } from '../db/filters.js';
import { eventToApi, type EventRow } from '../events/events.js';
import { attemptToApi, paymentToApi, refundToApi, type AttemptRow, type PaymentRow, type RefundRow } from './types.js';

export interface Page<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

export interface ListPaymentsFilter {
  status?: string | undefined;
  reference_id?: string | undefined;
  created_gte?: string | undefined;
  created_lt?: string | undefined;
  limit: number;
  starting_after?: string | undefined;
}

export async function findPayment(q: Queryable, merchantId: string, id: string): Promise<PaymentRow> {
  const r = await q.query<PaymentRow>('SELECT * FROM payments WHERE id = $1 AND merchant_id = $2', [id, merchantId]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such payment: '${id}'.`);
  return r.rows[0];
}

/** Newest first; `starting_after` is the id of the last item of the previous page. */
export async function listPayments(q: Queryable, merchantId: string, f: ListPaymentsFilter): Promise<Page<Record<string, unknown>>> {
  const where = new Filters('merchant_id = ?', merchantId)
    .maybe('status = ?', f.status)
    .maybe('reference_id = ?', f.reference_id)
    .maybe('created_at >= ?', f.created_gte)
    .maybe('created_at < ?', f.created_lt)
    .maybe('id < ?', f.starting_after);
  const r = await q.query<PaymentRow>(`SELECT * FROM payments WHERE ${where} ORDER BY id DESC LIMIT ${where.param(f.limit + 1)}`, where.values);
  const rows = r.rows.slice(0, f.limit);
  return { object: 'list', data: rows.map(paymentToApi), has_more: r.rows.length > f.limit };
}

export async function listAttempts(q: Queryable, merchantId: string, paymentId: string): Promise<Page<Record<string, unknown>>> {
  await findPayment(q, merchantId, paymentId);
  const r = await q.query<AttemptRow>('SELECT * FROM payment_attempts WHERE payment_id = $1 ORDER BY id', [paymentId]);
  return { object: 'list', data: r.rows.map(attemptToApi), has_more: false };
}

export async function listHistory(q: Queryable, merchantId: string, paymentId: string): Promise<Page<Record<string, unknown>>> {
  await findPayment(q, merchantId, paymentId);
  const r = await q.query<{ from_status: string | null; to_status: string; cause: string; actor: string; request_id: string | null; created_at: Date }>(
    'SELECT from_status, to_status, cause, actor, request_id, created_at FROM payment_status_history WHERE payment_id = $1 ORDER BY id',
    [paymentId],
  );
  return {
    object: 'list',
    data: r.rows.map((h) => ({ from: h.from_status, to: h.to_status, cause: h.cause, actor: h.actor, request_id: h.request_id, created_at: h.created_at.toISOString() })),
    has_more: false,
  };
}

export async function listRefunds(q: Queryable, merchantId: string, paymentId: string): Promise<Page<Record<string, unknown>>> {
  await findPayment(q, merchantId, paymentId);
  const r = await q.query<RefundRow>('SELECT * FROM refunds WHERE payment_id = $1 ORDER BY id', [paymentId]);
  return { object: 'list', data: r.rows.map(refundToApi), has_more: false };
}

export async function findRefund(q: Queryable, merchantId: string, id: string): Promise<Record<string, unknown>> {
  const r = await q.query<RefundRow>('SELECT * FROM refunds WHERE id = $1 AND merchant_id = $2', [id, merchantId]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such refund: '${id}'.`);
  return refundToApi(r.rows[0]);
}

export async function listPaymentEvents(q: Queryable, merchantId: string, paymentId: string): Promise<Page<Record<string, unknown>>> {
  await findPayment(q, merchantId, paymentId);
  const r = await q.query<EventRow>('SELECT * FROM events WHERE payment_id = $1 ORDER BY sequence', [paymentId]);
  return { object: 'list', data: r.rows.map(eventToApi), has_more: false };
}
