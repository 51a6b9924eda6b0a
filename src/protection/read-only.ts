/**
 * The read-only switch (SPEC §14): an operator flips it at runtime through the admin API; it lives
 * in the database so every process sees it, cached briefly so reads of it cost nothing per request.
 */
import type { Db } from '../db/pool.js';

export interface ReadOnlySwitch {
  isOn(): Promise<boolean>;
  set(enabled: boolean): Promise<boolean>;
}

export function createReadOnlySwitch(db: Db, cacheMs = 1000): ReadOnlySwitch {
  let cached: { value: boolean; at: number } | null = null;
  const read = async () => {
    const r = await db.query<{ value: string }>(`SELECT value FROM settings WHERE name = 'read_only'`);
    return r.rows[0]?.value === 'true';
  };
  return {
    async isOn() {
      if (cached && Date.now() - cached.at < cacheMs) return cached.value;
      const value = await read().catch(() => cached?.value ?? false);
      cached = { value, at: Date.now() };
      return value;
    },
    async set(enabled) {
      await db.query(
        `INSERT INTO settings (name, value) VALUES ('read_only', $1) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`,
        [String(enabled)],
      );
      cached = { value: enabled, at: Date.now() };
      return enabled;
    },
  };
}
