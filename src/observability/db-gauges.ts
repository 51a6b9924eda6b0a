import type { Db } from '../db/pool.js';
import { registerScrapeGauge } from './metrics.js';

/** Gauges read from the database at scrape time, so every process reports the same truth. */
export function registerDatabaseGauges(db: Db): void {
  registerScrapeGauge('switchyard_webhook_backlog', 'Webhook deliveries waiting to be sent', [], async (g) => {
    const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'pending'`);
    g.set(r.rows[0]!.n);
  });
  registerScrapeGauge('switchyard_webhook_oldest_pending_age_seconds', 'Age of the oldest pending webhook delivery', [], async (g) => {
    const r = await db.query<{ age: number | null }>(
      `SELECT extract(epoch FROM now() - min(created_at))::float8 AS age FROM webhook_deliveries WHERE status = 'pending'`,
    );
    g.set(r.rows[0]!.age ?? 0);
  });
  registerScrapeGauge('switchyard_outbox_undispatched_events', 'Committed events not yet fanned out to deliveries', [], async (g) => {
    const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE dispatched_at IS NULL`);
    g.set(r.rows[0]!.n);
  });
  registerScrapeGauge('switchyard_job_queue_depth', 'Jobs waiting or running per queue and state', ['queue', 'state'], async (g) => {
    const r = await db.query<{ name: string; state: string; n: number }>(
      `SELECT name, state::text, count(*)::int AS n FROM pgboss.job WHERE state IN ('created','retry','active') GROUP BY name, state`,
    );
    for (const row of r.rows) g.set({ queue: row.name, state: row.state }, row.n);
  });
  registerScrapeGauge('switchyard_payments_needing_review', 'Payments whose reconciliation needs a human (manual_review)', [], async (g) => {
    const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM payments WHERE reconciliation_status = 'manual_review'`);
    g.set(r.rows[0]!.n);
  });
  registerScrapeGauge('switchyard_provider_events_failed', 'Inbound provider events waiting in the dead-letter queue', [], async (g) => {
    const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM provider_events WHERE status IN ('failed','unmatched')`);
    g.set(r.rows[0]!.n);
  });
}
