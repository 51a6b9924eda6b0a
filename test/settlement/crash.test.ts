/**
 * A settlement runner killed with SIGKILL in the middle of a chunk, after its first chunk
 * committed (SPEC §13 "a crashed batch resumes where it stopped and never settles twice"). The
 * runner is a real child process (test/settlement/run-batch.ts). To kill it at a known point rather
 * than at a lucky one, a test trigger makes its transaction wait on an advisory lock this test
 * holds, 200 items into the second chunk; it is killed there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resumeUnfinishedSettlements, runSettlementOnce, settlementLeaseName } from '../../src/settlement/run.js';
import { createSettlement, getSettlement } from '../../src/settlement/store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { waitFor } from '../support/harness.js';
import { doubleSettlements, expectNotSettled, expectSettledOnce, minutesAgo, seedMerchant, seedPayments, statusCounts } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ADVISORY_KEY = 7_340_513;

let t: TestDatabase;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await t?.drop();
});

function spawnRunner(settlementId: string, leaseSeconds: number) {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/settlement/run-batch.ts', t.url, settlementId, String(leaseSeconds)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve(signal ?? code);
    }),
  );
  return { child, exited, output: () => out };
}

describe('a settlement runner killed mid-chunk', () => {
  it('loses only the chunk in flight; the resumed batch settles every eligible payment exactly once', async () => {
    const db = t.db;
    const merchant = await seedMerchant(db);
    const eligible = await seedPayments(db, merchant, 2500, { capturedAt: minutesAgo(60) });
    const late = await seedPayments(db, merchant, 3, { capturedAt: minutesAgo(1) });
    const s = await createSettlement(db, { cutoff: minutesAgo(5), chunkSize: 500 });

    // Hold the gate; the runner's item for eligible[700] (the 201st of chunk 2) waits on it.
    const gate = new pg.Client({ connectionString: t.url });
    await gate.connect();
    await gate.query('SELECT pg_advisory_lock($1)', [ADVISORY_KEY]);
    await db.query(`
      CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_advisory_xact_lock_shared(${ADVISORY_KEY});
        RETURN NEW;
      END $$`);
    await db.query(`CREATE TRIGGER test_gate BEFORE INSERT ON settlement_items FOR EACH ROW
                    WHEN (NEW.payment_id = '${eligible[700]}') EXECUTE FUNCTION test_gate()`);

    const runner = spawnRunner(s.id, 4);
    try {
      // The first chunk has committed (the checkpoint moved) and the second is in flight, blocked.
      await waitFor(
        async () => {
          const r = await db.query<{ waiting: boolean; checkpoint: string | null }>(
            `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'settlement-crash-child'
                             AND wait_event_type = 'Lock' AND wait_event = 'advisory') AS waiting,
                    (SELECT last_payment_id FROM settlements WHERE id = $1) AS checkpoint`,
            [s.id],
          );
          return r.rows[0]!.waiting && r.rows[0]!.checkpoint !== null ? true : undefined;
        },
        30_000,
        `the runner to block mid-chunk (output: ${runner.output()})`,
      );
      const mid = await getSettlement(db, s.id);
      expect(mid).toMatchObject({ status: 'running', chunks_completed: 1, settled_count: 500, last_payment_id: eligible[499] });

      runner.child.kill('SIGKILL');
      expect(await runner.exited).toBe('SIGKILL');
    } finally {
      await gate.query('SELECT pg_advisory_unlock($1)', [ADVISORY_KEY]);
      await gate.end();
    }
    // The dead client's backend finishes its statement, finds the connection gone, rolls back.
    await waitFor(
      async () => {
        const r = await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'settlement-crash-child'`);
        return r.rowCount === 0 ? true : undefined;
      },
      30_000,
      "the dead runner's sessions to end",
    );
    await db.query('DROP TRIGGER test_gate ON settlement_items');
    await db.query('DROP FUNCTION test_gate()');

    // Exactly the first chunk is settled; the 200 items of the second were rolled back with it.
    const after = await getSettlement(db, s.id);
    expect(after).toMatchObject({ status: 'running', chunks_completed: 1, settled_count: 500, last_payment_id: eligible[499] });
    await expectSettledOnce(db, s.id, eligible.slice(0, 500));
    await expectNotSettled(db, eligible.slice(500));

    // The dead runner's lease (TTL 4 s, renewed every 1.3 s until the kill moments ago) still
    // blocks a resume until it runs out...
    const lease = await db.query<{ live: boolean }>('SELECT expires_at > now() AS live FROM leases WHERE name = $1', [settlementLeaseName(s.id)]);
    expect(lease.rows[0]?.live).toBe(true);
    const blocked = await runSettlementOnce(db, s.id);
    expect(blocked.ran).toBe(false);
    expect(blocked.row).toMatchObject({ status: 'running', settled_count: 500 });
    expect(await resumeUnfinishedSettlements(db)).toEqual({ found: 1, ran: 0, busy: 1 });
    await waitFor(
      async () => {
        const r = await db.query('SELECT 1 FROM leases WHERE name = $1 AND expires_at > now()', [settlementLeaseName(s.id)]);
        return r.rowCount === 0 ? true : undefined;
      },
      15_000,
      "the dead runner's lease to expire",
    );

    // ...then the worker's resume sweep finishes the batch from its checkpoint.
    expect(await resumeUnfinishedSettlements(db)).toEqual({ found: 1, ran: 1, busy: 0 });
    const done = await getSettlement(db, s.id);
    expect(done).toMatchObject({ status: 'completed', settled_count: 2500, error_count: 0, chunks_completed: 5, last_payment_id: eligible[2499] });
    await expectSettledOnce(db, s.id, eligible);
    await expectNotSettled(db, late);
    expect(await doubleSettlements(db)).toEqual([]);
    const items = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM settlement_items WHERE settlement_id = $1', [s.id]);
    expect(items.rows[0]!.n).toBe(eligible.length);
    expect(await statusCounts(db, [...eligible, ...late])).toEqual({ settled: 2500, captured: 3 });
  });
});
