import type { Config } from '../config/config.js';
import { startEmbeddedPostgres } from '../db/embedded.js';
import { createPool, type Db } from '../db/pool.js';
import { migrate } from '../db/migrate.js';
import type { Logger } from '../lib/logger.js';

export interface Database {
  db: Db;
  url: string;
  embedded: boolean;
  close(): Promise<void>;
}

/** DATABASE_URL when set; otherwise the embedded PostgreSQL under the data directory. */
export async function openDatabase(config: Config, log: Logger, opts: { migrate: boolean }): Promise<Database> {
  let url = config.DATABASE_URL;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!url) {
    const embedded = await startEmbeddedPostgres(config.SWITCHYARD_DATA_DIR);
    url = embedded.url;
    stopEmbedded = embedded.stop;
    log.info({ data_dir: config.SWITCHYARD_DATA_DIR }, 'embedded PostgreSQL started');
  }
  const db = createPool(url, config.DB_POOL_MAX, { prepared: config.DB_PREPARED_STATEMENTS, outboxNotifyMs: config.OUTBOX_NOTIFY_INTERVAL_MS });
  if (opts.migrate) {
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
  }
  return {
    db,
    url,
    embedded: stopEmbedded !== undefined,
    async close() {
      await db.end();
      await stopEmbedded?.();
    },
  };
}
