/**
 * The idempotency-key store's rarer paths (SPEC §9) on a real database, each made certain rather
 * than hoped for: a key past its expiry is forgotten and used afresh; a key deleted, or released,
 * by someone else between beginRequest's own statements is handled on the next round. The
 * interleavings are forced with row and table locks held by other transactions (and observed in
 * pg_stat_activity), never with sleeps. And the housekeeping purge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { beginRequest, completeRequest, purgeExpired, releaseRequest, type BeginInput } from '../../src/idempotency/store.js';
import { canonicalJson, fingerprint } from '../../src/idempotency/fingerprint.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { waitFor } from '../support/harness.js';

let d: TestDatabase;
beforeAll(async () => {
  d = await createTestDatabase();
});
afterAll(async () => d?.drop());

const SCOPE = 'mer_idem_store_test';
let n = 0;
function input(fp = 'fp_a'): BeginInput {
  n += 1;
  return { scope: SCOPE, key: `key_${n}`, fingerprint: fp, method: 'POST', path: '/v1/payments', lockSeconds: 30, ttlSeconds: 3600 };
}

interface KeyState {
  state: string;
  owner: string;
  resource_id: string | null;
  expired: boolean;
}

async function keyRow(key: string): Promise<KeyState | undefined> {
  const r = await d.db.query<KeyState>('SELECT state, owner, resource_id, expires_at <= now() AS expired FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [SCOPE, key]);
  return r.rows[0];
}

/** Resolves once some session of this database waits on a lock while running a statement like `pattern`. */
async function blockedOn(pattern: string): Promise<void> {
  await waitFor(async () => {
    const r = await d.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE $1`,
      [pattern],
    );
    return r.rows[0]!.n > 0 ? true : undefined;
  }, 10_000, `a session blocked on ${pattern}`);
}

async function session(): Promise<pg.PoolClient> {
  const c = await d.db.connect();
  await c.query('BEGIN');
  return c;
}

async function end(c: pg.PoolClient, how: 'COMMIT' | 'ROLLBACK' = 'COMMIT'): Promise<void> {
  try {
    await c.query(how);
  } finally {
    c.release();
  }
}

describe('expiry', () => {
  it('a finished key past its expiry is deleted and the request runs afresh (no replay)', async () => {
    const i = input();
    const first = await beginRequest(d.db, i);
    expect(first.kind).toBe('execute');
    if (first.kind !== 'execute') return;
    await completeRequest(d.db, first.ref, 201, { id: 'pay_first' });
    expect((await beginRequest(d.db, i)).kind).toBe('replay');

    await d.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
    // Even another request body may use it now: the old one is forgotten.
    const again = await beginRequest(d.db, { ...i, fingerprint: 'fp_other' });
    expect(again).toMatchObject({ kind: 'execute', resumed: false, resourceId: null });
    expect(await keyRow(i.key)).toMatchObject({ state: 'in_progress', expired: false, resource_id: null });
  });

  it('the housekeeping purge deletes expired keys in batches and nothing else', async () => {
    const keys = [input(), input(), input()];
    for (const k of keys) expect((await beginRequest(d.db, k)).kind).toBe('execute');
    await d.db.query(
      "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute' WHERE merchant_id = $1 AND key = ANY($2)",
      [SCOPE, [keys[0]!.key, keys[1]!.key]],
    );
    expect(await purgeExpired(d.db, 1)).toBe(1);
    expect(await purgeExpired(d.db)).toBe(1);
    expect(await purgeExpired(d.db)).toBe(0);
    expect(await keyRow(keys[0]!.key)).toBeUndefined();
    expect(await keyRow(keys[1]!.key)).toBeUndefined();
    expect(await keyRow(keys[2]!.key)).toMatchObject({ state: 'in_progress' });
  });
});

describe('someone else acts between beginRequest’s statements', () => {
  it('the key is deleted after our INSERT met it and before our SELECT: the next round takes it afresh', async () => {
    const i = input();
    // A released key with a committed resource (a refused request after its payment was stored).
    const first = await beginRequest(d.db, i);
    if (first.kind !== 'execute') throw new Error('expected execute');
    await d.db.query('UPDATE idempotency_keys SET resource_id = $3 WHERE merchant_id = $1 AND key = $2', [SCOPE, i.key, 'pay_gone']);
    await releaseRequest(d.db, first.ref);
    expect(await keyRow(i.key)).toMatchObject({ state: 'released', resource_id: 'pay_gone' });

    // Another session holds the row: our INSERT sees the conflict, our UPDATE (which would take the
    // released key) waits for that row.
    const holder = await session();
    let begun: ReturnType<typeof beginRequest> | undefined;
    try {
      await holder.query('SELECT 1 FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 FOR UPDATE', [SCOPE, i.key]);
      begun = beginRequest(d.db, i);
      await blockedOn('%UPDATE idempotency_keys%');
      // It deletes the key and commits: our UPDATE finds nothing, our SELECT finds nothing.
      await holder.query('DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [SCOPE, i.key]);
      await end(holder);
    } catch (err) {
      await end(holder, 'ROLLBACK');
      throw err;
    }
    const result = await begun;
    expect(result).toMatchObject({ kind: 'execute', resumed: false, resourceId: null });
    if (result.kind === 'execute') expect(result.ref.owner).not.toBe(first.ref.owner);
    expect(await keyRow(i.key)).toMatchObject({ state: 'in_progress', resource_id: null });
  });

  it('the key is released after our UPDATE missed it and before our SELECT: the next round takes it (resumed)', async () => {
    const i = input();
    const first = await beginRequest(d.db, i);
    if (first.kind !== 'execute') throw new Error('expected execute');
    await d.db.query('UPDATE idempotency_keys SET resource_id = $3 WHERE merchant_id = $1 AND key = $2', [SCOPE, i.key, 'pay_kept']);
    await releaseRequest(d.db, first.ref);

    // A: holds the released row, so our UPDATE (which matches it) waits for A.
    const a = await session();
    const b = await session();
    let begun: ReturnType<typeof beginRequest> | undefined;
    try {
      // (A row lock, not an update: a row another transaction is updating would make our INSERT wait.)
      await a.query('SELECT 1 FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 FOR UPDATE', [SCOPE, i.key]);
      begun = beginRequest(d.db, i);
      await blockedOn('%UPDATE idempotency_keys%');
      // B: queues for the whole table behind our UPDATE, so our SELECT will queue behind B.
      const locking = b.query('LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE');
      await blockedOn('LOCK TABLE idempotency_keys%');
      // A takes the key for a live request and commits: our UPDATE re-reads it and misses. (A may
      // write although B waits for the table: PostgreSQL lets a holder of a conflicting lock go first.)
      await a.query("UPDATE idempotency_keys SET state = 'in_progress', locked_until = now() + interval '1 hour' WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
      await end(a);
      await locking;
      // Our SELECT now waits for B; B's request finishes and releases the key before it reads.
      await blockedOn('%FROM idempotency_keys WHERE merchant_id%');
      await b.query("UPDATE idempotency_keys SET state = 'released', locked_until = NULL WHERE merchant_id = $1 AND key = $2", [SCOPE, i.key]);
      await end(b);
    } catch (err) {
      await end(a, 'ROLLBACK').catch(() => undefined);
      await end(b, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
    const result = await begun;
    expect(result).toMatchObject({ kind: 'execute', resumed: true, resourceId: 'pay_kept' });
    expect(await keyRow(i.key)).toMatchObject({ state: 'in_progress', resource_id: 'pay_kept' });
  });
});

describe('fingerprints', () => {
  it('are independent of key order at every depth and of undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined, x: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":2,"z":1}]},"b":1}');
    expect(fingerprint('post', '/p', { b: 1, a: 2 })).toBe(fingerprint('POST', '/p', { a: 2, b: 1 }));
    expect(fingerprint('POST', '/p', { a: 2 })).not.toBe(fingerprint('POST', '/q', { a: 2 }));
    expect(canonicalJson(undefined)).toBe('null');
  });
});
