/**
 * Shared fixtures for the settlement tests: captured payments inserted in bulk with SQL (the
 * volume tests need thousands), and readers that check every settlement invariant from the tables.
 */
import { Writable } from 'node:stream';
import { expect } from 'vitest';
import type { Queryable } from '../../src/db/pool.js';
import { newId } from '../../src/lib/ids.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { insertMerchant } from '../../src/merchants/store.js';

export async function seedMerchant(db: Queryable, name = 'Settlement Test Merchant'): Promise<string> {
  const m = await insertMerchant(db, { name, onboarding_status: 'activated', kyc_status: 'approved', kyc_tier: 'tier_2', rate_tier: 'gold' });
  return m.id;
}

export interface SeedOptions {
  /** When the payment was captured (the time of its history row to `captured`). */
  capturedAt: Date;
  currency?: string;
  amount?: number;
  /** Already refunded (partially) before settlement. */
  refunded?: number;
  status?: 'captured' | 'authorized';
}

/**
 * Inserts `n` payments exactly as the payment flow leaves them: the payment row and its audit
 * trail up to `captured` (or `authorized`). Ids are fresh ULIDs, so they sort after every earlier one.
 */
export async function seedPayments(db: Queryable, merchantId: string, n: number, o: SeedOptions): Promise<string[]> {
  const ids = Array.from({ length: n }, () => newId('pay'));
  const amount = o.amount ?? 10_000;
  const status = o.status ?? 'captured';
  const captured = status === 'captured' ? amount : 0;
  await db.query(
    `INSERT INTO payments (id, merchant_id, status, amount, currency, amount_capturable, amount_captured, amount_refunded,
                           payment_method, payment_method_token, reference_id, customer, capture_method, connector,
                           provider_reference, version, created_at, updated_at)
     SELECT id, $2::text, $3::text, $4::bigint, $5::text, $4::bigint - $6::bigint, $6::bigint, $7::bigint, 'card', 'tok_success',
            'ref_' || id, '{"email":"asha@example.com","phone":"+919876543210"}'::jsonb, 'automatic', 'mock', 'ch_' || id, 3,
            $8::timestamptz, $8::timestamptz
       FROM unnest($1::text[]) AS id`,
    [ids, merchantId, status, amount, o.currency ?? 'INR', captured, o.refunded ?? 0, o.capturedAt],
  );
  await db.query(
    `INSERT INTO payment_status_history (payment_id, from_status, to_status, cause, actor, created_at)
     SELECT id, s.from_status, s.to_status, 'seed', 'test', $2::timestamptz - s.back
       FROM unnest($1::text[]) AS id,
            (VALUES (NULL, 'pending', interval '2 seconds'), ('pending', 'processing', interval '1 second'),
                    ('processing', $3::text, interval '0 seconds')) AS s(from_status, to_status, back)`,
    [ids, o.capturedAt, status],
  );
  return ids;
}

export function minutesAgo(m: number): Date {
  return new Date(Date.now() - m * 60_000);
}

export async function dbNow(db: Queryable): Promise<Date> {
  return (await db.query<{ now: Date }>('SELECT clock_timestamp() AS now')).rows[0]!.now;
}

export async function statusCounts(db: Queryable, ids: string[]): Promise<Record<string, number>> {
  const r = await db.query<{ status: string; n: number }>(
    'SELECT status, count(*)::bigint AS n FROM payments WHERE id = ANY($1) GROUP BY status',
    [ids],
  );
  return Object.fromEntries(r.rows.map((x) => [x.status, Number(x.n)]));
}

/**
 * The invariants of "settled exactly once" over a set of payments: each is settled, has exactly one
 * captured → settled history row caused by `settlementId`, exactly one payment.settled event, and
 * exactly one settlement_items row of that batch.
 */
export async function expectSettledOnce(db: Queryable, settlementId: string, ids: string[]): Promise<void> {
  expect(await statusCounts(db, ids)).toEqual({ settled: ids.length });
  const history = await db.query<{ payment_id: string; n: number; bad: number }>(
    `SELECT payment_id, count(*)::bigint AS n,
            count(*) FILTER (WHERE from_status <> 'captured' OR cause <> $2 OR actor <> 'worker:settlement' OR request_id IS NOT NULL)::bigint AS bad
       FROM payment_status_history WHERE payment_id = ANY($1) AND to_status = 'settled' GROUP BY payment_id`,
    [ids, `settlement:${settlementId}`],
  );
  expect(history.rows).toHaveLength(ids.length);
  expect(history.rows.filter((r) => Number(r.n) !== 1 || Number(r.bad) !== 0)).toEqual([]);
  const events = await db.query<{ payment_id: string; n: number; bad: number }>(
    `SELECT payment_id, count(*)::bigint AS n,
            count(*) FILTER (WHERE previous_status <> 'captured' OR data->'object'->>'status' <> 'settled')::bigint AS bad
       FROM events WHERE payment_id = ANY($1) AND type = 'payment.settled' GROUP BY payment_id`,
    [ids],
  );
  expect(events.rows).toHaveLength(ids.length);
  expect(events.rows.filter((r) => Number(r.n) !== 1 || Number(r.bad) !== 0)).toEqual([]);
  const items = await db.query<{ n: number; wrong: number }>(
    `SELECT count(*)::bigint AS n, count(*) FILTER (WHERE settlement_id <> $2)::bigint AS wrong
       FROM settlement_items WHERE payment_id = ANY($1)`,
    [ids, settlementId],
  );
  expect(Number(items.rows[0]!.n)).toBe(ids.length);
  expect(Number(items.rows[0]!.wrong)).toBe(0);
}

/** Payments untouched by settlement: still captured, no settled history, event or item. */
export async function expectNotSettled(db: Queryable, ids: string[]): Promise<void> {
  expect(await statusCounts(db, ids)).toEqual({ captured: ids.length });
  const leftovers = await db.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM payment_status_history WHERE payment_id = ANY($1) AND to_status = 'settled')
          + (SELECT count(*) FROM events WHERE payment_id = ANY($1) AND type = 'payment.settled')
          + (SELECT count(*) FROM settlement_items WHERE payment_id = ANY($1)) AS n`,
    [ids],
  );
  expect(Number(leftovers.rows[0]!.n)).toBe(0);
}

/** No payment anywhere has two transitions to settled, nor two settlement items (the UNIQUE makes the latter impossible). */
export async function doubleSettlements(db: Queryable): Promise<string[]> {
  const r = await db.query<{ payment_id: string }>(
    `SELECT payment_id FROM payment_status_history WHERE to_status = 'settled' GROUP BY payment_id HAVING count(*) > 1`,
  );
  return r.rows.map((x) => x.payment_id);
}

/** A logger whose lines are kept as parsed objects. */
export function captureLogger(level = 'debug'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger(level, sink), lines };
}
