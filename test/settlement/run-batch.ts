/**
 * A settlement runner in a process of its own, for the crash test (crash.test.ts), which kills it
 * with SIGKILL in the middle of a batch.
 *
 *   node --import tsx test/settlement/run-batch.ts <database-url> <settlement-id> <lease-seconds>
 */
import { createPool } from '../../src/db/pool.js';
import { runSettlement } from '../../src/settlement/run.js';

const [url, id, leaseSeconds] = process.argv.slice(2);
if (!url || !id || !leaseSeconds) {
  process.stderr.write('usage: run-batch.ts <database-url> <settlement-id> <lease-seconds>\n');
  process.exit(2);
}
const u = new URL(url);
u.searchParams.set('application_name', 'settlement-crash-child');
const db = createPool(u.toString(), 3);
process.stdout.write(`runner ${process.pid} starting ${id}\n`);
const row = await runSettlement(db, id, { leaseSeconds: Number(leaseSeconds), retryDelayMs: 10 });
process.stdout.write(`runner finished: ${row.status}\n`);
await db.end();
