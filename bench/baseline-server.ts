/**
 * The lean baseline: a minimal Fastify + pg server with one endpoint doing one confirm-shaped
 * transaction (bench/baseline-tx.ts) against its own tables in the same database. No auth, no
 * validation, no idempotency, no logging, no provider call: what one Node process and this
 * database can do for a single durable state change per request — "the lean physical limit of
 * this machine" that Switchyard is compared with.
 *
 * Env: DATABASE_URL, PORT, DB_POOL_MAX (default 20). Run by the bench as its own child process.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { BASELINE_ACCOUNTS, confirmTx } from './baseline-tx.js';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const pool = new pg.Pool({ connectionString: url, max: Number(process.env.DB_POOL_MAX ?? 20) });
pool.on('error', () => undefined);

const app = Fastify({ logger: false });
app.post<{ Body: { amount?: number; ref?: string } | null }>('/confirm', async (req, reply) => {
  // A different row each time, like Switchyard's fresh payment row: no lock contention.
  const account = 1 + Math.floor(Math.random() * BASELINE_ACCOUNTS);
  const amount = typeof req.body?.amount === 'number' ? req.body.amount : 100;
  const ref = typeof req.body?.ref === 'string' ? req.body.ref : 'none';
  const client = await pool.connect();
  try {
    const version = await confirmTx(client, account, amount, ref);
    return reply.code(200).send({ status: 'captured', account, version });
  } finally {
    client.release();
  }
});
app.get('/health', async () => ({ status: 'ok' }));

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write('baseline listening\n');
const stop = () => {
  app
    .close()
    .then(() => pool.end())
    .finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
