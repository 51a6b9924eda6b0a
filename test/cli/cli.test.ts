import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { call, waitFor } from '../support/harness.js';
import { freePort, spawnCli } from '../support/process.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase({ migrate: false });
});
afterAll(async () => database?.drop());

describe('switchyard CLI', () => {
  it('migrates, creates a merchant and a key against DATABASE_URL', async () => {
    const env = { DATABASE_URL: database.url, LOG_LEVEL: 'warn' };
    const migrate = spawnCli(['migrate'], env);
    expect(await migrate.exited).toBe(0);
    const tables = await database.db.query(`SELECT count(*)::int AS n FROM schema_migrations`);
    expect(tables.rows[0].n).toBeGreaterThanOrEqual(1);

    const merchant = spawnCli(['merchant', 'create', '--name', 'Cli Co', '--kyc-status', 'verified'], env);
    expect(await merchant.exited).toBe(0);
    const created = JSON.parse(merchant.output().slice(merchant.output().indexOf('{')));
    expect(created).toMatchObject({ object: 'merchant', name: 'Cli Co', kyc_status: 'verified', onboarding_status: 'activated' });

    const key = spawnCli(['key', 'create', '--merchant', created.id], env);
    expect(await key.exited).toBe(0);
    const clear = /sk_test_[A-Za-z0-9_-]+/.exec(key.output())?.[0];
    expect(clear).toBeDefined();
    const stored = await database.db.query('SELECT count(*)::int AS n FROM api_keys WHERE merchant_id = $1', [created.id]);
    expect(stored.rows[0].n).toBe(1);
    // Only a keyed hash is stored: the clear key appears nowhere in the table.
    const leaked = await database.db.query(`SELECT count(*)::int AS n FROM api_keys WHERE encode(key_hash, 'escape') LIKE '%' || $1 || '%' OR prefix = $1`, [clear]);
    expect(leaked.rows[0].n).toBe(0);
  });

  it('refuses bad configuration with one clear message per variable', async () => {
    const run = spawnCli(['migrate'], { PORT: 'eighty', DATABASE_URL: 'not a url' });
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/PORT/);
    expect(run.output()).toMatch(/DATABASE_URL/);
  });

  it('refuses an unknown command with usage', async () => {
    const run = spawnCli(['frobnicate'], {});
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/Usage: switchyard/);
  });
});

describe('first run with the embedded database (npm start)', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'switchyard-start-'));
  });
  afterAll(async () => rm(dataDir, { recursive: true, force: true }));

  it('starts PostgreSQL, seeds a demo merchant, prints a working key and curl, and persists across restarts', { timeout: 150_000 }, async () => {
    const port = await freePort();
    const env = { DATABASE_URL: undefined, SWITCHYARD_DATA_DIR: dataDir, PORT: String(port), SWITCHYARD_ADMIN_KEY: undefined, LOG_LEVEL: 'warn' };
    const first = spawnCli(['start'], env);
    try {
      await waitFor(async () => {
        if (first.child.exitCode !== null) throw new Error(`start exited early:\n${first.output()}`);
        return first.output().includes('Try it') ? true : undefined;
      }, 60_000, 'the first-run banner');
      const out = first.output();
      const key = /sk_test_[A-Za-z0-9_-]+/.exec(out)?.[0];
      const admin = /sy_admin_[A-Za-z0-9_-]+/.exec(out)?.[0];
      expect(key).toBeDefined();
      expect(admin).toBeDefined();
      expect(out).toContain(`curl -s -X POST http://localhost:${port}/v1/payments`);
      // The printed curl's body, sent as printed.
      const body = /-d '(.*)'/.exec(out)![1]!;
      const res = await call({ url: `http://127.0.0.1:${port}` }, 'POST', '/v1/payments', { key, raw: body, headers: { 'idempotency-key': 'first-run' } });
      expect(res.status).toBe(201);
      expect(res.body.status).toBe('captured');
      expect((await readFile(path.join(dataDir, 'admin-key'), 'utf8')).trim()).toBe(admin);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      // Second start: same data, no new demo merchant, the payment is still there.
      const second = spawnCli(['start'], env);
      try {
        await waitFor(async () => (second.output().includes('listening') ? true : undefined), 60_000, 'the second start');
        expect(second.output()).not.toContain('Try it');
        const again = await call({ url: `http://127.0.0.1:${port}` }, 'GET', `/v1/payments/${res.body.id}`, { key });
        expect(again.status).toBe(200);
        expect(again.body.status).toBe('captured');
      } finally {
        second.child.kill('SIGTERM');
        await second.exited;
      }
    } finally {
      first.child.kill('SIGKILL');
    }
  });
});
