/** The read side of deliveries, and the operator's replays: retry one, redeliver an event, recover an endpoint. */
import { AppError } from '../domain/errors.js';
import { matchesAny } from '../domain/event-filter.js';
import { withTx, type Db, type Queryable, type Tx } from '../db/pool.js';
import { Filters } from '../db/filters.js';
import { newId } from '../lib/ids.js';
import { enqueueDelivery, type PgBoss } from '../worker/queue.js';
import { findEvent } from '../events/events.js';
import { findEndpoint } from './endpoints.js';

interface DeliveryRow {
  id: string;
  merchant_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  status: string;
  attempts: number;
  next_attempt_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  delivered_at: Date | null;
}

export function deliveryToApi(d: DeliveryRow): Record<string, unknown> {
  return {
    id: d.id,
    object: 'webhook_delivery',
    endpoint_id: d.endpoint_id,
    event_id: d.event_id,
    event_type: d.event_type,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: d.next_attempt_at?.toISOString() ?? null,
    last_status_code: d.last_status_code,
    last_error: d.last_error,
    created_at: d.created_at.toISOString(),
    updated_at: d.updated_at.toISOString(),
    delivered_at: d.delivered_at?.toISOString() ?? null,
  };
}

export async function findDelivery(q: Queryable, merchantId: string, id: string): Promise<DeliveryRow> {
  const r = await q.query<DeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = $1 AND merchant_id = $2', [id, merchantId]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such webhook delivery: '${id}'.`);
  return r.rows[0];
}

export async function listDeliveries(
  q: Queryable,
  merchantId: string,
  f: { status?: string | undefined; endpoint_id?: string | undefined; event_id?: string | undefined; limit: number; starting_after?: string | undefined },
) {
  const where = new Filters('merchant_id = ?', merchantId)
    .maybe('status = ?', f.status)
    .maybe('endpoint_id = ?', f.endpoint_id)
    .maybe('event_id = ?', f.event_id)
    .maybe('id < ?', f.starting_after);
  const r = await q.query<DeliveryRow>(`SELECT * FROM webhook_deliveries WHERE ${where} ORDER BY id DESC LIMIT ${where.param(f.limit + 1)}`, where.values);
  return { object: 'list' as const, data: r.rows.slice(0, f.limit).map(deliveryToApi), has_more: r.rows.length > f.limit };
}

export async function listDeliveryAttempts(q: Queryable, merchantId: string, id: string) {
  await findDelivery(q, merchantId, id);
  const r = await q.query<{ attempt: number; status_code: number | null; latency_ms: number; error: string | null; response_excerpt: string | null; created_at: Date }>(
    'SELECT attempt, status_code, latency_ms, error, response_excerpt, created_at FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY id',
    [id],
  );
  return {
    object: 'list' as const,
    data: r.rows.map((a) => ({ object: 'webhook_delivery_attempt', delivery_id: id, ...a, created_at: a.created_at.toISOString() })),
    has_more: false,
  };
}

/** Sends a delivery again now, whatever its status (one more attempt beyond its schedule). */
async function requeue(tx: Tx, boss: PgBoss, id: string): Promise<void> {
  await tx.query(
    `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), locked_until = NULL, owner = NULL, updated_at = now() WHERE id = $1`,
    [id],
  );
  await enqueueDelivery(boss, tx, id);
}

export async function retryDelivery(db: Db, boss: PgBoss, merchantId: string, id: string) {
  return withTx(db, async (tx) => {
    const d = await findDelivery(tx, merchantId, id);
    if (d.status === 'pending') {
      throw new AppError('WEBHOOK_DELIVERY_PENDING', 'This delivery is already scheduled; it will be attempted at next_attempt_at.', { details: { delivery_id: id } });
    }
    await requeue(tx, boss, id);
    return deliveryToApi(await findDelivery(tx, merchantId, id));
  });
}

/** A new delivery of the event to every enabled endpoint that subscribes to it now (same webhook-id). */
export async function redeliverEvent(db: Db, boss: PgBoss, merchantId: string, eventId: string) {
  return withTx(db, async (tx) => {
    const event = await findEvent(tx, merchantId, eventId);
    const endpoints = (
      await tx.query<{ id: string; enabled_events: string[] }>(`SELECT id, enabled_events FROM webhook_endpoints WHERE merchant_id = $1 AND status = 'enabled'`, [merchantId])
    ).rows.filter((e) => matchesAny(e.enabled_events, event.type));
    const created: Record<string, unknown>[] = [];
    for (const ep of endpoints) {
      const r = await tx.query<DeliveryRow>(
        `INSERT INTO webhook_deliveries (id, merchant_id, endpoint_id, event_id, event_type, status, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', now()) RETURNING *`,
        [newId('wd'), merchantId, ep.id, event.id, event.type],
      );
      await enqueueDelivery(boss, tx, r.rows[0]!.id);
      created.push(deliveryToApi(r.rows[0]!));
    }
    return { object: 'list' as const, data: created, has_more: false };
  });
}

/** Replays every dead or dropped delivery of an endpoint created since a time. */
export async function recoverEndpoint(db: Db, boss: PgBoss, merchantId: string, endpointId: string, since: string) {
  return withTx(db, async (tx) => {
    await findEndpoint(tx, merchantId, endpointId);
    const r = await tx.query<{ id: string }>(
      `SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status IN ('dead','dropped') AND created_at >= $2 ORDER BY id FOR UPDATE`,
      [endpointId, since],
    );
    for (const row of r.rows) await requeue(tx, boss, row.id);
    return { object: 'webhook_recovery', endpoint_id: endpointId, since, replayed: r.rows.length };
  });
}
