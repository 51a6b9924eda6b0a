/**
 * The benchmark's database: an embedded PostgreSQL in a temp dir (default) or a fresh database on
 * the server of DATABASE_URL; its settings; and the raw commit rate of the baseline transaction
 * with no HTTP in between (node-postgres clients, and pgbench when it is installed).
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { createPool } from '../src/db/pool.js';
import { migrate } from '../src/db/migrate.js';
import { BASELINE_ACCOUNTS, BASELINE_SCHEMA, confirmTx } from './baseline-tx.js';
import { onCleanup, onExitSync, postmasterOf, removeDirSync, sleep } from './procs.js';
import { percentiles, type Percentiles } from './load.js';

export interface BenchDatabase {
  url: string;
  kind: 'embedded' | 'external';
  /** The temp dir holding the embedded cluster (removed at cleanup). */
  dir: string | null;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** "name=value;name=value" → pairs; names are plain setting names, values any text. */
export function parsePgSettings(text: string): Array<[string, string]> {
  return text
    .split(';')
    .map((x) => x.trim())
    .filter(Boolean)
    .map((x) => {
      const eq = x.indexOf('=');
      const name = eq > 0 ? x.slice(0, eq).trim() : '';
      if (!/^[a-z_][a-z0-9_.]*$/.test(name)) throw new Error(`pg-settings: "${x}" is not name=value`);
      return [name, x.slice(eq + 1).trim()] as [string, string];
    });
}

export async function openBenchDatabase(
  externalUrl: string | undefined,
  log: (m: string) => void,
  opts: { statements: boolean; pgSettings?: Array<[string, string]> },
): Promise<BenchDatabase> {
  const extra = opts.pgSettings ?? [];
  if (externalUrl) {
    if (extra.length > 0) throw new Error('pg-settings applies to the embedded cluster only; set them on the DATABASE_URL server yourself');
    const name = `switchyard_bench_${Date.now().toString(36)}_${process.pid}`;
    const admin = new pg.Client({ connectionString: externalUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    onCleanup('bench database', async () => {
      const c = new pg.Client({ connectionString: externalUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    });
    log(`database: fresh database ${name} on the DATABASE_URL server`);
    return { url: withDatabase(externalUrl, name), kind: 'external', dir: null };
  }
  // /tmp, not a dir private to root: as root the cluster runs as the postgres user.
  const dir = await mkdtemp(path.join(tmpdir(), 'switchyard-bench-'));
  onExitSync(() => {
    // The bench died without its cleanup: stop the cluster at once (SIGQUIT) and drop its files.
    try {
      const pid = Number(spawnSync('head', ['-1', path.join(dir, 'pg', 'postmaster.pid')], { encoding: 'utf8' }).stdout.trim());
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      /* not running */
    }
    removeDirSync(dir);
  });
  onCleanup('embedded PostgreSQL temp dir', async () => removeDirSync(dir));
  const started = performance.now();
  let embedded = await startEmbeddedPostgres(dir);
  if (opts.statements || extra.length > 0) {
    // pg_stat_statements needs shared memory of its own: preload it and restart once (and the
    // extra settings take effect with the same restart).
    const c = new pg.Client({ connectionString: embedded.url });
    await c.connect();
    if (opts.statements) await c.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    for (const [name, value] of extra) await c.query(`ALTER SYSTEM SET ${name} = ${c.escapeLiteral(value)}`);
    await c.end();
    await embedded.stop();
    embedded = await startEmbeddedPostgres(dir);
  }
  const running = embedded;
  onCleanup('embedded PostgreSQL', () => running.stop());
  log(`database: embedded PostgreSQL in ${dir} (started in ${((performance.now() - started) / 1000).toFixed(1)} s${opts.statements ? ', pg_stat_statements preloaded' : ''})`);
  return { url: embedded.url, kind: 'embedded', dir };
}

export interface DatabaseFacts {
  version: string;
  settings: Record<string, string>;
  /** The postmaster's pid when the server runs on this machine (for CPU accounting), else null. */
  postmasterPid: number | null;
}

export const SETTINGS = [
  'synchronous_commit',
  'fsync',
  'wal_sync_method',
  'full_page_writes',
  'commit_delay',
  'shared_buffers',
  'max_connections',
  'wal_level',
  'max_wal_size',
  'checkpoint_timeout',
  'work_mem',
  'shared_preload_libraries',
];

export async function databaseFacts(url: string, extra: readonly string[] = []): Promise<DatabaseFacts> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const version = (await c.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
    const settings: Record<string, string> = {};
    for (const s of [...SETTINGS, ...extra]) settings[s] = (await c.query<Record<string, string>>(`SHOW ${s}`)).rows[0]![s]!;
    const backendPid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    return { version, settings, postmasterPid: postmasterOf(backendPid) };
  } finally {
    await c.end();
  }
}

/** Switchyard's migrations (via migrate()) and the baseline's own tables. */
export async function prepareSchema(url: string): Promise<string[]> {
  const db = createPool(url, 2);
  try {
    const applied = await migrate(db);
    await db.query(BASELINE_SCHEMA);
    return applied;
  } finally {
    await db.end();
  }
}

export interface RawCommitResult {
  tool: 'node-postgres' | 'pgbench';
  clients: number;
  seconds: number;
  transactions: number;
  tps: number;
  latencyMs?: Percentiles;
  errors: number;
  note?: string;
}

/**
 * Closed loop, `clients` connections each running the baseline transaction back to back for
 * `seconds` (after a 1 s warm-up): the database's commit rate for that work with no HTTP and no
 * framework in between. The client side is this (single-threaded) Node process, so at high client
 * counts it may be the limit rather than the database; pgbench, when present, has no such ceiling.
 */
export async function rawCommitRate(url: string, clients: number, seconds: number): Promise<RawCommitResult> {
  const conns: pg.Client[] = [];
  for (let i = 0; i < clients; i++) {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => undefined); // the server going away (interrupted run) fails the queries instead
    await c.connect();
    conns.push(c);
  }
  try {
    const warmEnd = performance.now() + 1000;
    const end = warmEnd + seconds * 1000;
    let done = 0;
    let errors = 0;
    const lat: number[] = [];
    let n = 0;
    await Promise.all(
      conns.map(async (c, k) => {
        while (performance.now() < end) {
          const t = performance.now();
          try {
            await confirmTx(c, 1 + ((k * 7919 + n++ * 104_729) % BASELINE_ACCOUNTS), 100, 'raw');
            if (t >= warmEnd) {
              done += 1;
              if (lat.length < 2_000_000) lat.push(performance.now() - t);
            }
          } catch {
            if (t >= warmEnd) errors += 1;
            if (errors > 100) return; // the database went away (interrupted run): stop hammering it
          }
        }
      }),
    );
    return { tool: 'node-postgres', clients, seconds, transactions: done, tps: done / seconds, latencyMs: percentiles(lat), errors };
  } finally {
    await Promise.all(conns.map((c) => c.end().catch(() => undefined)));
  }
}

export function pgbenchAvailable(): string | null {
  const r = spawnSync('pgbench', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The same transaction as a pgbench custom script (prepared statements), when pgbench is installed. */
export async function pgbenchCommitRate(url: string, clients: number, seconds: number, workDir: string): Promise<RawCommitResult | null> {
  const script = path.join(workDir, 'baseline.pgbench.sql');
  await writeFile(
    script,
    [
      `\\set aid random(1, ${BASELINE_ACCOUNTS})`,
      'BEGIN;',
      'UPDATE bench_accounts SET balance = balance + 100, version = version + 1, updated_at = now() WHERE id = :aid RETURNING version;',
      `INSERT INTO bench_entries (account_id, kind, amount, ref) VALUES (:aid, 'debit', 100, 'pgbench'), (:aid, 'credit', 100, 'pgbench');`,
      `INSERT INTO bench_outbox (account_id, type, payload) VALUES (:aid, 'payment.captured', '{"ref":"pgbench"}');`,
      'COMMIT;',
      '',
    ].join('\n'),
  );
  const threads = Math.min(2, clients);
  const args = ['-n', '-M', 'prepared', '-f', script, '-c', String(clients), '-j', String(threads), '-T', String(Math.max(1, Math.round(seconds))), url];
  const proc = spawn('pgbench', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await Promise.race([
    new Promise<number | null>((r) => proc.on('exit', (c) => r(c))),
    sleep((seconds + 30) * 1000).then(() => {
      proc.kill('SIGKILL');
      return -1;
    }),
  ]);
  const tps = /tps = ([\d.]+)/.exec(out);
  const count = /number of transactions actually processed: (\d+)/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  const latency = /latency average = ([\d.]+) ms/.exec(out);
  if (code !== 0 || !tps) return { tool: 'pgbench', clients, seconds, transactions: 0, tps: 0, errors: 1, note: `pgbench failed (${code}): ${out.slice(-300)}` };
  return {
    tool: 'pgbench',
    clients,
    seconds,
    transactions: Number(count?.[1] ?? 0),
    tps: Number(tps[1]),
    errors: Number(failed?.[1] ?? 0),
    ...(latency ? { note: `latency average ${latency[1]} ms` } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// What the database did during a window: transactions and rows (always), statements (when
// pg_stat_statements is loaded).

export interface DbCounters {
  xact_commit: number;
  xact_rollback: number;
  tup_inserted: number;
  tup_updated: number;
  tup_deleted: number;
  tup_fetched: number;
}

/**
 * `unitTable`: a table that gets exactly one row per unit of work (payments: `payments`; the
 * baseline: `bench_outbox`; deliveries: `webhook_delivery_attempts`); its insert count is then the
 * divisor for per-request figures, so requests that failed or were still queued are not counted.
 */
export async function dbCounters(db: pg.Pool, unitTable?: string): Promise<DbCounters & { units: number }> {
  // Statistics are cached per transaction and flushed by backends about once a second; clear the
  // snapshot so this reads what has been reported so far.
  const c = await db.connect();
  try {
    await c.query('SELECT pg_stat_clear_snapshot()');
    const r = await c.query<Record<keyof DbCounters, string>>(
      `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched
         FROM pg_stat_database WHERE datname = current_database()`,
    );
    const row = r.rows[0]!;
    const counters = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)])) as unknown as DbCounters;
    let units = 0;
    if (unitTable) {
      const u = await c.query<{ n: string }>('SELECT n_tup_ins AS n FROM pg_stat_user_tables WHERE relname = $1', [unitTable]);
      units = Number(u.rows[0]?.n ?? 0);
    }
    return { ...counters, units };
  } finally {
    c.release();
  }
}

/**
 * Per request: counters(after) − counters(before), divided by the units made in between (when a
 * unit table was given and rows appeared) or else by `requests`. `units` in the result is the divisor.
 */
export function perRequest(before: DbCounters & { units: number }, after: DbCounters & { units: number }, requests: number): Record<string, number> {
  const made = after.units - before.units;
  const divisor = made > 0 ? made : requests;
  const out: Record<string, number> = { units: divisor };
  for (const k of ['xact_commit', 'xact_rollback', 'tup_inserted', 'tup_updated', 'tup_deleted', 'tup_fetched'] as (keyof DbCounters)[]) {
    out[k] = divisor > 0 ? Math.round(((after[k] - before[k]) / divisor) * 100) / 100 : 0;
  }
  return out;
}

export async function enableStatementStats(db: pg.Pool): Promise<boolean> {
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await db.query('SELECT 1 FROM pg_stat_statements LIMIT 1');
    return true;
  } catch {
    return false;
  }
}

export interface StatementRow {
  query: string;
  calls: number;
  per_request: number;
  total_ms: number;
  mean_ms: number;
  rows: number;
}

export async function resetStatements(db: pg.Pool): Promise<void> {
  await db.query('SELECT pg_stat_statements_reset()');
}

export interface StatementSummary {
  requests: number;
  statements_per_request: number;
  exec_ms_per_request: number;
  top: StatementRow[];
}

/** Statements of this database since the last reset, heaviest first (the bench's own left out). */
export async function readStatements(db: pg.Pool, requests: number, top = 20): Promise<StatementSummary> {
  const r = await db.query<{ query: string; calls: string; total: number; rows: string }>(
    `SELECT regexp_replace(s.query, '\\s+', ' ', 'g') AS query, s.calls, s.total_exec_time AS total, s.rows
       FROM pg_stat_statements s
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.query NOT ILIKE '%pg_stat_statements%' AND s.query NOT ILIKE '%pg_stat_database%' AND s.query NOT ILIKE '%pg_stat_clear_snapshot%'
      ORDER BY s.total_exec_time DESC`,
  );
  const rows = r.rows.map((x) => ({ query: x.query.slice(0, 240), calls: Number(x.calls), total_ms: x.total, rows: Number(x.rows) }));
  const calls = rows.reduce((a, b) => a + b.calls, 0);
  const total = rows.reduce((a, b) => a + b.total_ms, 0);
  const per = (v: number) => (requests > 0 ? Math.round((v / requests) * 100) / 100 : 0);
  return {
    requests,
    statements_per_request: per(calls),
    exec_ms_per_request: per(total),
    top: rows.slice(0, top).map((x) => ({ ...x, per_request: requests > 0 ? x.calls / requests : 0, mean_ms: x.calls > 0 ? x.total_ms / x.calls : 0 })),
  };
}
