/**
 * Idempotency keys (SPEC §9). A key moves in_progress → completed (response stored) or
 * in_progress → released (refused or unfinished: usable again). An in_progress key whose lease has
 * lapsed belonged to a request that died; the next request with it resumes from its recovery point.
 */
import { randomBytes } from 'node:crypto';
import { AppError } from '../domain/errors.js';
import type { Db, Tx } from '../db/pool.js';

export interface KeyRef {
  scope: string;
  key: string;
  owner: string;
}

export type Begin =
  | { kind: 'execute'; ref: KeyRef; resourceId: string | null; resumed: boolean }
  | { kind: 'replay'; status: number; body: unknown };

export interface BeginInput {
  scope: string;
  key: string;
  fingerprint: string;
  method: string;
  path: string;
  lockSeconds: number;
  ttlSeconds: number;
}

interface KeyRow {
  fingerprint: string;
  state: 'in_progress' | 'released' | 'completed';
  response_status: number | null;
  response_body: unknown;
  wait_seconds: number;
  expired: boolean;
}

export async function beginRequest(db: Db, input: BeginInput): Promise<Begin> {
  // base64url, not a dashed UUID: no long digit runs that a card-number scan could mistake
  const owner = randomBytes(16).toString('base64url');
  const ref = { scope: input.scope, key: input.key, owner };
  for (;;) {
    const inserted = await db.query(
      `INSERT INTO idempotency_keys (merchant_id, key, fingerprint, method, path, state, owner, locked_until, expires_at)
       VALUES ($1, $2, $3, $4, $5, 'in_progress', $6, now() + make_interval(secs => $7), now() + make_interval(secs => $8))
       ON CONFLICT (merchant_id, key) DO NOTHING`,
      [input.scope, input.key, input.fingerprint, input.method, input.path, owner, input.lockSeconds, input.ttlSeconds],
    );
    if (inserted.rowCount === 1) return { kind: 'execute', ref, resourceId: null, resumed: false };

    const taken = await db.query<{ resource_id: string | null }>(
      `UPDATE idempotency_keys
          SET state = 'in_progress', owner = $4, locked_until = now() + make_interval(secs => $5), updated_at = now()
        WHERE merchant_id = $1 AND key = $2 AND fingerprint = $3 AND expires_at > now()
          AND (state = 'released' OR (state = 'in_progress' AND locked_until < now()))
        RETURNING resource_id`,
      [input.scope, input.key, input.fingerprint, owner, input.lockSeconds],
    );
    if (taken.rows[0]) return { kind: 'execute', ref, resourceId: taken.rows[0].resource_id, resumed: true };

    const r = await db.query<KeyRow>(
      `SELECT fingerprint, state, response_status, response_body, expires_at <= now() AS expired,
              GREATEST(1, ceil(extract(epoch FROM locked_until - now())))::int AS wait_seconds
         FROM idempotency_keys WHERE merchant_id = $1 AND key = $2`,
      [input.scope, input.key],
    );
    const row = r.rows[0];
    if (!row) continue; // released and deleted between our statements: try again
    if (row.expired) {
      await db.query('DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at <= now()', [input.scope, input.key]);
      continue;
    }
    if (row.fingerprint !== input.fingerprint) {
      throw new AppError('IDEMPOTENCY_KEY_REUSED', 'This idempotency key was already used with a different request.');
    }
    if (row.state === 'completed') return { kind: 'replay', status: row.response_status!, body: row.response_body };
    if (row.state === 'in_progress') {
      throw new AppError('IDEMPOTENCY_KEY_IN_USE', 'A request with this idempotency key is still being processed.', {
        retryAfter: row.wait_seconds,
      });
    }
    // released by its owner between our UPDATE and SELECT: take it on the next round.
  }
}

/** Stores the recovery point in the caller's transaction, so it commits with the resource it names. */
export async function recordRecoveryPoint(tx: Tx, ref: KeyRef, resourceId: string): Promise<void> {
  await tx.query(
    `UPDATE idempotency_keys SET recovery_point = 'resource_created', resource_id = $4, updated_at = now()
      WHERE merchant_id = $1 AND key = $2 AND owner = $3`,
    [ref.scope, ref.key, ref.owner, resourceId],
  );
}

export async function completeRequest(db: Db, ref: KeyRef, status: number, body: unknown): Promise<void> {
  await db.query(
    `UPDATE idempotency_keys SET state = 'completed', recovery_point = 'finished', response_status = $4, response_body = $5,
            locked_until = NULL, updated_at = now()
      WHERE merchant_id = $1 AND key = $2 AND owner = $3`,
    [ref.scope, ref.key, ref.owner, status, JSON.stringify(body)],
  );
}

/** Lets the key be used again: forgotten when nothing was committed, else kept with its recovery point. */
export async function releaseRequest(db: Db, ref: KeyRef): Promise<void> {
  await db.query(
    `DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND owner = $3 AND resource_id IS NULL`,
    [ref.scope, ref.key, ref.owner],
  );
  await db.query(
    `UPDATE idempotency_keys SET state = 'released', locked_until = NULL, updated_at = now()
      WHERE merchant_id = $1 AND key = $2 AND owner = $3`,
    [ref.scope, ref.key, ref.owner],
  );
}

/** Housekeeping: drops keys past their expiry. */
export async function purgeExpired(db: Db, batch = 1000): Promise<number> {
  const r = await db.query(
    `DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)`,
    [batch],
  );
  // A DELETE always reports its row count; Number() keeps the type honest without a dead branch.
  return Number(r.rowCount);
}
