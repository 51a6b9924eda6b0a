/** The event envelope (SPEC §12) and the read side of the outbox. */
import { AppError } from '../domain/errors.js';
import type { Queryable } from '../db/pool.js';
import { Filters } from '../db/filters.js';

export interface EventRow {
  id: string;
  merchant_id: string;
  type: string;
  api_version: string;
  sequence: number;
  previous_status: string | null;
  correlation_id: string | null;
  data: Record<string, unknown>;
  payment_id: string | null;
  trace_context?: string | null;
  created_at: Date;
}

export function eventToApi(e: EventRow): Record<string, unknown> {
  return {
    id: e.id,
    object: 'event',
    type: e.type,
    version: e.api_version,
    created_at: e.created_at.toISOString(),
    source: 'switchyard',
    correlation_id: e.correlation_id,
    sequence: e.sequence,
    previous_status: e.previous_status,
    data: e.data,
  };
}

export async function findEvent(q: Queryable, merchantId: string, id: string): Promise<EventRow> {
  const r = await q.query<EventRow>('SELECT * FROM events WHERE id = $1 AND merchant_id = $2', [id, merchantId]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such event: '${id}'.`);
  return r.rows[0];
}

export async function listEvents(
  q: Queryable,
  merchantId: string,
  f: { type?: string | undefined; payment_id?: string | undefined; limit: number; starting_after?: string | undefined },
): Promise<{ object: 'list'; data: Record<string, unknown>[]; has_more: boolean }> {
  const where = new Filters('merchant_id = ?', merchantId).maybe('type = ?', f.type).maybe('payment_id = ?', f.payment_id).maybe('id < ?', f.starting_after);
  const r = await q.query<EventRow>(`SELECT * FROM events WHERE ${where} ORDER BY id DESC LIMIT ${where.param(f.limit + 1)}`, where.values);
  return { object: 'list', data: r.rows.slice(0, f.limit).map(eventToApi), has_more: r.rows.length > f.limit };
}
