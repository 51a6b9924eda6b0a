import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/pool.js';

/** Reads a setting, creating it with `make()` on first use; concurrent first uses agree on one value. */
export async function ensureSetting(db: Db, name: string, make: () => string): Promise<string> {
  await db.query('INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, make()]);
  const r = await db.query<{ value: string }>('SELECT value FROM settings WHERE name = $1', [name]);
  return r.rows[0]!.value;
}

export interface KeyHasher {
  hash(clear: string): Buffer;
  equal(a: Buffer, b: Buffer): boolean;
}

/** API keys are stored only as HMAC-SHA256 under a secret of the deployment. */
export async function loadKeyHasher(db: Db): Promise<KeyHasher> {
  const secret = Buffer.from(await ensureSetting(db, 'api_key_hmac_secret', () => randomBytes(32).toString('base64')), 'base64');
  return {
    hash: (clear) => createHmac('sha256', secret).update(clear).digest(),
    equal: (a, b) => a.length === b.length && timingSafeEqual(a, b),
  };
}

export function generateApiKey(): string {
  return `sk_test_${randomBytes(24).toString('base64url')}`;
}

export function generateAdminKey(): string {
  return `sy_admin_${randomBytes(24).toString('base64url')}`;
}
