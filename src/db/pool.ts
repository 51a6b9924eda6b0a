import pg from 'pg';
import { inSpan, SpanKind } from '../observability/tracing.js';

// BIGINT columns (money) come back as JS numbers: every amount is capped at 10^12,
// far below Number.MAX_SAFE_INTEGER, so nothing is lost.
pg.types.setTypeParser(20, (v) => Number(v));

export type Db = pg.Pool;
export type Tx = pg.PoolClient;
export type Queryable = pg.Pool | pg.PoolClient;

export function createPool(connectionString: string, max = 10): Db {
  const pool = new pg.Pool({ connectionString, max });
  const query = pool.query.bind(pool) as (text: string, values?: unknown[]) => Promise<pg.QueryResult>;
  // One span per statement run outside a transaction; the statement text, never its values.
  pool.query = ((text: string, values?: unknown[]) =>
    inSpan('db.query', { 'db.system': 'postgresql', 'db.statement': String(text).slice(0, 200) }, () => query(text, values), SpanKind.CLIENT)) as typeof pool.query;
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn in one transaction; rolls back on any throw. Never call the network inside fn. */
export async function withTx<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return inSpan('db.transaction', { 'db.system': 'postgresql' }, () => runTx(db, fn), SpanKind.CLIENT);
}

async function runTx<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const client = await db.connect();
  // A connection that dies mid-transaction must fail this transaction, not crash the process.
  const onError = () => undefined;
  client.on('error', onError);
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.off('error', onError);
    // A client that could not even roll back is discarded, never handed to the next caller.
    client.release(broken);
  }
}
