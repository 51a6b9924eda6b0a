import { AppError } from '../domain/errors.js';
import type { Db, Queryable } from '../db/pool.js';
import { processStoredEvent } from './receive.js';

interface ProviderEventRow {
  id: string;
  connector: string;
  provider_event_id: string;
  type: string;
  provider_reference: string | null;
  attempt_id: string | null;
  payment_id: string | null;
  status: string;
  result: string | null;
  error: string | null;
  process_attempts: number;
  next_retry_at: Date | null;
  received_at: Date;
  processed_at: Date | null;
}

function toApi(e: ProviderEventRow): Record<string, unknown> {
  return {
    id: e.id,
    object: 'provider_event',
    connector: e.connector,
    provider_event_id: e.provider_event_id,
    type: e.type,
    provider_reference: e.provider_reference,
    attempt_id: e.attempt_id,
    payment_id: e.payment_id,
    status: e.status,
    result: e.result,
    error: e.error,
    process_attempts: e.process_attempts,
    next_retry_at: e.next_retry_at?.toISOString() ?? null,
    received_at: e.received_at.toISOString(),
    processed_at: e.processed_at?.toISOString() ?? null,
  };
}

export async function listProviderEvents(q: Queryable, f: { status?: string | undefined; limit: number; starting_after?: string | undefined }) {
  const values: unknown[] = [];
  const where: string[] = [];
  if (f.status) {
    values.push(f.status);
    where.push(`status = $${values.length}`);
  }
  if (f.starting_after) {
    values.push(f.starting_after);
    where.push(`id < $${values.length}`);
  }
  values.push(f.limit + 1);
  const r = await q.query<ProviderEventRow>(
    `SELECT * FROM provider_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.length}`,
    values,
  );
  return { object: 'list' as const, data: r.rows.slice(0, f.limit).map(toApi), has_more: r.rows.length > f.limit };
}

/** Applies a failed or unmatched event again now. */
export async function reprocessProviderEvent(db: Db, id: string, requestId: string): Promise<Record<string, unknown>> {
  const exists = await db.query('SELECT 1 FROM provider_events WHERE id = $1', [id]);
  if (exists.rowCount === 0) throw new AppError('RESOURCE_NOT_FOUND', `No such provider event: '${id}'.`);
  await processStoredEvent(db, id, requestId);
  const r = await db.query<ProviderEventRow>('SELECT * FROM provider_events WHERE id = $1', [id]);
  return toApi(r.rows[0]!);
}
