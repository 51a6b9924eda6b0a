/**
 * Idempotency keys (SPEC §9). A key moves in_progress → completed (response stored) or
 * in_progress → released (refused or unfinished: usable again). An in_progress key whose lease has
 * lapsed belonged to a request that died; the next request with it resumes from its recovery point.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { AppError } from '../domain/errors.js';
import type { Db, Tx } from '../db/pool.js';

export interface KeyRef {
  scope: string;
  key: string;
  owner: string;
  /** Of the request holding the key, so a completed response can be cached with it. */
  fingerprint: string;
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

interface CompletedResponse {
  fingerprint: string;
  status: number;
  body: unknown;
  /** Epoch milliseconds: the key's expires_at. */
  expiresAt: number;
}

/**
 * Finished responses of recent keys, in this process's memory (ADR 0010): a completed key never
 * changes until it expires, so a replay of one this process finished or read needs no database.
 * Bounded (least recently used go first); an entry past its key's expiry is never answered.
 */
export class CompletedResponses {
  private readonly entries: LRUCache<string, CompletedResponse> | null;

  /** maxEntries 0 turns the cache off; `now` (epoch ms) is for tests. */
  constructor(maxEntries: number, private readonly now: () => number = Date.now) {
    // lru-cache drops an entry once its ttl (set per entry from the key's expiry) has passed.
    this.entries = maxEntries > 0 ? new LRUCache<string, CompletedResponse>({ max: maxEntries, perf: { now }, ttlResolution: 0 }) : null;
  }

  get size(): number {
    return this.entries?.size ?? 0;
  }

  get(scope: string, key: string): CompletedResponse | undefined {
    // Keys are printable ASCII, so a newline cannot occur in either part.
    return this.entries?.get(`${scope}\n${key}`);
  }

  set(scope: string, key: string, response: CompletedResponse): void {
    // lru-cache treats an entry as stale only once its ttl is exceeded; the key is expired at its
    // expiry instant already, hence one millisecond less (and a ttl of 0 would mean "forever").
    const ttl = response.expiresAt - this.now() - 1;
    if (ttl > 0) this.entries?.set(`${scope}\n${key}`, response, { ttl });
  }
}

interface BeginRow {
  inserted: boolean;
  fingerprint: string;
  state: 'in_progress' | 'released' | 'completed';
  response_status: number | null;
  response_body: unknown;
  expires_at: Date;
  expired: boolean;
  /** Released, or in progress with its lease lapsed: a retry may take the key over. */
  takeable: boolean;
  wait_seconds: number;
}

/**
 * One statement for the common cases: the INSERT of a new key, or, when the key exists, its row as
 * it stands (committed before this statement began, so visible in its snapshot). The SELECT branch
 * cannot see the row the INSERT adds, and is empty when the INSERT added one. No row at all means
 * the INSERT met a key committed after the statement began (or just deleted): the caller asks again.
 */
const BEGIN = `WITH ins AS (
  INSERT INTO idempotency_keys (merchant_id, key, fingerprint, method, path, state, owner, locked_until, expires_at)
  VALUES ($1, $2, $3, $4, $5, 'in_progress', $6, now() + make_interval(secs => $7), now() + make_interval(secs => $8))
  ON CONFLICT (merchant_id, key) DO NOTHING
  RETURNING 1
)
SELECT true AS inserted, NULL AS fingerprint, NULL AS state, NULL AS response_status, NULL AS response_body, NULL AS expires_at,
       false AS expired, false AS takeable, NULL AS wait_seconds
  FROM ins
UNION ALL
SELECT false, fingerprint, state, response_status, response_body, expires_at, expires_at <= now(),
       state = 'released' OR (state = 'in_progress' AND locked_until < now()),
       GREATEST(1, ceil(extract(epoch FROM locked_until - now())))::int
  FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM ins)`;

/**
 * Starts a request under its key. With a cache, a finished response this process has seen is
 * answered from memory (its fingerprint and expiry still checked); otherwise usually one statement.
 */
export async function beginRequest(db: Db, input: BeginInput, cache?: CompletedResponses): Promise<Begin> {
  const hit = cache?.get(input.scope, input.key);
  if (hit) {
    if (hit.fingerprint !== input.fingerprint) throw reused();
    return { kind: 'replay', status: hit.status, body: hit.body };
  }
  // base64url, not a dashed UUID: no long digit runs that a card-number scan could mistake
  const owner = randomBytes(16).toString('base64url');
  const ref = { scope: input.scope, key: input.key, owner, fingerprint: input.fingerprint };
  for (;;) {
    const r = await db.query<BeginRow>(BEGIN, [
      input.scope,
      input.key,
      input.fingerprint,
      input.method,
      input.path,
      owner,
      input.lockSeconds,
      input.ttlSeconds,
    ]);
    const row = r.rows[0];
    if (!row) continue; // met a key committed (or deleted) after this statement began: look again
    if (row.inserted) return { kind: 'execute', ref, resourceId: null, resumed: false };
    if (row.expired) {
      await db.query('DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at <= now()', [input.scope, input.key]);
      continue;
    }
    if (row.state === 'completed') {
      cache?.set(input.scope, input.key, {
        fingerprint: row.fingerprint,
        status: row.response_status!,
        body: row.response_body,
        expiresAt: row.expires_at.getTime(),
      });
    }
    if (row.fingerprint !== input.fingerprint) throw reused();
    if (row.state === 'completed') return { kind: 'replay', status: row.response_status!, body: row.response_body };
    if (!row.takeable) {
      throw new AppError('IDEMPOTENCY_KEY_IN_USE', 'A request with this idempotency key is still being processed.', {
        retryAfter: row.wait_seconds,
      });
    }
    const taken = await db.query<{ resource_id: string | null }>(
      `UPDATE idempotency_keys
          SET state = 'in_progress', owner = $4, locked_until = now() + make_interval(secs => $5), updated_at = now()
        WHERE merchant_id = $1 AND key = $2 AND fingerprint = $3 AND expires_at > now()
          AND (state = 'released' OR (state = 'in_progress' AND locked_until < now()))
        RETURNING resource_id`,
      [input.scope, input.key, input.fingerprint, owner, input.lockSeconds],
    );
    if (taken.rows[0]) return { kind: 'execute', ref, resourceId: taken.rows[0].resource_id, resumed: true };
    // Someone else took, finished or deleted the key since our read: look again.
  }
}

function reused(): AppError {
  return new AppError('IDEMPOTENCY_KEY_REUSED', 'This idempotency key was already used with a different request.');
}

/** Stores the recovery point in the caller's transaction, so it commits with the resource it names. */
export async function recordRecoveryPoint(tx: Tx, ref: KeyRef, resourceId: string): Promise<void> {
  await tx.query(
    `UPDATE idempotency_keys SET recovery_point = 'resource_created', resource_id = $4, updated_at = now()
      WHERE merchant_id = $1 AND key = $2 AND owner = $3`,
    [ref.scope, ref.key, ref.owner, resourceId],
  );
}

/** Stores the response; with a cache, also keeps it in memory, exactly as a replay from the database would read it. */
export async function completeRequest(db: Db, ref: KeyRef, status: number, body: unknown, cache?: CompletedResponses): Promise<void> {
  const text = JSON.stringify(body);
  const r = await db.query<{ expires_at: Date }>(
    `UPDATE idempotency_keys SET state = 'completed', recovery_point = 'finished', response_status = $4, response_body = $5,
            locked_until = NULL, updated_at = now()
      WHERE merchant_id = $1 AND key = $2 AND owner = $3
      RETURNING expires_at`,
    [ref.scope, ref.key, ref.owner, status, text],
  );
  const row = r.rows[0];
  // No row: our lease lapsed and another request owns the key now; its answer is not ours to keep.
  if (row && cache) cache.set(ref.scope, ref.key, { fingerprint: ref.fingerprint, status, body: JSON.parse(text) as unknown, expiresAt: row.expires_at.getTime() });
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
