/**
 * The outbox relay: turns committed events into one delivery per matching endpoint, each with its
 * pg-boss job, and marks the events dispatched — all in one transaction, so an event is fanned out
 * exactly once however many workers run (SKIP LOCKED spreads batches between them).
 */
import { matchesAny } from '../domain/event-filter.js';
import { withTx, type Db } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { QUEUE, inTx, type PgBoss } from '../worker/queue.js';
import { metrics } from '../observability/metrics.js';

export interface DispatchSettings {
  /** Above this many pending deliveries, an endpoint's droppable events are dropped. */
  backlogThreshold: number;
  droppableTypes: readonly string[];
  batchSize: number;
}

export interface DispatchResult {
  events: number;
  deliveries: number;
  dropped: number;
}

export async function dispatchBatch(db: Db, boss: PgBoss, settings: DispatchSettings): Promise<DispatchResult> {
  return withTx(db, async (tx) => {
    // Claimed and marked dispatched in one statement: the mark commits with the deliveries below,
    // and a concurrent relay skips the claimed rows.
    const events = (
      await tx.query<{ id: string; merchant_id: string; type: string }>(
        `UPDATE events e SET dispatched_at = now()
           FROM (SELECT id FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) c
          WHERE e.id = c.id
          RETURNING e.id, e.merchant_id, e.type`,
        [settings.batchSize],
      )
    ).rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (events.length === 0) return { events: 0, deliveries: 0, dropped: 0 };

    // The merchants' enabled endpoints, each with its backlog of pending deliveries (counted up to
    // just past the threshold: all that matters is whether it is reached).
    const merchants = [...new Set(events.map((e) => e.merchant_id))];
    const endpoints = (
      await tx.query<{ id: string; merchant_id: string; enabled_events: string[]; backlog: number }>(
        `SELECT e.id, e.merchant_id, e.enabled_events,
                (SELECT count(*)::int FROM (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending' LIMIT $2) b) AS backlog
           FROM webhook_endpoints e WHERE e.status = 'enabled' AND e.merchant_id = ANY($1)`,
        [merchants, settings.backlogThreshold + 1],
      )
    ).rows;

    const backlog = new Map<string, number>();
    const rows: { id: string; merchant_id: string; endpoint_id: string; event_id: string; event_type: string; status: string }[] = [];
    for (const event of events) {
      for (const ep of endpoints) {
        if (ep.merchant_id !== event.merchant_id || !matchesAny(ep.enabled_events, event.type)) continue;
        let pending = backlog.get(ep.id) ?? ep.backlog;
        const drop = pending >= settings.backlogThreshold && settings.droppableTypes.includes(event.type);
        if (!drop) pending += 1;
        backlog.set(ep.id, pending);
        rows.push({ id: newId('wd'), merchant_id: event.merchant_id, endpoint_id: ep.id, event_id: event.id, event_type: event.type, status: drop ? 'dropped' : 'pending' });
      }
    }
    if (rows.length > 0) {
      await tx.query(
        `INSERT INTO webhook_deliveries (id, merchant_id, endpoint_id, event_id, event_type, status, next_attempt_at)
         SELECT id, merchant_id, endpoint_id, event_id, event_type, status, CASE WHEN status = 'pending' THEN now() END
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
             AS t(id, merchant_id, endpoint_id, event_id, event_type, status)`,
        [rows.map((r) => r.id), rows.map((r) => r.merchant_id), rows.map((r) => r.endpoint_id), rows.map((r) => r.event_id), rows.map((r) => r.event_type), rows.map((r) => r.status)],
      );
      const jobs = rows.filter((r) => r.status === 'pending').map((r) => ({ name: QUEUE.delivery, data: { delivery_id: r.id } }));
      if (jobs.length > 0) await boss.insert(jobs, { db: inTx(tx) });
    }
    const dropped = rows.filter((r) => r.status === 'dropped').length;
    if (dropped > 0) metrics.webhookDeliveries.inc({ outcome: 'dropped' }, dropped);
    return { events: events.length, deliveries: rows.length - dropped, dropped };
  });
}
