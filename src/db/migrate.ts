import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Db } from './pool.js';
import { withTx } from './pool.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any constant works; it only has to be the same in every process that migrates.
const MIGRATION_LOCK = 7_340_001;

export async function listMigrations(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
}

/** Applies pending migrations, each in its own transaction; safe to run from many processes at once. */
export async function migrate(db: Db): Promise<string[]> {
  const applied: string[] = [];
  await withTx(db, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await tx.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
    );
    for (const file of await listMigrations()) {
      if (done.has(file)) continue;
      const sql = await readFile(path.join(MIGRATIONS_DIR, file), 'utf8');
      await tx.query(sql);
      await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
      applied.push(file);
    }
  });
  return applied;
}

/** True when every migration shipped with this build is applied (readiness). */
export async function migrationsApplied(db: Db): Promise<boolean> {
  const res = await db
    .query<{ version: string }>('SELECT version FROM schema_migrations')
    .catch(() => ({ rows: [] as { version: string }[] }));
  const done = new Set(res.rows.map((r) => r.version));
  return (await listMigrations()).every((f) => done.has(f));
}
