/**
 * One delivery attempt. The delivery row is leased first (a worker that cannot take the lease does
 * nothing), the HTTP call runs with no transaction or row lock held, and the outcome — attempt log,
 * next attempt (a new job at that time) or final status — commits in one transaction.
 */
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { Agent, request, type Dispatcher } from 'undici';
import { withTx, type Db } from '../db/pool.js';
import { eventToApi, type EventRow } from '../events/events.js';
import { enqueueDelivery, type PgBoss } from '../worker/queue.js';
import { disableEndpoint, liveSecrets } from './endpoints.js';
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

export type DeliveryOutcome = 'succeeded' | 'retry' | 'dead' | 'skipped';

interface LeasedDelivery {
  id: string;
  endpoint_id: string;
  event_id: string;
  attempts: number;
  url: string;
  endpoint_status: string;
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

interface SendResult {
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
 * The delivery is due but another worker holds its lease. A live holder finishes the attempt and
 * schedules the next one itself; a holder that died (or whose outcome failed to commit) leaves the
 * row pending with no job left to send it, so one is queued for just after the lease lapses. If
 * the holder did finish by then, that job finds the delivery final or not yet due and does nothing.
 */
async function followUpLeased(db: Db, boss: PgBoss, deliveryId: string): Promise<void> {
  const r = await db.query<{ locked_until: Date }>(
    `SELECT locked_until FROM webhook_deliveries
      WHERE id = $1 AND status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now()) AND locked_until >= now()`,
    [deliveryId],
  );
  const row = r.rows[0];
  if (row) await withTx(db, (tx) => enqueueDelivery(boss, tx, deliveryId, new Date(row.locked_until.getTime() + 1000)));
}

export async function deliverOnce(db: Db, boss: PgBoss, agent: Dispatcher, settings: DeliverySettings, deliveryId: string): Promise<DeliveryOutcome> {
  // base64url, not a dashed UUID: no long digit runs that a card-number scan could mistake
  const owner = randomBytes(16).toString('base64url');
  const leased = await db.query<LeasedDelivery>(
    `UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => $3), owner = $2, updated_at = now()
       FROM webhook_endpoints e
      WHERE d.id = $1 AND e.id = d.endpoint_id AND d.status = 'pending'
        AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now())
        AND (d.locked_until IS NULL OR d.locked_until < now())
      RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, e.url, e.status AS endpoint_status`,
    [deliveryId, owner, settings.leaseSeconds],
  );
  const d = leased.rows[0];
  if (!d) {
    // Final, not yet due (a later job is queued for it), or leased by another worker.
    await followUpLeased(db, boss, deliveryId);
    return 'skipped';
  }

  const finish = async (result: SendResult | null, note: string | null): Promise<DeliveryOutcome> =>
    withTx(db, async (tx) => {
      const attempt = d.attempts + 1;
      await tx.query(
        `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, status_code, latency_ms, error, response_excerpt)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [d.id, attempt, result?.statusCode ?? null, result?.latencyMs ?? 0, note ?? result?.error ?? null, result?.excerpt ?? null],
      );
      const code = result?.statusCode ?? null;
      let outcome: DeliveryOutcome;
      let nextAt: Date | null = null;
      if (code !== null && code >= 200 && code < 300) outcome = 'succeeded';
      else if (code === 410 || note !== null) outcome = 'dead';
      else {
        const retryAfter = code === 429 || code === 503 ? (result?.retryAfter ?? null) : null;
        const delay = nextDelaySeconds(settings.schedule, attempt, retryAfter);
        outcome = delay === null ? 'dead' : 'retry';
        if (delay !== null) nextAt = new Date(Date.now() + delay * 1000);
      }
      if (code === 410) await disableEndpoint(tx, d.endpoint_id, 'the endpoint answered 410 Gone');
      const errorText = note ?? result?.error ?? (code !== null && outcome !== 'succeeded' ? `HTTP ${code}` : null);
      const updated = await tx.query(
        `UPDATE webhook_deliveries
            SET attempts = $3, status = $4, next_attempt_at = $5, last_status_code = $6, last_error = $7,
                locked_until = NULL, owner = NULL, updated_at = now(),
                delivered_at = CASE WHEN $4 = 'succeeded' THEN now() ELSE delivered_at END
          WHERE id = $1 AND owner = $2`,
        [d.id, owner, attempt, outcome === 'retry' ? 'pending' : outcome, nextAt, code, errorText],
      );
      // Our lease lapsed and someone else took over: their outcome stands, ours is only logged.
      if (updated.rowCount === 0) return 'skipped';
      if (outcome === 'retry') await enqueueDelivery(boss, tx, d.id, nextAt!);
      metrics.webhookDeliveries.inc({ outcome });
      if (result) metrics.webhookDuration.observe(result.latencyMs / 1000);
      return outcome;
    });

  if (d.endpoint_status !== 'enabled') return finish(null, `endpoint ${d.endpoint_status}`);
  const problem = urlProblem(d.url, settings.mode);
  if (problem) return finish(null, `endpoint url ${problem}`);

  const event = (await db.query<EventRow>('SELECT * FROM events WHERE id = $1', [d.event_id])).rows[0]!;
  // The delivery joins the trace of the request whose transaction wrote the event.
  const parent = event.trace_context ? contextFrom({ traceparent: event.trace_context }) : context.active();
  return context.with(parent, () =>
    inSpan('webhook.deliver', { 'switchyard.delivery_id': d.id, 'switchyard.event_id': event.id, 'switchyard.attempt': d.attempts + 1 }, async (span) => {
      const body = JSON.stringify(eventToApi(event));
      const headers = { ...webhookHeaders(await liveSecrets(db, d.endpoint_id), event.id, Math.floor(Date.now() / 1000), body), ...traceHeaders() };
      const result = await send(agent, d.url, headers, body, settings.timeoutMs);
      const outcome = await finish(result, null);
      span.setAttribute('switchyard.outcome', outcome);
      if (result.statusCode !== null) span.setAttribute('http.response.status_code', result.statusCode);
      if (outcome === 'succeeded') metrics.webhookEndToEnd.observe((Date.now() - event.created_at.getTime()) / 1000);
      return outcome;
    }, SpanKind.PRODUCER),
  );
}
