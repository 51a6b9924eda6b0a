/**
 * The lease lock of singleton jobs (SPEC §13): one holder at a time across processes, a stale
 * lease taken over, and only the owner renewing or releasing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Db } from '../../src/db/pool.js';
import { acquireLease, releaseLease, renewLease, withLease, type LeaseSignal } from '../../src/worker/lease.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { waitFor } from '../support/harness.js';

let t: TestDatabase;
let other: Db;
let seq = 0;
const leaseName = (what: string) => `test:${what}:${++seq}`;

interface LeaseRow {
  owner: string;
  expires_at: Date;
  acquired_at: Date;
  renewed_at: Date;
  expired: boolean;
}

async function leaseRow(name: string): Promise<LeaseRow | undefined> {
  const r = await t.db.query<LeaseRow>('SELECT owner, expires_at, acquired_at, renewed_at, expires_at <= now() AS expired FROM leases WHERE name = $1', [name]);
  return r.rows[0];
}

beforeAll(async () => {
  t = await createTestDatabase();
  // A second pool on the same database: a second process, as far as PostgreSQL can tell.
  other = createPool(t.url, 20);
});
afterAll(async () => {
  await other?.end();
  await t?.drop();
});

describe('acquireLease', () => {
  it('lets exactly one of many concurrent acquirers win (one pool)', async () => {
    for (let round = 0; round < 5; round++) {
      const name = leaseName('race');
      const owners = Array.from({ length: 20 }, (_, i) => `owner-${round}-${i}`);
      const won = await Promise.all(owners.map((o) => acquireLease(t.db, name, o, 30)));
      expect(won.filter(Boolean)).toHaveLength(1);
      expect((await leaseRow(name))!.owner).toBe(owners[won.indexOf(true)]);
    }
  });

  it('lets exactly one win when the acquirers use two separate pools', async () => {
    for (let round = 0; round < 10; round++) {
      const name = leaseName('two-pools');
      const won = await Promise.all([
        ...Array.from({ length: 5 }, (_, i) => acquireLease(t.db, name, `a-${i}`, 30)),
        ...Array.from({ length: 5 }, (_, i) => acquireLease(other, name, `b-${i}`, 30)),
      ]);
      expect(won.filter(Boolean)).toHaveLength(1);
    }
  });

  it('refuses a lease that is held and not expired, and extends it for its own owner', async () => {
    const name = leaseName('held');
    expect(await acquireLease(t.db, name, 'a', 30)).toBe(true);
    const first = (await leaseRow(name))!;
    expect(await acquireLease(other, name, 'b', 30)).toBe(false);
    expect(await acquireLease(t.db, name, 'a', 120)).toBe(true);
    const again = (await leaseRow(name))!;
    expect(again.owner).toBe('a');
    expect(again.acquired_at.getTime()).toBe(first.acquired_at.getTime());
    expect(again.expires_at.getTime()).toBeGreaterThan(first.expires_at.getTime());
  });

  it('takes over a stale lease, after which the old owner can neither renew nor release it', async () => {
    const name = leaseName('stale');
    expect(await acquireLease(t.db, name, 'dead-worker', 60)).toBe(true);
    // The holder died an hour ago: its lease ran out long since.
    await t.db.query(`UPDATE leases SET expires_at = now() - interval '1 hour', renewed_at = now() - interval '61 minutes' WHERE name = $1`, [name]);
    expect((await leaseRow(name))!.expired).toBe(true);

    // Many take-over attempts at once: still exactly one.
    const won = await Promise.all(Array.from({ length: 10 }, (_, i) => acquireLease(i % 2 ? other : t.db, name, `heir-${i}`, 60)));
    expect(won.filter(Boolean)).toHaveLength(1);
    const heir = `heir-${won.indexOf(true)}`;
    const row = (await leaseRow(name))!;
    expect(row.owner).toBe(heir);
    expect(row.expired).toBe(false);

    expect(await renewLease(t.db, name, 'dead-worker', 60)).toBe(false);
    expect(await releaseLease(t.db, name, 'dead-worker')).toBe(false);
    expect((await leaseRow(name))!.owner).toBe(heir);
    expect(await renewLease(t.db, name, heir, 60)).toBe(true);
    expect(await releaseLease(t.db, name, heir)).toBe(true);
    expect(await leaseRow(name)).toBeUndefined();
  });

  it('becomes free by itself when its TTL runs out on the database clock', async () => {
    const name = leaseName('ttl');
    expect(await acquireLease(t.db, name, 'short', 0.5)).toBe(true);
    expect(await acquireLease(other, name, 'next', 30)).toBe(false);
    // Polled, not slept: the first attempt after the expiry wins.
    await waitFor(async () => ((await acquireLease(other, name, 'next', 30)) ? true : undefined), 10_000, 'the lease to expire');
    const row = (await leaseRow(name))!;
    expect(row.owner).toBe('next');
    expect(await renewLease(t.db, name, 'short', 30)).toBe(false);
  });

  it('refuses a TTL that is not a positive number', async () => {
    await expect(acquireLease(t.db, leaseName('bad'), 'a', 0)).rejects.toThrow(RangeError);
    await expect(acquireLease(t.db, leaseName('bad'), 'a', Number.NaN)).rejects.toThrow(RangeError);
    await expect(renewLease(t.db, leaseName('bad'), 'a', -1)).rejects.toThrow(RangeError);
  });
});

describe('renewLease / releaseLease', () => {
  it('are refused for anyone but the owner', async () => {
    const name = leaseName('owner-only');
    expect(await acquireLease(t.db, name, 'owner', 30)).toBe(true);
    const before = (await leaseRow(name))!;
    expect(await renewLease(other, name, 'intruder', 3600)).toBe(false);
    expect(await releaseLease(other, name, 'intruder')).toBe(false);
    const after = (await leaseRow(name))!;
    expect(after.owner).toBe('owner');
    expect(after.expires_at.getTime()).toBe(before.expires_at.getTime());

    expect(await renewLease(t.db, name, 'owner', 3600)).toBe(true);
    expect((await leaseRow(name))!.expires_at.getTime()).toBeGreaterThan(before.expires_at.getTime());
    expect(await releaseLease(t.db, name, 'owner')).toBe(true);
    expect(await leaseRow(name)).toBeUndefined();
    // Released: renewing is refused (the lease is lost), releasing again does nothing.
    expect(await renewLease(t.db, name, 'owner', 30)).toBe(false);
    expect(await releaseLease(t.db, name, 'owner')).toBe(false);
  });
});

describe('withLease', () => {
  it('runs the function holding the lease, renews it in the background, and releases it at the end', async () => {
    const name = leaseName('with');
    let seen: LeaseSignal | undefined;
    const result = await withLease(t.db, name, 0.6, async (signal) => {
      seen = signal;
      const first = (await leaseRow(name))!;
      expect(first.owner).toBe(signal.owner);
      expect(await acquireLease(other, name, 'rival', 30)).toBe(false);
      // Renewed every ttl/3 (200 ms): wait for two renewals, i.e. past the original expiry.
      const renewed = await waitFor(async () => {
        const r = (await leaseRow(name))!;
        return r.renewed_at.getTime() > first.expires_at.getTime() ? r : undefined;
      }, 10_000, 'renewals past the first expiry');
      expect(renewed.owner).toBe(signal.owner);
      expect(renewed.expired).toBe(false);
      expect(await acquireLease(other, name, 'rival', 30)).toBe(false);
      return 'done';
    });
    expect(result).toBe('done');
    expect(seen!.lost).toBe(false);
    expect(seen!.owner).toMatch(/^.+:\d+:[0-9a-f]{24}$/);
    expect(await leaseRow(name)).toBeUndefined();
  });

  it('answers null without running the function when the lease is held elsewhere', async () => {
    const name = leaseName('busy');
    expect(await acquireLease(other, name, 'someone-else', 30)).toBe(true);
    let called = false;
    const result = await withLease(t.db, name, 30, async () => {
      called = true;
      return 1;
    });
    expect(result).toBeNull();
    expect(called).toBe(false);
    expect((await leaseRow(name))!.owner).toBe('someone-else');
  });

  it('marks the lease lost when a renewal is refused, and leaves the new owner alone', async () => {
    const name = leaseName('lost');
    const result = await withLease(t.db, name, 0.6, async (signal) => {
      expect(signal.lost).toBe(false);
      // Another process took it over (as after a pause longer than the TTL).
      await other.query(`UPDATE leases SET owner = 'usurper', expires_at = now() + interval '1 minute' WHERE name = $1`, [name]);
      await waitFor(async () => (signal.lost ? true : undefined), 10_000, 'the lease to be marked lost');
      return signal.lost;
    });
    expect(result).toBe(true);
    expect((await leaseRow(name))!.owner).toBe('usurper');
  });

  it('releases the lease when the function throws', async () => {
    const name = leaseName('throws');
    await expect(
      withLease(t.db, name, 30, async () => {
        expect((await leaseRow(name))).toBeDefined();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await leaseRow(name)).toBeUndefined();
    expect(await acquireLease(other, name, 'next', 30)).toBe(true);
  });
});
