#!/usr/bin/env node
/**
 * switchyard <command>: start | api | migrate | seed | merchant create | key create | mock-provider
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { openDatabase } from '../runtime/database.js';
import { createApiProcess } from '../runtime/api.js';
import { merchantCount, seedDemoMerchant, tryItCurl } from '../merchants/seed.js';
import { createApiKey, insertMerchant, merchantToApi } from '../merchants/store.js';
import { loadKeyHasher } from '../merchants/secrets.js';
import { buildMockProviderServer } from '../mock-provider/app.js';
import { mockProviderOptions } from '../runtime/api.js';
import { parseFlags } from './args.js';
import { startWorker, type WorkerHandle } from '../worker/worker.js';
import { registerDatabaseGauges } from '../observability/db-gauges.js';
import { startOpsServer } from '../runtime/ops-server.js';
import { initTracing, shutdownTracing } from '../observability/tracing.js';
import { KYC_STATUSES, ONBOARDING_STATUSES, RATE_TIERS } from '../domain/merchant.js';

const USAGE = `Usage: switchyard <command>

  start                 the API and the worker in one process; the default first run
  api                   the HTTP API only
  worker                the background jobs only (outbox relay, webhook deliveries, housekeeping)
  migrate               apply pending database migrations
  seed                  create a demo merchant and print its API key
  merchant create --name NAME [--onboarding-status activated] [--kyc-status approved]
                        [--kyc-tier tier_2] [--rate-tier gold]
  key create --merchant mer_...
  mock-provider [--port 9090]   the simulated payment provider on its own

Configuration is read from environment variables; see docs/configuration.md.`;

const SHUTDOWN_GRACE_MS = 30_000;

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function onSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: readiness off, no new work, draining in-flight work');
    const timer = setTimeout(() => {
      log.error('shutdown grace period over; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    timer.unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}

async function serve(config: Config, log: Logger, opts: { seedOnFirstRun: boolean; api: boolean; worker: boolean }): Promise<void> {
  initTracing({ serviceName: config.OTEL_SERVICE_NAME, otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
  const database = await openDatabase(config, log, { migrate: true });
  let worker: WorkerHandle | null = null;
  if (!opts.api) {
    worker = await startWorker(config, database.db, database.url, log);
    registerDatabaseGauges(database.db);
    const ops = config.WORKER_METRICS_PORT !== undefined ? await startOpsServer(config.HOST, config.WORKER_METRICS_PORT, database.db) : null;
    print(`Switchyard worker running${ops ? ` (metrics and health on port ${config.WORKER_METRICS_PORT})` : ''}.`);
    onSignals(log, async () => {
      if (ops) ops.draining = true;
      await worker?.stop();
      await ops?.close();
      await database.close();
      await shutdownTracing();
    });
    return;
  }
  const host = config.HOST;
  const port = config.PORT;
  const selfUrl = `http://127.0.0.1:${port}`;
  const api = await createApiProcess(config, database.db, database.url, log, selfUrl);
  await api.app.listen({ host, port });
  if (opts.worker) worker = await startWorker(config, database.db, database.url, log, { connectors: api.connectors });

  const lines: string[] = [`Switchyard ${opts.worker ? 'API and worker' : 'API'} listening on http://${host === '0.0.0.0' ? 'localhost' : host}:${port}  (OpenAPI UI: /docs)`];
  if (api.adminKey.generated) {
    lines.push('', `Admin key (shown once; also saved to ${path.join(config.SWITCHYARD_DATA_DIR, 'admin-key')}):`, `  ${api.adminKey.generated}`);
  }
  if (opts.seedOnFirstRun && database.embedded && (await merchantCount(database.db)) === 0) {
    const demo = await seedDemoMerchant(database.db);
    const file = path.join(config.SWITCHYARD_DATA_DIR, 'demo-merchant.json');
    await writeFile(file, JSON.stringify({ merchant_id: demo.merchant.id, api_key: demo.key }, null, 2), { mode: 0o600 });
    lines.push('', `Demo merchant ${demo.merchant.id} created. Its API key (shown once; also in ${file}):`, `  ${demo.key}`, '', 'Try it:', tryItCurl(`http://localhost:${port}`, demo.key));
  }
  print(lines.join('\n'));
  onSignals(log, async () => {
    api.app.startDraining();
    if (config.SHUTDOWN_DRAIN_DELAY_MS > 0) await new Promise((r) => setTimeout(r, config.SHUTDOWN_DRAIN_DELAY_MS));
    // HTTP drains (readiness already false) while the worker finishes its jobs; connectors go last.
    await Promise.all([api.app.close(), worker?.stop()]);
    await api.close();
    await database.close();
    await shutdownTracing();
  });
}

async function main(argv: string[]): Promise<void> {
  const [command, sub] = argv;
  const flags = parseFlags(argv);
  if (!command || command === 'help' || flags.help) {
    print(USAGE);
    return;
  }
  const config = loadConfig();
  const log = createLogger(config.LOG_LEVEL);
  switch (command) {
    case 'start':
      return serve(config, log, { seedOnFirstRun: true, api: true, worker: true });
    case 'api':
      return serve(config, log, { seedOnFirstRun: false, api: true, worker: false });
    case 'worker':
      return serve(config, log, { seedOnFirstRun: false, api: false, worker: true });
    case 'migrate': {
      const database = await openDatabase(config, log, { migrate: true });
      print('Migrations are up to date.');
      return database.close();
    }
    case 'seed': {
      const database = await openDatabase(config, log, { migrate: true });
      const demo = await seedDemoMerchant(database.db);
      print(`Demo merchant ${demo.merchant.id}; API key (shown once):\n  ${demo.key}\n\n${tryItCurl(`http://localhost:${config.PORT}`, demo.key)}`);
      return database.close();
    }
    case 'merchant': {
      if (sub !== 'create' || !flags.name) throw new UsageError('merchant create --name NAME');
      const onboarding = (flags['onboarding-status'] ?? 'activated') as (typeof ONBOARDING_STATUSES)[number];
      const kyc = (flags['kyc-status'] ?? 'approved') as (typeof KYC_STATUSES)[number];
      const rate = (flags['rate-tier'] ?? 'gold') as (typeof RATE_TIERS)[number];
      if (!ONBOARDING_STATUSES.includes(onboarding)) throw new UsageError(`--onboarding-status: one of ${ONBOARDING_STATUSES.join(', ')}`);
      if (!KYC_STATUSES.includes(kyc)) throw new UsageError(`--kyc-status: one of ${KYC_STATUSES.join(', ')}`);
      if (!RATE_TIERS.includes(rate)) throw new UsageError(`--rate-tier: one of ${RATE_TIERS.join(', ')}`);
      const database = await openDatabase(config, log, { migrate: true });
      const m = await insertMerchant(database.db, { name: flags.name, onboarding_status: onboarding, kyc_status: kyc, kyc_tier: flags['kyc-tier'] ?? 'tier_2', rate_tier: rate });
      print(JSON.stringify(merchantToApi(m), null, 2));
      return database.close();
    }
    case 'key': {
      if (sub !== 'create' || !flags.merchant) throw new UsageError('key create --merchant mer_...');
      const database = await openDatabase(config, log, { migrate: true });
      const k = await createApiKey(database.db, await loadKeyHasher(database.db), flags.merchant);
      print(`API key ${k.id} for ${k.merchant_id} (shown once):\n  ${k.key}`);
      return database.close();
    }
    case 'mock-provider': {
      const database = await openDatabase(config, log, { migrate: true });
      const port = Number(flags.port ?? config.PORT);
      const selfUrl = flags['switchyard-url'] ?? 'http://127.0.0.1:8080';
      const server = await buildMockProviderServer({ ...mockProviderOptions(config, database.db, selfUrl), logger: false } as Parameters<typeof buildMockProviderServer>[0]);
      await server.listen({ host: config.HOST, port });
      print(`Mock provider listening on port ${port}`);
      const stop = async () => {
        await server.close();
        await database.close();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop());
      process.on('SIGINT', () => void stop());
      return;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
  else if (err instanceof UsageError) process.stderr.write(`switchyard: ${err.message}\n\n${USAGE}\n`);
  else process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof UsageError || err instanceof ConfigError ? 2 : 1);
});
