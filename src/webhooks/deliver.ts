/**
 * Delivery attempts, a batch of jobs at a time. The batch's delivery rows are leased in one
 * statement, which also returns what sending needs — the endpoint, the event and the endpoint's
 * live secrets, read in the same snapshot (a delivery whose lease is refused is not sent). The
 * HTTP calls run with no transaction or row lock held, and each outcome — attempt log, next attempt
 * (a new job at that time) or final status — is committed by the OutcomeWriter, which writes the
 * outcomes that finish together in one statement.
 */
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { Agent, request, type Dispatcher } from 'undici';
import { withTx, type Db } from '../db/pool.js';
import { eventToApi, type EventRow } from '../events/events.js';
import { enqueueDelivery, type PgBoss } from '../worker/queue.js';
import { OutcomeWriter, type DeliveryOutcome, type OutcomeRow } from './outcome-writer.js';
import { nextDelaySeconds, parseRetryAfter } from './retry-schedule.js';
import { webhookHeaders } from './signing.js';
import { guardedLookup, urlProblem, type Mode } from './url-policy.js';
import { metrics } from '../observability/metrics.js';
import { context, contextFrom, inSpan, SpanKind, traceHeaders } from '../observability/tracing.js';

export interface DeliverySettings {
  mode: Mode;
  schedule: readonly number[];
  timeoutMs: number;
  /** Longer than timeoutMs: no second worker can send while the first may still be sending. */
  leaseSeconds: number;
}

export type { DeliveryOutcome };
export { OutcomeWriter };

/**
 * A leased delivery with everything its attempt needs: the event's columns come along in the same
 * row (those whose names clash with the delivery's own are prefixed with event_).
 */
interface LeasedDelivery extends Pick<EventRow, 'api_version' | 'sequence' | 'previous_status' | 'correlation_id' | 'data' | 'payment_id' | 'trace_context'> {
  id: string;
  endpoint_id: string;
  attempts: number;
  url: string;
  endpoint_status: string;
  /** The secrets that sign it: the current first, then those still in a rotation's overlap. */
  secrets: string[];
  event_id: string;
  event_merchant_id: string;
  event_type: string;
  event_created_at: Date;
}

/**
 * Leases every due, pending, unleased delivery of the batch for this owner, and returns each with
 * its endpoint, its event and the endpoint's live secrets (so rotation applies from the next lease,
 * with no cache to go stale). A delivery that is final, not yet due or leased by another worker is
 * not returned.
 *
 * The plan must not depend on statistics. With the due-conditions on the scanned table, the
 * planner may scan the pending index and hash-join the batch against it: right while the queue is
 * small, but when the statistics say "few pending" (never analyzed, or analyzed while idle) and a
 * burst arrives, every batch visits every pending delivery — 40 ms per batch of 50 at 13,000
 * pending, quadratic over a burst. So each id is looked up by its primary key alone (a LATERAL
 * with LIMIT: nothing is pushed into it), locked there (FOR UPDATE: a row another statement is
 * changing is waited for, as the UPDATE alone did, and the locked row is its latest version), and
 * only then checked. The UPDATE changes the rows this statement already holds, by their tuple ids
 * (a TID scan: not even a join the planner could turn into a scan of the table), so it needs no
 * conditions of its own. Callers pass the ids sorted, so two workers lock in the same order.
 */
export const LEASE_SQL = `
  WITH due AS MATERIALIZED (
    SELECT x.row_ctid
      FROM unnest($1::text[]) AS b(id)
      CROSS JOIN LATERAL (
        SELECT w.ctid AS row_ctid, w.status, w.next_attempt_at, w.locked_until
          FROM webhook_deliveries w
         WHERE w.id = b.id
         LIMIT 1
           FOR UPDATE
      ) x
     WHERE x.status = 'pending'
       AND (x.next_attempt_at IS NULL OR x.next_attempt_at <= now())
       AND (x.locked_until IS NULL OR x.locked_until < now())
  ), leased AS (
    UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => $3), owner = $2, updated_at = now()
     WHERE d.ctid = ANY(ARRAY(SELECT row_ctid FROM due))
    RETURNING d.id, d.endpoint_id, d.event_id, d.attempts
  )
  SELECT l.id, l.endpoint_id, l.attempts, e.url, e.status AS endpoint_status,
         ARRAY(SELECT s.secret FROM webhook_endpoint_secrets s
                WHERE s.endpoint_id = l.endpoint_id AND (s.expires_at IS NULL OR s.expires_at > now())
                ORDER BY s.id DESC) AS secrets,
         v.id AS event_id, v.merchant_id AS event_merchant_id, v.type AS event_type, v.api_version, v.sequence,
         v.previous_status, v.correlation_id, v.data, v.payment_id, v.trace_context, v.created_at AS event_created_at
    FROM leased l
    JOIN webhook_endpoints e ON e.id = l.endpoint_id
    JOIN events v ON v.id = l.event_id`;

function eventOf(d: LeasedDelivery): EventRow {
  return {
    id: d.event_id,
    merchant_id: d.event_merchant_id,
    type: d.event_type,
    api_version: d.api_version,
    sequence: d.sequence,
    previous_status: d.previous_status,
    correlation_id: d.correlation_id,
    data: d.data,
    payment_id: d.payment_id,
    trace_context: d.trace_context,
    created_at: d.event_created_at,
  };
}

const EXCERPT_BYTES = 1024;

export function createWebhookAgent(mode: Mode, timeoutMs: number): Dispatcher {
  return new Agent({ connect: { timeout: timeoutMs, lookup: guardedLookup(mode) }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
}

/**
 * At most EXCERPT_BYTES of UTF-8 text: whole characters only (a cut through a multi-byte character
 * would grow into a replacement character past the limit), and no NUL, which a PostgreSQL text
 * column refuses — the attempt's transaction would fail and the attempt would go unrecorded.
 */
export function excerptOf(raw: Buffer): string {
  const text = new StringDecoder('utf8').write(raw.subarray(0, EXCERPT_BYTES)).replaceAll('\u0000', '\uFFFD');
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= EXCERPT_BYTES ? text : new StringDecoder('utf8').write(bytes.subarray(0, EXCERPT_BYTES));
}

async function readExcerpt(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.from(chunk as Buffer);
    chunks.push(buf);
    size += buf.length;
    if (size >= EXCERPT_BYTES) {
      body.destroy();
      break;
    }
  }
  return excerptOf(Buffer.concat(chunks));
}

export interface SendResult {
  statusCode: number | null;
  retryAfter: number | null;
  error: string | null;
  excerpt: string | null;
  latencyMs: number;
}

async function send(agent: Dispatcher, url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<SendResult> {
  const started = performance.now();
  try {
    const res = await request(url, { method: 'POST', headers, body, dispatcher: agent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    const excerpt = await readExcerpt(res.body).catch(() => '');
    return {
      statusCode: res.statusCode,
      retryAfter: parseRetryAfter(res.headers['retry-after']),
      error: null,
      excerpt,
      latencyMs: Math.round(performance.now() - started),
    };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { statusCode: null, retryAfter: null, error: `${e.code ?? e.name}: ${e.message}`.slice(0, 500), excerpt: null, latencyMs: Math.round(performance.now() - started) };
  }
}

/**
 * Deliveries of the batch that are due but leased by another worker. A live holder finishes the
 * attempt and schedules the next one itself; a holder that died (or whose outcome failed to commit)
 * leaves the row pending with no job left to send it, so one is queued for just after the lease
 * lapses. If the holder did finish by then, that job finds the delivery final or not yet due and
 * does nothing.
 */
async function followUpLeased(db: Db, boss: PgBoss, deliveryIds: readonly string[]): Promise<void> {
  const r = await db.query<{ id: string; locked_until: Date }>(
    // By primary key whatever the statistics say (see LEASE_SQL).
    `SELECT x.id, x.locked_until
       FROM unnest($1::text[]) AS b(id)
       CROSS JOIN LATERAL (SELECT w.id, w.status, w.next_attempt_at, w.locked_until FROM webhook_deliveries w WHERE w.id = b.id LIMIT 1) x
      WHERE x.status = 'pending' AND (x.next_attempt_at IS NULL OR x.next_attempt_at <= now()) AND x.locked_until >= now()`,
    [deliveryIds],
  );
  if (r.rows.length === 0) return;
  await withTx(db, async (tx) => {
    for (const row of r.rows) await enqueueDelivery(boss, tx, row.id, new Date(row.locked_until.getTime() + 1000));
  });
}

/** What an attempt leads to: the attempt-log row and the delivery's next state. */
export function decideOutcome(
  schedule: readonly number[],
  d: { id: string; endpoint_id: string; attempts: number },
  owner: string,
  result: SendResult | null,
  note: string | null,
  now = Date.now(),
): OutcomeRow {
  const attempt = d.attempts + 1;
  const code = result?.statusCode ?? null;
  let outcome: OutcomeRow['outcome'];
  let nextAttemptAt: Date | null = null;
  if (code !== null && code >= 200 && code < 300) outcome = 'succeeded';
  else if (code === 410 || note !== null) outcome = 'dead';
  else {
    const retryAfter = code === 429 || code === 503 ? (result?.retryAfter ?? null) : null;
    const delay = nextDelaySeconds(schedule, attempt, retryAfter);
    outcome = delay === null ? 'dead' : 'retry';
    if (delay !== null) nextAttemptAt = new Date(now + delay * 1000);
  }
  return {
    deliveryId: d.id,
    endpointId: d.endpoint_id,
    owner,
    attempt,
    statusCode: code,
    latencyMs: result?.latencyMs ?? 0,
    sent: result !== null,
    error: note ?? result?.error ?? null,
    excerpt: result?.excerpt ?? null,
    outcome,
    nextAttemptAt,
    lastError: note ?? result?.error ?? (code !== null && outcome !== 'succeeded' ? `HTTP ${code}` : null),
    disableEndpoint: code === 410,
  };
}

/** One job's result: its outcome, or the error that stopped it, and how long it took. */
export interface DeliveryResult {
  outcome: DeliveryOutcome | null;
  error: Error | null;
  ms: number;
}

/**
 * Attempts every delivery of a batch of jobs (ids may repeat: a delivery is attempted once).
 * Throws only when the batch could not be leased — then nothing was sent, and the jobs may simply
 * run again. Otherwise each delivery has its result; one delivery's trouble (say, the database
 * blinked while its outcome was written) does not touch its batch-mates: its lease lapses and a
 * follow-up job or a replay sends it.
 */
export async function deliverBatch(
  db: Db,
  boss: PgBoss,
  agent: Dispatcher,
  settings: DeliverySettings,
  deliveryIds: readonly string[],
  writer: OutcomeWriter = new OutcomeWriter(db, boss),
): Promise<Map<string, DeliveryResult>> {
  const started = performance.now();
  // Sorted: every lease locks its rows in the same order (no deadlock between workers).
  const ids = [...new Set(deliveryIds)].sort();
  // base64url, not a dashed UUID: no long digit runs that a card-number scan could mistake
  const owner = randomBytes(16).toString('base64url');
  const leased = (await db.query<LeasedDelivery>(LEASE_SQL, [ids, owner, settings.leaseSeconds])).rows;
  const results = new Map<string, DeliveryResult>();
  const done = (id: string, outcome: DeliveryOutcome | null, error: unknown) =>
    results.set(id, { outcome, error: error === null ? null : error instanceof Error ? error : new Error(String(error)), ms: Math.round(performance.now() - started) });

  const leasedIds = new Set(leased.map((d) => d.id));
  // Final, not yet due (a later job is queued for it), or leased by another worker.
  const skipped = ids.filter((id) => !leasedIds.has(id));
  await Promise.all([
    skipped.length === 0
      ? undefined
      : followUpLeased(db, boss, skipped).then(
          () => skipped.forEach((id) => done(id, 'skipped', null)),
          (err: unknown) => skipped.forEach((id) => done(id, null, err)),
        ),
    ...leased.map((d) =>
      attempt(settings, agent, writer, owner, d).then(
        (outcome) => done(d.id, outcome, null),
        (err: unknown) => done(d.id, null, err),
      ),
    ),
  ]);
  return results;
}

async function attempt(settings: DeliverySettings, agent: Dispatcher, writer: OutcomeWriter, owner: string, d: LeasedDelivery): Promise<DeliveryOutcome> {
  const finish = (result: SendResult | null, note: string | null) => writer.write(decideOutcome(settings.schedule, d, owner, result, note));
  if (d.endpoint_status !== 'enabled') return finish(null, `endpoint ${d.endpoint_status}`);
  const problem = urlProblem(d.url, settings.mode);
  if (problem) return finish(null, `endpoint url ${problem}`);

  const event = eventOf(d);
  // The delivery joins the trace of the request whose transaction wrote the event.
  const parent = event.trace_context ? contextFrom({ traceparent: event.trace_context }) : context.active();
  return context.with(parent, () =>
    inSpan('webhook.deliver', { 'switchyard.delivery_id': d.id, 'switchyard.event_id': event.id, 'switchyard.attempt': d.attempts + 1 }, async (span) => {
      const body = JSON.stringify(eventToApi(event));
      const headers = { ...webhookHeaders(d.secrets, event.id, Math.floor(Date.now() / 1000), body), ...traceHeaders() };
      const result = await send(agent, d.url, headers, body, settings.timeoutMs);
      const outcome = await finish(result, null);
      span.setAttribute('switchyard.outcome', outcome);
      if (result.statusCode !== null) span.setAttribute('http.response.status_code', result.statusCode);
      if (outcome === 'succeeded') metrics.webhookEndToEnd.observe((Date.now() - event.created_at.getTime()) / 1000);
      return outcome;
    }, SpanKind.PRODUCER),
  );
}

/** One delivery attempt (a batch of one); throws what stopped it. */
export async function deliverOnce(db: Db, boss: PgBoss, agent: Dispatcher, settings: DeliverySettings, deliveryId: string, writer?: OutcomeWriter): Promise<DeliveryOutcome> {
  const r = (await deliverBatch(db, boss, agent, settings, [deliveryId], writer)).get(deliveryId)!;
  if (r.error) throw r.error;
  return r.outcome!;
}
