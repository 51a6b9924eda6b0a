import pg from 'pg';
import { inject } from 'vitest';
import { createPool, type Db } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';

export interface TestDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

export function getAdminDatabaseUrl(): string {
  return inject('adminDatabaseUrl');
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A fresh, migrated database on the test server, private to the calling test file. */
export async function createTestDatabase(opts: { migrate?: boolean; poolMax?: number } = {}): Promise<TestDatabase> {
  const admin = getAdminDatabaseUrl();
  const name = `sy_test_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const url = withDatabase(admin, name);
  const db = createPool(url, opts.poolMax ?? 20);
  if (opts.migrate !== false) await migrate(db);
  return {
    url,
    db,
    async drop() {
      await db.end();
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** `db` seen through a counter of the statements sent with db.query (transactions are not counted). */
export function countingQueries(db: Db): { db: Db; statements: () => number } {
  let count = 0;
  const counting = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'query') {
        return (...args: unknown[]) => {
          count += 1;
          return (target.query as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  return { db: counting, statements: () => count };
}
