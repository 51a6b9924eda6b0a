/**
 * Receiving provider webhooks (SPEC §11): verify the signature on the raw body, keep every event
 * under its unique (connector, provider event id), and apply it through the state machine. A copy
 * of an event already applied changes nothing; a failure is stored for the worker to reprocess and
 * answered 500 so the provider retries too.
 */
import { AppError } from '../domain/errors.js';
import type { Connector, NormalizedProviderEvent } from '../connectors/port.js';
import { withTx, type Db } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { applyProviderEvent } from './apply.js';
import { metrics } from '../observability/metrics.js';

export interface ReceiveResult {
  received: number;
  duplicates: number;
  failed: number;
}

/** Backoff for reprocessing a failed or unmatched event: 5 s, 10 s, 20 s … capped at 10 min. */
export function retryDelaySeconds(processAttempts: number): number {
  return Math.min(600, 5 * 2 ** Math.max(0, processAttempts - 1));
}

/** Applies one stored event; safe to call concurrently and repeatedly (the row lock serialises copies). */
export async function processStoredEvent(db: Db, eventId: string, requestId: string | null): Promise<'done' | 'failed'> {
  try {
    await withTx(db, async (tx) => {
      const r = await tx.query<{ connector: string; status: string; event: NormalizedProviderEvent; process_attempts: number }>(
        'SELECT connector, status, event, process_attempts FROM provider_events WHERE id = $1 FOR UPDATE',
        [eventId],
      );
      const row = r.rows[0];
      if (!row || row.status === 'processed' || row.status === 'ignored') return;
      const applied = await applyProviderEvent(tx, row.connector, row.event, { actor: `provider:${row.connector}`, requestId });
      metrics.providerEvents.inc({ connector: row.connector, result: applied.status });
      const attempts = row.process_attempts + 1;
      await tx.query(
        `UPDATE provider_events SET status = $2, result = $3, payment_id = COALESCE($4, payment_id), error = NULL,
                process_attempts = $5, processed_at = CASE WHEN $2 = 'unmatched' THEN NULL ELSE now() END,
                next_retry_at = CASE WHEN $2 = 'unmatched' THEN now() + make_interval(secs => $6) END
          WHERE id = $1`,
        [eventId, applied.status, applied.result, applied.paymentId, attempts, retryDelaySeconds(attempts)],
      );
    });
    return 'done';
  } catch (err) {
    await db.query(
      `UPDATE provider_events SET status = 'failed', error = $2, process_attempts = process_attempts + 1,
              next_retry_at = now() + make_interval(secs => $3) WHERE id = $1`,
      [eventId, (err as Error).message.slice(0, 1000), retryDelaySeconds(1)],
    );
    metrics.providerEvents.inc({ connector: 'any', result: 'failed' });
    return 'failed';
  }
}

export async function receiveWebhook(
  db: Db,
  connector: Connector,
  rawBody: Buffer,
  headers: Record<string, string | string[] | undefined>,
  requestId: string,
): Promise<ReceiveResult> {
  if (!connector.verifyWebhook(rawBody, headers)) {
    throw new AppError('WEBHOOK_SIGNATURE_INVALID', 'The webhook signature is missing, wrong or too old.');
  }
  let events: NormalizedProviderEvent[];
  try {
    events = connector.parseWebhook(rawBody);
  } catch {
    throw new AppError('INVALID_JSON', 'The webhook body is not an event this connector understands.');
  }
  const result: ReceiveResult = { received: events.length, duplicates: 0, failed: 0 };
  for (const e of events) {
    const inserted = await db.query<{ id: string }>(
      `INSERT INTO provider_events (id, connector, provider_event_id, type, provider_reference, attempt_id, payment_id, status, event)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'received', $8)
       ON CONFLICT (connector, provider_event_id) DO NOTHING RETURNING id`,
      [newId('pe'), connector.name, e.providerEventId, e.type, e.providerReference, e.attemptId, e.paymentId, JSON.stringify(e)],
    );
    let id = inserted.rows[0]?.id;
    if (!id) {
      const existing = await db.query<{ id: string; status: string }>(
        'SELECT id, status FROM provider_events WHERE connector = $1 AND provider_event_id = $2',
        [connector.name, e.providerEventId],
      );
      const row = existing.rows[0]!;
      // A copy of an event already applied (or judged) changes nothing; a failed one is retried.
      if (row.status === 'processed' || row.status === 'ignored') {
        metrics.providerEvents.inc({ connector: connector.name, result: 'duplicate' });
        result.duplicates += 1;
        continue;
      }
      id = row.id;
    }
    if ((await processStoredEvent(db, id, requestId)) === 'failed') result.failed += 1;
  }
  return result;
}

/** Worker: retries failed and unmatched events whose backoff has passed. */
export async function reprocessDueEvents(db: Db, limit = 100): Promise<{ processed: number; failed: number }> {
  const due = await db.query<{ id: string }>(
    `SELECT id FROM provider_events
      WHERE (status IN ('failed','unmatched') OR (status = 'received' AND received_at < now() - interval '30 seconds'))
        AND COALESCE(next_retry_at, received_at) <= now()
      ORDER BY COALESCE(next_retry_at, received_at) LIMIT $1`,
    [limit],
  );
  let failed = 0;
  for (const { id } of due.rows) if ((await processStoredEvent(db, id, null)) === 'failed') failed += 1;
  return { processed: due.rows.length - failed, failed };
}
