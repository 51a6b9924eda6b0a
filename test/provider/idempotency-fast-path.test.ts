/**
 * The replay fast path (ADR 0010) on a real database: how many statements each case of
 * beginRequest costs, the cache of finished responses (filled on completion and on reading a
 * completed key; fingerprint and expiry still checked), the insert that meets a key committed after
 * its statement began. Interleavings are forced with a transaction held open and observed in
 * pg_stat_activity, never with sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { beginRequest, completeRequest, CompletedResponses, releaseRequest, type BeginInput } from '../../src/idempotency/store.js';
import { isAppError } from '../../src/domain/errors.js';
import { countingQueries, createTestDatabase, type TestDatabase } from '../support/db.js';
import { waitFor } from '../support/harness.js';

let d: TestDatabase;
beforeAll(async () => {
  d = await createTestDatabase();
});
afterAll(async () => d?.drop());

const SCOPE = 'mer_idem_fast_path_test';
let n = 0;
function input(fp = 'fp_a'): BeginInput {
  n += 1;
  return { scope: SCOPE, key: `fast_${n}`, fingerprint: fp, method: 'POST', path: '/v1/payments', lockSeconds: 30, ttlSeconds: 3600 };
}

const counted = () => countingQueries(d.db);

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isAppError(err)) return err.code;
    throw err;
  }
  throw new Error('expected an AppError');
}

async function executed(i: BeginInput, cache?: CompletedResponses) {
  const b = await beginRequest(d.db, i, cache);
  if (b.kind !== 'execute') throw new Error('expected execute');
  return b;
}

describe('statements per beginRequest', () => {
  it('a new key: one statement; a replay from the database: one statement; a different body: one statement', async () => {
    const i = input();
    const c = counted();
    const first = await beginRequest(c.db, i);
    expect(first).toMatchObject({ kind: 'execute', resumed: false, resourceId: null });
    expect(c.statements()).toBe(1);
    if (first.kind !== 'execute') return;
    await completeRequest(d.db, first.ref, 201, { id: 'pay_1' });

    const before = c.statements();
    expect(await beginRequest(c.db, i)).toEqual({ kind: 'replay', status: 201, body: { id: 'pay_1' } });
    expect(c.statements() - before).toBe(1);
    expect(await codeOf(beginRequest(c.db, { ...i, fingerprint: 'fp_b' }))).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(c.statements() - before).toBe(2);
  });

  it('a key in use: one statement, 409 IN_USE with the lease left as Retry-After', async () => {
    const i = { ...input(), lockSeconds: 20 };
    await executed(i);
    const c = counted();
    try {
      await beginRequest(c.db, i);
      throw new Error('expected IN_USE');
    } catch (err) {
      if (!isAppError(err)) throw err;
      expect(err.code).toBe('IDEMPOTENCY_KEY_IN_USE');
      expect(err.retryAfter).toBeGreaterThanOrEqual(19);
      expect(err.retryAfter).toBeLessThanOrEqual(20);
    }
    expect(c.statements()).toBe(1);
  });

  it('a released key with a resource: read, then taken over (two statements), resumed at the resource', async () => {
    const i = input();
    const first = await executed(i);
    await d.db.query('UPDATE idempotency_keys SET resource_id = $3 WHERE merchant_id = $1 AND key = $2', [SCOPE, i.key, 'pay_resume']);
    await releaseRequest(d.db, first.ref);
    const c = counted();
    const again = await beginRequest(c.db, i);
    expect(again).toMatchObject({ kind: 'execute', resumed: true, resourceId: 'pay_resume' });
    expect(c.statements()).toBe(2);
    // A different body may not take it over.
    const other = input();
    const o = await executed(other);
    await d.db.query('UPDATE idempotency_keys SET resource_id = $3 WHERE merchant_id = $1 AND key = $2', [SCOPE, other.key, 'pay_other']);
    await releaseRequest(d.db, o.ref);
    expect(await codeOf(beginRequest(d.db, { ...other, fingerprint: 'fp_b' }))).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('an in-progress key whose lease lapsed is taken over', async () => {
    const i = input();
    const first = await executed(i);
    await d.db.query("UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
    const again = await executed(i);
    expect(again).toMatchObject({ resumed: true, resourceId: null });
    expect(again.ref.owner).not.toBe(first.ref.owner);
  });
});

describe('the insert meets a key committed after its statement began', () => {
  it('answers from the next round: the other request holds the key, so 409 IN_USE', async () => {
    const i = input();
    const other: pg.PoolClient = await d.db.connect();
    let begun: Promise<unknown> | undefined;
    try {
      await other.query('BEGIN');
      await other.query(
        `INSERT INTO idempotency_keys (merchant_id, key, fingerprint, method, path, state, owner, locked_until, expires_at)
         VALUES ($1, $2, 'fp_a', 'POST', '/v1/payments', 'in_progress', 'someone', now() + interval '1 hour', now() + interval '1 hour')`,
        [SCOPE, i.key],
      );
      // Our INSERT waits for the other transaction's uncommitted row of the same key…
      begun = codeOf(beginRequest(d.db, i));
      await waitFor(async () => {
        const r = await d.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO idempotency_keys%'`,
        );
        return r.rows[0]!.n > 0 ? true : undefined;
      }, 10_000, 'beginRequest waiting on the uncommitted key');
      // …which commits: the INSERT does nothing, and the row is not in our statement's snapshot.
      await other.query('COMMIT');
    } finally {
      other.release();
    }
    expect(await begun).toBe('IDEMPOTENCY_KEY_IN_USE');
  });
});

describe('the cache of finished responses', () => {
  it('is filled on completion; a replay then needs no statement and answers what the database would', async () => {
    const cache = new CompletedResponses(100);
    const i = input();
    const first = await executed(i, cache);
    const sent = { id: 'pay_2', at: new Date('2030-01-02T03:04:05Z'), gone: undefined, n: 1 };
    await completeRequest(d.db, first.ref, 201, sent, cache);
    expect(cache.size).toBe(1);

    const c = counted();
    const replay = await beginRequest(c.db, i, cache);
    const fromDb = await beginRequest(d.db, i);
    expect(c.statements()).toBe(0);
    expect(replay).toEqual(fromDb);
    expect(replay).toEqual({ kind: 'replay', status: 201, body: { id: 'pay_2', at: '2030-01-02T03:04:05.000Z', n: 1 } });
    // A different body under the same key is refused from the cache too.
    expect(await codeOf(beginRequest(c.db, { ...i, fingerprint: 'fp_b' }, cache))).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(c.statements()).toBe(0);
  });

  it('is filled on reading a completed key, whatever the body presented', async () => {
    const i = input();
    const first = await executed(i);
    await completeRequest(d.db, first.ref, 402, { error: { code: 'PAYMENT_DECLINED' } });
    const cache = new CompletedResponses(100);
    const c = counted();
    // A different body reads the row (one statement) and is refused; the row is cached all the same.
    expect(await codeOf(beginRequest(c.db, { ...i, fingerprint: 'fp_b' }, cache))).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(c.statements()).toBe(1);
    expect(cache.size).toBe(1);
    expect(await beginRequest(c.db, i, cache)).toEqual({ kind: 'replay', status: 402, body: { error: { code: 'PAYMENT_DECLINED' } } });
    expect(c.statements()).toBe(1);
  });

  it('keeps nothing that is not completed', async () => {
    const cache = new CompletedResponses(100);
    const i = input();
    await executed(i, cache);
    expect(await codeOf(beginRequest(d.db, i, cache))).toBe('IDEMPOTENCY_KEY_IN_USE');
    expect(cache.size).toBe(0);
  });

  it('past the key’s expiry is not answered: the database decides (here: expired too, so the request runs afresh)', async () => {
    let now = Date.now();
    const cache = new CompletedResponses(100, () => now);
    const i = input();
    const first = await executed(i, cache);
    await completeRequest(d.db, first.ref, 201, { id: 'pay_3' }, cache);
    expect((await beginRequest(d.db, i, cache)).kind).toBe('replay');

    await d.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
    now += 3_601_000; // the cached copy expires with the key
    const again = await beginRequest(d.db, { ...i, fingerprint: 'fp_other' }, cache);
    expect(again).toMatchObject({ kind: 'execute', resumed: false, resourceId: null });
    expect(cache.size).toBe(0);
  });

  it('is not filled by a completion that lost its key (lease lapsed, taken over by another request)', async () => {
    const cache = new CompletedResponses(100);
    const i = input();
    const stale = await executed(i, cache);
    await d.db.query("UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
    const successor = await executed(i, cache);
    expect(successor.resumed).toBe(true);
    await completeRequest(d.db, stale.ref, 201, { id: 'pay_stale' }, cache);
    expect(cache.size).toBe(0);
    expect(await codeOf(beginRequest(d.db, i, cache))).toBe('IDEMPOTENCY_KEY_IN_USE');
    await completeRequest(d.db, successor.ref, 201, { id: 'pay_successor' }, cache);
    expect(await beginRequest(d.db, i, cache)).toEqual({ kind: 'replay', status: 201, body: { id: 'pay_successor' } });
  });
});
