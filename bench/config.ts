/**
 * Benchmark settings: full defaults, a --quick profile, and overrides from BENCH_* environment
 * variables or the matching flags (--step-seconds=5 is BENCH_STEP_SECONDS=5).
 */
export const PHASES = ['raw', 'baseline', 'payments', 'latency', 'replays', 'webhooks', 'profile'] as const;
export type Phase = (typeof PHASES)[number];

export interface BenchConfig {
  profile: 'full' | 'quick';
  phases: Phase[];
  /** Measured seconds per step, warm-up seconds per step (discarded), pause between steps. */
  stepSeconds: number;
  warmupSeconds: number;
  pauseSeconds: number;
  p99Ms: number;
  connections: number;
  requestTimeoutMs: number;
  baselineRates: number[];
  paymentRates: number[];
  latencyRate: number;
  latencySeconds: number;
  replayKeys: number;
  replayRates: number[];
  rawClients: number[];
  rawSeconds: number;
  pgbench: boolean;
  /** Preload pg_stat_statements (embedded) and report statements per request; a small overhead. */
  statements: boolean;
  /** Extra server settings for the embedded cluster, "name=value;name=value" (ALTER SYSTEM, then a restart). */
  pgSettings: string;
  webhookRate: number;
  webhookSeconds: number;
  webhookBurst: number;
  webhookWorkers: number;
  webhookTimeoutSeconds: number;
  profileRate: number;
  profileReplayRate: number;
  profileSeconds: number;
  dbPoolMax: number;
  /** Send a fresh Idempotency-Key with every payment (what a careful merchant does). */
  paymentIdempotencyKey: boolean;
  velocityWindowSeconds: number;
  /** Run the mock provider as its own process (as a real provider is), not inside Switchyard's. */
  providerProcess: boolean;
  maxMinutes: number;
  resultsDir: string;
}

const FULL: Omit<BenchConfig, 'phases' | 'resultsDir'> = {
  profile: 'full',
  stepSeconds: 10,
  warmupSeconds: 3,
  pauseSeconds: 3,
  p99Ms: 50,
  connections: 256,
  requestTimeoutMs: 10_000,
  baselineRates: [250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000],
  paymentRates: [25, 50, 100, 200, 400, 600, 800, 1000, 1500, 2000, 2500, 3000],
  latencyRate: 1000,
  latencySeconds: 30,
  replayKeys: 1000,
  replayRates: [1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 15000],
  rawClients: [1, 4, 16, 64],
  rawSeconds: 10,
  pgbench: true,
  statements: true,
  pgSettings: '',
  webhookRate: 500,
  webhookSeconds: 20,
  webhookBurst: 20_000,
  webhookWorkers: 1,
  webhookTimeoutSeconds: 300,
  profileRate: 300,
  profileReplayRate: 2000,
  profileSeconds: 15,
  dbPoolMax: 20,
  paymentIdempotencyKey: true,
  velocityWindowSeconds: 300,
  providerProcess: true,
  maxMinutes: 60,
};

const QUICK: Partial<BenchConfig> = {
  profile: 'quick',
  stepSeconds: 3,
  warmupSeconds: 1,
  pauseSeconds: 1,
  latencySeconds: 5,
  replayKeys: 300,
  rawClients: [1, 16],
  rawSeconds: 2,
  webhookSeconds: 4,
  webhookBurst: 3000,
  webhookTimeoutSeconds: 60,
  profileSeconds: 5,
  maxMinutes: 15,
};

export const HELP = `npm run bench -- [--quick] [--only=a,b] [--skip=a,b] [--<setting>=value …]

Phases: ${PHASES.join(', ')}.
Settings (flag --step-seconds=5 or env BENCH_STEP_SECONDS=5):
  step-seconds, warmup-seconds, pause-seconds, p99-ms, connections, request-timeout-ms,
  baseline-rates, payment-rates, replay-rates (comma lists), latency-rate, latency-seconds,
  replay-keys, raw-clients (list), raw-seconds, pgbench (0/1), statements (0/1),
  pg-settings ("name=value;…", embedded only), webhook-rate, webhook-seconds,
  webhook-burst, webhook-workers, webhook-timeout-seconds, profile-rate, profile-replay-rate,
  profile-seconds, db-pool-max, payment-idempotency-key (0/1), velocity-window-seconds,
  provider-process (0/1), max-minutes, results-dir.
DATABASE_URL set: a fresh database on that server; otherwise an embedded PostgreSQL in a temp dir.`;

function envName(setting: string): string {
  return `BENCH_${setting.replace(/-/g, '_').toUpperCase()}`;
}

function camel(setting: string): string {
  return setting.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv, cwd: string): BenchConfig | 'help' {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') && !['quick', 'help'].includes(a.slice(2))) flags.set(a.slice(2), argv[++i]!);
    else flags.set(a.slice(2), 'true');
  }
  if (flags.has('help')) return 'help';
  const quick = flags.get('quick') === 'true' || env.BENCH_QUICK === '1';
  const cfg: Record<string, unknown> = { ...FULL, ...(quick ? QUICK : {}) };
  cfg.resultsDir = `${cwd}/bench/results`;
  const known = new Set(Object.keys(cfg));
  const settings = new Map<string, string>();
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('BENCH_') || ['BENCH_QUICK', 'BENCH_ONLY', 'BENCH_SKIP'].includes(k) || v === undefined || v === '') continue;
    settings.set(camel(k.slice(6).toLowerCase().replace(/_/g, '-')), v);
  }
  for (const [k, v] of flags) {
    if (['quick', 'only', 'skip'].includes(k)) continue;
    settings.set(camel(k), v);
  }
  for (const [k, raw] of settings) {
    if (!known.has(k) || k === 'profile') throw new Error(`unknown setting ${k} (${envName(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`))}); see --help`);
    const cur = cfg[k];
    if (Array.isArray(cur)) {
      const list = raw.split(',').map((s) => Number(s.trim()));
      if (list.some((n) => !Number.isFinite(n) || n <= 0)) throw new Error(`${k}: a comma-separated list of positive numbers`);
      cfg[k] = list;
    } else if (typeof cur === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k}: a non-negative number`);
      cfg[k] = n;
    } else if (typeof cur === 'boolean') cfg[k] = !['0', 'false', 'no'].includes(raw.toLowerCase());
    else cfg[k] = raw;
  }
  const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : []);
  const only = list(flags.get('only') ?? env.BENCH_ONLY);
  const skip = list(flags.get('skip') ?? env.BENCH_SKIP);
  for (const p of [...only, ...skip]) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase ${p}; phases: ${PHASES.join(', ')}`);
  cfg.phases = PHASES.filter((p) => (only.length === 0 || only.includes(p)) && !skip.includes(p));
  return cfg as unknown as BenchConfig;
}
