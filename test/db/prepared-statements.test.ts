/**
 * Statements run prepared (src/db/pool.ts). A migration that changes a table's columns under a
 * running process invalidates plans of `SELECT *`: the statement fails once on that connection,
 * the connection is discarded, and the next use of the statement works on the new schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createPool, isStalePlan, withTx, type Db } from '../../src/db/pool.js';

let t: TestDatabase;
let db: Db;

beforeAll(async () => {
  t = await createTestDatabase({ migrate: false });
  db = createPool(t.url, 1);
  await db.query('CREATE TABLE widgets (id int PRIMARY KEY, name text)');
  await db.query(`INSERT INTO widgets VALUES (1, 'a')`);
});
afterAll(async () => {
  await db?.end();
  await t?.drop();
});

const read = 'SELECT * FROM widgets WHERE id = $1';

describe('prepared statements', () => {
  it('a statement runs prepared on its connection after the first use', async () => {
    expect((await db.query(read, [1])).rows).toEqual([{ id: 1, name: 'a' }]);
    const prepared = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1`, [read]);
    expect(prepared.rows[0]!.n).toBe(1);
  });

  it('a column added under a running pool: one failure on that connection, then the new shape', async () => {
    await withTx(db, async (tx) => tx.query(read, [1]));
    await db.query('ALTER TABLE widgets ADD COLUMN colour text');
    const failed = await withTx(db, async (tx) => tx.query(read, [1])).catch((err: unknown) => err);
    expect(isStalePlan(failed)).toBe(true);
    expect((await withTx(db, async (tx) => tx.query(read, [1]))).rows).toEqual([{ id: 1, name: 'a', colour: null }]);

    await db.query('ALTER TABLE widgets ADD COLUMN size int');
    const outside = await db.query(read, [1]).catch((err: unknown) => err);
    expect(isStalePlan(outside)).toBe(true);
    expect((await db.query(read, [1])).rows).toEqual([{ id: 1, name: 'a', colour: null, size: null }]);
  });

  it('DB_PREPARED_STATEMENTS=0: statements run unnamed (for poolers that cannot keep them)', async () => {
    const plain = createPool(t.url, 1, { prepared: false });
    try {
      await plain.query(read, [1]);
      const prepared = await plain.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_statements`, []);
      expect(prepared.rows[0]!.n).toBe(0);
    } finally {
      await plain.end();
    }
  });
});
