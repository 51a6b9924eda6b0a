/**
 * The chaos run: a real PostgreSQL, two api and two worker processes, the mock provider as its
 * own process, a webhook receiver; seeded payment flows from bounded-concurrency clients while
 * api and worker processes are SIGKILLed and restarted; then a quiet period and the invariants.
 */
import { readFileSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Db } from '../src/db/pool.js';
import { FlakyDice } from '../src/mock-provider/flaky.js';
import { runChecks, type CheckOutput } from './checks.js';
import { Client, type ClientStats, type Reply } from './client.js';
import { freePort, killAllChildren, Managed } from './processes.js';
import type { Profile } from './profiles.js';
import { WebhookReceiver } from './receiver.js';
import { Rng } from './rng.js';
import { FlowRunner, Observations, planFlow, type ChaosMerchant } from './workload.js';

export interface ChaosOptions {
  seed: number;
  profile: Profile;
  /** Where <date>-<seed>.json goes. */
  outDir: string;
  /** Keep the temporary directory (and a DATABASE_URL database) for a post-mortem. */
  keep: boolean;
  log: (line: string) => void;
}

export interface KillRecord {
  n: number;
  target: string;
  /** Since the load started. */
  atMs: number;
  flowsDone: number;
  /** Client requests under way when the kill was sent. */
  requestsInFlight: number;
  restartMs: number;
}

export interface ChaosResult {
  seed: number;
  profile: string;
  startedAt: string;
  durationMs: number;
  phases: Record<string, number>;
  quiet: { settled: boolean; waitedMs: number; lastOpen: Record<string, number> };
  flows: { planned: number; started: number; done: number };
  kills: KillRecord[];
  faults: Record<string, number>;
  client: ClientStats;
  outcomes: Record<string, number>;
  counts: CheckOutput['counts'];
  checks: CheckOutput['checks'];
  warnings: CheckOutput['warnings'];
  stories: CheckOutput['stories'];
  violations: number;
  /** Why the run did not do what its profile asks (too few kills or flows, no quiet): it fails. */
  incomplete: string[];
  resultsFile?: string;
  environment: Record<string, string>;
}

export const ADMIN_KEY = 'chaos_admin_key_0123456789abcdef';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let emergency: ((code: number) => Promise<void>) | null = null;

/**
 * Stops everything of the run under way (children, database) and exits with `code`; for signal
 * handlers. Without a run under way it just exits.
 */
export async function stopAndExit(code: number): Promise<void> {
  if (emergency) await emergency(code);
  killAllChildren();
  process.exit(code);
}

/**
 * Last resort, synchronous (for an 'exit' handler): an embedded PostgreSQL of this run that is
 * still up gets SIGQUIT, by the pid in its postmaster.pid.
 */
function stopEmbeddedNow(tmp: string): void {
  try {
    const pid = Number(readFileSync(path.join(tmp, 'pg', 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 1) return;
    process.kill(pid, 'SIGQUIT');
    // Give it up to 3 s to go, so that it writes nothing into a directory being removed.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 60; i++) {
      process.kill(pid, 0); // throws once it is gone
      Atomics.wait(pause, 0, 0, 50);
    }
  } catch {
    /* not embedded, not running, or already gone */
  }
}

/** The tunables of the processes: compressed so that recovery happens within seconds. */
export function processEnv(seed: number): { api: Record<string, string>; worker: Record<string, string>; provider: Record<string, string> } {
  const shared = {
    HOST: '127.0.0.1',
    SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PLATINUM: '100000',
    RATE_LIMIT_GLOBAL: '200000',
    IDEMPOTENCY_LOCK_SECONDS: '3',
    CONNECTOR_CONNECT_TIMEOUT_MS: '1000',
    CONNECTOR_AUTHORIZE_TIMEOUT_MS: '1000',
    CONNECTOR_TIMEOUT_MS: '1000',
    MOCK_PROVIDER_HANG_MS: '2000',
    // The api creates the delivery queue, so it must agree with the workers on the job expiry.
    WEBHOOK_JOB_EXPIRE_SECONDS: '5',
    CIRCUIT_OPEN_MS: '5000',
    DB_POOL_MAX: '8',
  };
  const flaky = {
    FLAKY_SEED: String(seed % 2_147_483_647),
    FLAKY_FAILURE_RATE: '0.1',
    FLAKY_TIMEOUT_RATE: '0.06',
    FLAKY_LATENCY_MS: '80',
  };
  return {
    api: { ...shared, ...flaky },
    worker: {
      ...shared,
      ...flaky,
      WEBHOOK_RETRY_SCHEDULE: '0,1,2,3,5',
      WEBHOOK_LEASE_SECONDS: '3',
      WEBHOOK_TIMEOUT_MS: '2000',
      WORKER_MAINTENANCE_SECONDS: '1',
      RECONCILE_INTERVAL_MS: '1000',
      RECONCILE_THRESHOLD_SECONDS: '3',
      RECONCILE_ASYNC_THRESHOLD_SECONDS: '5',
      RECONCILE_MAX_BACKOFF_SECONDS: '5',
      OUTBOX_POLL_MS: '500',
      HOUSEKEEPING_CRON: '* * * * *',
    },
    provider: { ...shared, ...flaky },
  };
}

interface DatabaseHandle {
  url: string;
  kind: string;
  stop(): Promise<void>;
}

/** A fresh database: on the server in DATABASE_URL when set, else an embedded PostgreSQL. */
async function openDatabase(tmp: string, seed: number, keep: boolean, log: (l: string) => void): Promise<DatabaseHandle> {
  const admin = process.env.DATABASE_URL;
  if (admin) {
    const name = `chaos_${seed}_${Date.now().toString(36)}`;
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    const u = new URL(admin);
    u.pathname = `/${name}`;
    log(`database: ${name} on the server in DATABASE_URL`);
    return {
      url: u.toString(),
      kind: 'DATABASE_URL',
      async stop() {
        if (keep) return;
        const d = new pg.Client({ connectionString: admin });
        await d.connect();
        await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await d.end();
      },
    };
  }
  const dir = path.join(tmp, 'pg');
  await mkdir(dir, { recursive: true });
  const embedded: EmbeddedDatabase = await startEmbeddedPostgres(dir);
  log(`database: embedded PostgreSQL under ${dir}`);
  return { url: embedded.url, kind: 'embedded', stop: () => embedded.stop() };
}

async function adminCall(url: string, method: string, p: string, body: unknown, key = ADMIN_KEY): Promise<Reply> {
  const res = await fetch(`${url}${p}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {}, headers: {}, api: 0 };
}

const MERCHANTS: { name: string; routing: ChaosMerchant['routing'] }[] = [
  { name: 'flaky-a', routing: 'flaky+mock' },
  { name: 'flaky-b', routing: 'flaky+mock' },
  { name: 'mock-a', routing: 'mock' },
  { name: 'mock-b', routing: 'mock' },
];

async function setUpMerchants(apiUrl: string, receiver: WebhookReceiver): Promise<ChaosMerchant[]> {
  const merchants: ChaosMerchant[] = [];
  for (const [index, spec] of MERCHANTS.entries()) {
    const m = await adminCall(apiUrl, 'POST', '/v1/admin/merchants', {
      name: `chaos ${spec.name}`,
      onboarding_status: 'activated',
      kyc_status: 'approved',
      kyc_tier: 'tier_2',
      rate_tier: 'platinum',
      limits: { velocity: { max_payments: 1_000_000_000, window_seconds: 60 } },
      connectors: spec.routing === 'flaky+mock' ? [{ name: 'flaky', weight: 100 }, { name: 'mock', weight: 0 }] : [{ name: 'mock', weight: 100 }],
    });
    if (m.status !== 201) throw new Error(`creating merchant ${spec.name}: ${m.status} ${JSON.stringify(m.body)}`);
    const k = await adminCall(apiUrl, 'POST', `/v1/admin/merchants/${m.body.id}/api_keys`, undefined);
    if (k.status !== 201) throw new Error(`creating a key for ${spec.name}: ${k.status} ${JSON.stringify(k.body)}`);
    const e = await adminCall(apiUrl, 'POST', '/v1/webhook_endpoints', { url: receiver.endpointUrl(spec.name), enabled_events: ['*'], description: 'chaos receiver' }, k.body.key as string);
    if (e.status !== 201) throw new Error(`registering the webhook endpoint of ${spec.name}: ${e.status} ${JSON.stringify(e.body)}`);
    receiver.secrets.set(`/hooks/${spec.name}`, e.body.secret as string);
    merchants.push({ index, id: m.body.id as string, apiKey: k.body.key as string, routing: spec.routing });
  }
  return merchants;
}

/** What is still open; the quiet period ends when every number is 0. */
async function openWork(db: Db): Promise<Record<string, number>> {
  const r = await db.query<Record<string, number>>(`SELECT
      (SELECT count(*)::int FROM payment_attempts WHERE status IN ('started','unknown')) AS open_attempts,
      (SELECT count(*)::int FROM refunds WHERE status = 'pending') AS pending_refunds,
      (SELECT count(*)::int FROM payments WHERE status = 'processing') AS processing_payments,
      (SELECT count(*)::int FROM mock_provider_charges WHERE status = 'pending') AS pending_provider_charges,
      (SELECT count(*)::int FROM events WHERE dispatched_at IS NULL) AS undispatched_events,
      (SELECT count(*)::int FROM webhook_deliveries WHERE status = 'pending') AS pending_deliveries`);
  return r.rows[0]!;
}

/**
 * Open attempts that reconciliation will not look at again before `until`, as a stable string of
 * their ids and reconcile counts (nothing else will look at them: the flows are over).
 */
async function attemptsParkedUntil(db: Db, until: number): Promise<{ n: number; key: string }> {
  const r = await db.query<{ id: string; reconcile_attempts: number }>(
    `SELECT id, reconcile_attempts FROM payment_attempts
      WHERE status IN ('started','unknown') AND next_reconcile_at > to_timestamp($1::float8 / 1000) ORDER BY id`,
    [until],
  );
  return { n: r.rows.length, key: r.rows.map((a) => `${a.id}:${a.reconcile_attempts}`).join(',') };
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const { seed, profile, log } = opts;
  const started = Date.now();
  const phases: Record<string, number> = {};
  const mark = (name: string, since: number) => (phases[name] = Date.now() - since);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'switchyard-chaos-'));
  // As root, PostgreSQL runs as 'postgres', which must be able to traverse into the data directory.
  await chmod(tmp, 0o711);
  const env = processEnv(seed);
  const processes: Managed[] = [];
  let database: DatabaseHandle | null = null;
  let db: Db | null = null;
  let client: Client | null = null;
  const receiver = new WebhookReceiver(seed, { error: 0.08, slow: 0.03, slowMs: 1200, tooSlow: 0.01, tooSlowMs: 3000 });
  const obs = new Observations();
  const kills: KillRecord[] = [];
  const incomplete: string[] = [];
  let stopping = false;

  // However the process ends: no embedded PostgreSQL left running, no temporary directory left.
  const onExit = () => {
    stopEmbeddedNow(tmp);
    if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  // An interrupted or overrunning run still stops the database properly before exiting.
  emergency = async (code: number) => {
    killAllChildren();
    const stopDb = database ? database.stop().catch(() => undefined) : Promise.resolve();
    await Promise.race([stopDb, sleep(15_000)]);
    process.exit(code);
  };
  const abortTimer = setTimeout(() => {
    log(`!! the run exceeded its ${profile.maxTotalMs} ms budget: killing every child, stopping the database, exiting`);
    void emergency?.(3);
  }, profile.maxTotalMs);
  abortTimer.unref();

  try {
    // --- database and processes ----------------------------------------------------------------
    let t = Date.now();
    database = await openDatabase(tmp, seed, opts.keep, log);
    db = createPool(database.url, 6);
    await migrate(db);
    mark('database', t);

    t = Date.now();
    await receiver.start();
    const apiPorts = [await freePort(), await freePort()];
    const providerPort = await freePort();
    const apiUrls = apiPorts.map((p) => `http://127.0.0.1:${p}`);
    const providerUrl = `http://127.0.0.1:${providerPort}`;
    // A process that dies on its own (not killed by us) is a finding; it is restarted so the run goes on.
    const onCrash = (m: Managed) => {
      if (stopping) return;
      log(`!! ${m.name} exited on its own; restarting it`);
      void sleep(500)
        .then(() => (stopping || m.up ? undefined : m.start()))
        .catch((err: unknown) => log(`!! restarting ${m.name} failed: ${(err as Error).message}`));
    };
    const base = { DATABASE_URL: database.url, SWITCHYARD_DATA_DIR: path.join(tmp, 'data'), TMPDIR: os.tmpdir() };
    const provider = new Managed({
      name: 'provider',
      role: 'provider',
      args: ['mock-provider', '--port', String(providerPort), '--switchyard-url', apiUrls[0]!],
      env: { ...base, ...env.provider },
      readyUrl: `${providerUrl}/health`,
      onCrash,
    });
    const apis = apiUrls.map(
      (u, n) =>
        new Managed({
          name: `api${n + 1}`,
          role: 'api',
          args: ['api'],
          env: { ...base, ...env.api, PORT: String(apiPorts[n]), MOCK_PROVIDER_URL: providerUrl },
          readyUrl: `${u}/health/readiness`,
          onCrash,
        }),
    );
    const workers = [1, 2].map(
      (n) =>
        new Managed({
          name: `worker${n}`,
          role: 'worker',
          args: ['worker'],
          env: { ...base, ...env.worker, MOCK_PROVIDER_URL: providerUrl },
          readyLine: 'Switchyard worker running',
          onCrash,
        }),
    );
    processes.push(provider, ...apis, ...workers);
    await provider.start();
    // One api first, so pg-boss creates its schema and queues once; then the others together.
    await apis[0]!.start();
    await Promise.all([apis[1]!.start(), ...workers.map((w) => w.start())]);
    mark('processes', t);
    log(`processes up in ${phases.processes} ms: api ${apiUrls.join(', ')}, provider ${providerUrl}, receiver ${receiver.url}`);

    // --- merchants, keys, endpoints ------------------------------------------------------------
    const merchants = await setUpMerchants(apiUrls[0]!, receiver);
    log(`merchants: ${merchants.map((m) => `${m.id} (${m.routing})`).join(', ')}`);

    // --- load and kills -------------------------------------------------------------------------
    t = Date.now();
    const c = (client = new Client(() => apiUrls));
    const runner = new FlowRunner(c, merchants, obs, seed);
    let next = 0;
    const loadDeadline = Date.now() + profile.maxLoadMs;
    let loadDone = false;
    const load = Promise.all(
      Array.from({ length: profile.concurrency }, async () => {
        for (;;) {
          if (next >= profile.flows || Date.now() > loadDeadline) return;
          const i = next++;
          await runner.run(planFlow(seed, i, merchants.length));
        }
      }),
    ).then(() => {
      loadDone = true;
    });

    // Kills fire at seeded points of progress (flows done) plus a seeded delay, each at a seeded
    // target; the killed process is restarted on its port before the next kill.
    const killRng = new Rng(seed, 'kills');
    const targets = [...apis, ...workers];
    const plan = Array.from({ length: profile.kills }, (_, j) => ({
      at: Math.floor(profile.flows * (0.04 + (0.8 * (j + killRng.float())) / profile.kills)),
      delayMs: killRng.int(0, 1500),
      target: killRng.int(0, targets.length - 1),
    }));
    const progress = setInterval(() => {
      log(`  … ${obs.flowsDone}/${profile.flows} flows, ${c.stats.requests} requests, ${kills.length} kills, ${Math.round((Date.now() - t) / 1000)} s`);
    }, 10_000);
    progress.unref();
    for (const k of plan) {
      while (!loadDone && obs.flowsDone < k.at) await sleep(50);
      if (loadDone) break;
      await sleep(k.delayMs);
      const victim = targets[k.target]!;
      const inFlight = c.inFlight;
      const at = Date.now() - t;
      await victim.kill();
      const r0 = Date.now();
      await victim.start();
      kills.push({ n: kills.length + 1, target: victim.name, atMs: at, flowsDone: obs.flowsDone, requestsInFlight: inFlight, restartMs: Date.now() - r0 });
      log(`  kill #${kills.length}: ${victim.name} at ${(at / 1000).toFixed(1)} s (${obs.flowsDone} flows done, ${inFlight} requests in flight), back in ${Date.now() - r0} ms`);
    }
    await load;
    clearInterval(progress);
    mark('load', t);
    if (kills.length < profile.kills) incomplete.push(`only ${kills.length} of ${profile.kills} kills happened before the load ended`);
    if (obs.flowsStarted < profile.flows) incomplete.push(`only ${obs.flowsStarted} of ${profile.flows} flows started within ${profile.maxLoadMs} ms`);
    log(`load done: ${obs.flowsDone} flows, ${c.stats.requests} requests in ${phases.load} ms`);

    // --- quiet period ---------------------------------------------------------------------------
    t = Date.now();
    for (const p of processes) if (!p.up) await p.start();
    let lastOpen = await openWork(db);
    let settled = false;
    let parkedNote = '';
    const quietDeadline = Date.now() + profile.maxQuietMs;
    // Waiting is pointless once all that is left are attempts reconciliation has parked past the
    // deadline, unchanged for a while (a live sweep parks what it claims too, for seconds only).
    let parkedSince = 0;
    let parkedKey = '';
    while (Date.now() < quietDeadline) {
      lastOpen = await openWork(db);
      if (Object.values(lastOpen).every((n) => n === 0)) {
        settled = true;
        break;
      }
      const parked = lastOpen.undispatched_events === 0 && lastOpen.pending_deliveries === 0 && lastOpen.pending_provider_charges === 0 && lastOpen.open_attempts! > 0
        ? await attemptsParkedUntil(db, quietDeadline)
        : { n: 0, key: '' };
      if (parked.n > 0 && parked.n === lastOpen.open_attempts && parked.key === parkedKey) {
        if (Date.now() - parkedSince > 30_000) {
          parkedNote = `${parked.n} open attempt(s) parked by reconciliation past the deadline, untouched for 30 s: not waiting for them`;
          log(`quiet period: ${parkedNote}`);
          break;
        }
      } else {
        parkedKey = parked.key;
        parkedSince = Date.now();
      }
      await sleep(1000);
    }
    // A delivery marked succeeded was answered; let the receiver's bookkeeping catch up.
    await sleep(500);
    mark('quiet', t);
    log(`quiet period: ${settled ? 'settled' : 'NOT settled'} after ${phases.quiet} ms ${JSON.stringify(lastOpen)}`);
    if (!settled) incomplete.push(`the quiet period did not settle (${parkedNote || `within ${profile.maxQuietMs} ms`}): ${JSON.stringify(lastOpen)}`);
    stopping = true;

    // --- checks --------------------------------------------------------------------------------
    t = Date.now();
    const unexpectedExits = processes.flatMap((p) => p.unexpectedExits.map((x) => ({ name: p.name, ...x })));
    const out = await runChecks({ db, receiver, obs, unexpectedExits });
    mark('checks', t);

    const faults: Record<string, number> = {
      process_kills: kills.length,
      api_kills: kills.filter((k) => k.target.startsWith('api')).length,
      worker_kills: kills.filter((k) => k.target.startsWith('worker')).length,
      receiver_500: receiver.faults.error,
      receiver_slow: receiver.faults.slow,
      receiver_past_timeout: receiver.faults.tooSlow,
      client_connection_errors: c.stats.connectionErrors,
      ...(await providerFaults(db, env.provider)),
    };
    const violations = out.checks.reduce((s, x) => s + x.violations, 0);
    const result: ChaosResult = {
      seed,
      profile: profile.name,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      phases,
      quiet: { settled, waitedMs: phases.quiet ?? 0, lastOpen },
      flows: { planned: profile.flows, started: obs.flowsStarted, done: obs.flowsDone },
      kills,
      faults,
      client: c.stats,
      outcomes: obs.outcomes,
      counts: out.counts,
      checks: out.checks,
      warnings: out.warnings,
      stories: out.stories,
      violations,
      incomplete,
      environment: { node: process.version, platform: `${process.platform} ${process.arch}`, cpus: String(os.cpus().length), database: database.kind, ...env.worker },
    };
    await mkdir(opts.outDir, { recursive: true });
    const file = path.join(opts.outDir, `${new Date(started).toISOString().replace(/[:.]/g, '-')}-${seed}.json`);
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    result.resultsFile = file;
    return result;
  } finally {
    stopping = true;
    clearTimeout(abortTimer);
    await client?.close().catch(() => undefined);
    await Promise.all(processes.map((p) => p.kill().catch(() => undefined)));
    killAllChildren();
    await receiver.close().catch(() => undefined);
    await db?.end().catch(() => undefined);
    await database?.stop().catch((err: unknown) => log(`stopping the database failed: ${(err as Error).message}`));
    if (!opts.keep) await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    else log(`kept ${tmp}`);
    process.removeListener('exit', onExit);
    emergency = null;
  }
}

/** Faults the provider injected, as Switchyard's attempts recorded them (the provider keeps no counts). */
async function providerFaults(db: Db, providerEnv: Record<string, string>): Promise<Record<string, number>> {
  const r = await db.query<{ k: string; n: number }>(`
    SELECT CASE
             WHEN error_code = 'provider_unavailable_not_charged' THEN 'provider_500_not_charged'
             WHEN error_code = 'timeout' THEN 'provider_timeouts'
             WHEN error_code = 'network' THEN 'provider_network_errors'
             WHEN error_code = 'provider_error' THEN 'provider_5xx_unknown'
             WHEN error_code = 'connector_unreachable' THEN 'provider_unreachable'
             ELSE 'other' END AS k,
           count(*)::int AS n
      FROM payment_attempts WHERE error_code IS NOT NULL GROUP BY 1`);
  const out: Record<string, number> = {};
  for (const row of r.rows) if (row.k !== 'other') out[`${row.k} (attempts)`] = row.n;
  // An unknown outcome (timeout, reset, 5xx) moves the payment to processing with this cause,
  // whatever the attempt later turned out to be.
  const causes = await db.query<{ k: string; n: number }>(`
    SELECT k, count(*)::int AS n FROM (
      SELECT CASE WHEN cause = 'authorize:unknown' THEN 'authorize_outcome_unknown'
                  WHEN actor LIKE 'worker:reconciliation%' THEN 'transitions_by_reconciliation'
                  WHEN actor LIKE 'provider:%' OR actor LIKE 'webhook:%' THEN 'transitions_by_provider_webhook' END AS k
        FROM payment_status_history) x
     WHERE k IS NOT NULL GROUP BY k`);
  for (const row of causes.rows) out[row.k] = row.n;
  // The provider's flaky webhooks draw from their own seeded stream, one draw per webhook in the
  // order they are sent (one per settled asynchronous flaky charge): replaying that stream gives
  // exactly how many were sent twice.
  const settledAsync = (
    await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM mock_provider_charges WHERE mode = 'flaky' AND token IN ('tok_async','tok_async_fail') AND status <> 'pending'`)
  ).rows[0]!.n;
  const dice = new FlakyDice({ seed: Number(providerEnv.FLAKY_SEED), failureRate: 0, timeoutRate: 0, latencyMs: 0 });
  let duplicated = 0;
  for (let k = 0; k < settledAsync; k++) if (dice.drawWebhookDeliveries().length > 1) duplicated += 1;
  out.provider_webhooks_flaky = settledAsync;
  out.provider_webhooks_duplicated = duplicated;
  return out;
}
