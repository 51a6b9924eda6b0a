/**
 * Lease locks for singleton jobs (SPEC §13): a named row in `leases` held by an owner token until
 * an expiry measured on the database clock, so processes on many machines agree on who holds it
 * without trusting each other's clocks. A lease past its expiry is stale (its holder died or
 * stalled) and may be taken over; only the current owner may renew or release it.
 *
 * A lease is coordination, not the only guard: the work it protects must still be safe if two
 * holders ever overlap (a holder paused longer than the TTL keeps running until it next checks
 * `signal.lost`). Settlement is: its checkpoint is row-locked and written in each chunk's
 * transaction.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Queryable } from '../db/pool.js';

function checkTtl(ttlSeconds: number): void {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError(`lease TTL must be a positive number of seconds, got ${ttlSeconds}`);
}

/** An owner token unique to this call: host, process and 96 random bits. */
export function newLeaseOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(12).toString('hex')}`;
}

/**
 * Takes the lease when nobody holds it, when it has expired (a stale lease is taken over), or when
 * `owner` already holds it (then it is extended). True when `owner` holds it afterwards.
 * Two concurrent takers serialise on the row: the second sees the first's fresh expiry and loses.
 */
export async function acquireLease(db: Queryable, name: string, owner: string, ttlSeconds: number): Promise<boolean> {
  checkTtl(ttlSeconds);
  const r = await db.query(
    `INSERT INTO leases AS l (name, owner, expires_at, acquired_at, renewed_at)
     VALUES ($1, $2, now() + make_interval(secs => $3), now(), now())
     ON CONFLICT (name) DO UPDATE
       SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,
           acquired_at = CASE WHEN l.owner = EXCLUDED.owner THEN l.acquired_at ELSE now() END,
           renewed_at = now()
     WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner
     RETURNING l.owner`,
    [name, owner, ttlSeconds],
  );
  return r.rowCount === 1;
}

/**
 * Extends the lease by `ttlSeconds` from now; only its owner can. False when the lease is lost:
 * taken over by another owner, or released. (A lease that expired but that nobody took is still
 * this owner's and is renewed: nobody else can have held it in between.)
 */
export async function renewLease(db: Queryable, name: string, owner: string, ttlSeconds: number): Promise<boolean> {
  checkTtl(ttlSeconds);
  const r = await db.query(
    `UPDATE leases SET expires_at = now() + make_interval(secs => $3), renewed_at = now()
      WHERE name = $1 AND owner = $2`,
    [name, owner, ttlSeconds],
  );
  return r.rowCount === 1;
}

/** Gives the lease up; only its owner can. True when this owner held it. */
export async function releaseLease(db: Queryable, name: string, owner: string): Promise<boolean> {
  const r = await db.query('DELETE FROM leases WHERE name = $1 AND owner = $2', [name, owner]);
  return r.rowCount === 1;
}

export interface LeaseSignal {
  /** Set when a renewal failed: another process may hold the lease now, so stop at the next safe point. */
  lost: boolean;
  /** The owner token of this holding. */
  readonly owner: string;
}

/**
 * Runs `fn` while holding the lease `name`, or returns null at once when someone else holds it.
 * The lease is renewed in the background every ttl/3; a renewal that is refused or fails sets
 * `signal.lost` (and renewing stops). The lease is released when `fn` settles, thrown or not.
 */
export async function withLease<T>(
  db: Queryable,
  name: string,
  ttlSeconds: number,
  fn: (signal: LeaseSignal) => Promise<T>,
): Promise<T | null> {
  const owner = newLeaseOwner();
  if (!(await acquireLease(db, name, owner, ttlSeconds))) return null;
  const signal: LeaseSignal = { lost: false, owner };
  let renewing: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (renewing || signal.lost) return;
    renewing = renewLease(db, name, owner, ttlSeconds)
      .then(
        (held) => {
          if (!held) signal.lost = true;
        },
        () => {
          signal.lost = true;
        },
      )
      .finally(() => {
        renewing = null;
      });
  }, Math.max(1, Math.floor((ttlSeconds * 1000) / 3)));
  timer.unref();
  try {
    return await fn(signal);
  } finally {
    clearInterval(timer);
    await renewing;
    // Owner-checked, so harmless when the lease was taken over; if it fails the lease expires.
    await releaseLease(db, name, owner).catch(() => undefined);
  }
}
