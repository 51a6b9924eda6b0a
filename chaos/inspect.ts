/**
 * The whole story of payments from a chaos run kept with --keep:
 *
 *   npx tsx chaos/inspect.ts --dir /tmp/switchyard-chaos-XXXX/pg pay_… [pay_…]   (embedded database)
 *   npx tsx chaos/inspect.ts --url postgres://…/chaos_<seed>_<id> pay_…           (DATABASE_URL run)
 */
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.js';
import { createPool } from '../src/db/pool.js';
import { paymentStory } from './checks.js';

async function main(argv: string[]): Promise<void> {
  let dir: string | undefined;
  let url: string | undefined;
  const ids: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--dir') dir = argv[++i];
    else if (argv[i] === '--url') url = argv[++i];
    else ids.push(argv[i]!);
  }
  if ((!dir && !url) || ids.length === 0) throw new Error('usage: chaos/inspect.ts (--dir <kept>/pg | --url <database url>) pay_… [pay_…]');
  let embedded: EmbeddedDatabase | undefined;
  if (dir) {
    embedded = await startEmbeddedPostgres(dir);
    url = embedded.url;
  }
  const db = createPool(url!, 2);
  try {
    for (const id of ids) process.stdout.write(`${JSON.stringify(await paymentStory(db, id), null, 2)}\n`);
  } finally {
    await db.end();
    await embedded?.stop();
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
