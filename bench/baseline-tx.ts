/**
 * The baseline's confirm-shaped transaction and its tables: BEGIN; UPDATE one row; INSERT two
 * rows; INSERT one outbox row; COMMIT. Used by the baseline server (over HTTP) and by the raw
 * commit-rate measurement (directly with pg, no HTTP), so both measure the same work.
 */
import type pg from 'pg';

export const BASELINE_ACCOUNTS = 10_000;

export const BASELINE_SCHEMA = `
  DROP TABLE IF EXISTS bench_entries, bench_outbox, bench_accounts;
  CREATE TABLE bench_accounts (
    id         integer PRIMARY KEY,
    balance    bigint NOT NULL DEFAULT 0,
    version    integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE bench_entries (
    id         bigserial PRIMARY KEY,
    account_id integer NOT NULL REFERENCES bench_accounts(id),
    kind       text NOT NULL,
    amount     bigint NOT NULL,
    ref        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX bench_entries_account_idx ON bench_entries (account_id, id);
  CREATE TABLE bench_outbox (
    id            bigserial PRIMARY KEY,
    account_id    integer NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
  );
  CREATE INDEX bench_outbox_undispatched_idx ON bench_outbox (id) WHERE dispatched_at IS NULL;
  INSERT INTO bench_accounts (id) SELECT generate_series(1, ${BASELINE_ACCOUNTS});
`;

export async function confirmTx(client: pg.PoolClient | pg.Client, account: number, amount: number, ref: string): Promise<number> {
  await client.query('BEGIN');
  try {
    const r = await client.query<{ version: number }>(
      'UPDATE bench_accounts SET balance = balance + $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING version',
      [account, amount],
    );
    await client.query(`INSERT INTO bench_entries (account_id, kind, amount, ref) VALUES ($1, 'debit', $2, $3), ($1, 'credit', $2, $3)`, [account, amount, ref]);
    await client.query('INSERT INTO bench_outbox (account_id, type, payload) VALUES ($1, $2, $3)', [
      account,
      'payment.captured',
      JSON.stringify({ account, amount, ref, version: r.rows[0]?.version }),
    ]);
    await client.query('COMMIT');
    return r.rows[0]?.version ?? 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
