import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../db/pool.js';
import { ensureSetting, generateAdminKey } from '../merchants/secrets.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export interface AdminKey {
  verify(clear: string): boolean;
  /** Set only on the run that generated the key: shown once. */
  generated: string | null;
}

/**
 * SWITCHYARD_ADMIN_KEY when set. Otherwise the first run generates one, keeps only its hash in the
 * database (so every process agrees) and writes the clear key to the data directory, mode 0600.
 */
export async function loadAdminKey(db: Db, configured: string | undefined, dataDir: string): Promise<AdminKey> {
  let generated: string | null = null;
  let expected: Buffer;
  if (configured) expected = sha256(configured);
  else {
    const candidate = generateAdminKey();
    const stored = await ensureSetting(db, 'admin_key_sha256', () => sha256(candidate).toString('hex'));
    expected = Buffer.from(stored, 'hex');
    if (expected.equals(sha256(candidate))) {
      generated = candidate;
      await mkdir(dataDir, { recursive: true });
      await writeFile(path.join(dataDir, 'admin-key'), `${candidate}\n`, { mode: 0o600 });
    }
  }
  return { verify: (clear) => timingSafeEqual(sha256(clear), expected), generated };
}
