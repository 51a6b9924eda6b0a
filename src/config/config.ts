import { z } from 'zod';

// Whole decimal numbers only: no blanks, no hex, no exponents (z.coerce would read ' ' as 0).
const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max, `must be at most ${max}`))
    .default(def);
const rate = (def: number) =>
  z
    .string()
    .trim()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'must be a number from 0 to 1')
    .transform(Number)
    .default(def);
const urlWithScheme = (schemes: string[]) =>
  z
    .string()
    .url()
    .refine((v) => schemes.some((s) => v.startsWith(`${s}://`)), `must start with ${schemes.map((s) => `${s}://`).join(' or ')}`);

const timeoutsSchema = z.record(
  z.string(),
  z.object({ connect: z.number().int().positive(), authorize: z.number().int().positive(), default: z.number().int().positive() }).partial().strict(),
);

const schema = z.object({
  PORT: int(8080, 0, 65535),
  HOST: z.string().default('0.0.0.0'),
  DATABASE_URL: urlWithScheme(['postgres', 'postgresql']).optional(),
  REDIS_URL: urlWithScheme(['redis', 'rediss']).optional(),
  SWITCHYARD_DATA_DIR: z.string().min(1).default('./.switchyard'),
  SWITCHYARD_ADMIN_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Mode of the API keys and webhook rules: test keys allow loopback webhook URLs. */
  SWITCHYARD_MODE: z.enum(['test', 'live']).default('test'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BODY_LIMIT_BYTES: int(64 * 1024, 1024),
  DB_POOL_MAX: int(10, 1),
  /** Run statements prepared per connection (1); 0 for a pooler that cannot keep them (PgBouncer in transaction mode before 1.21). */
  DB_PREPARED_STATEMENTS: z.enum(['0', '1']).default('1').transform((v) => v === '1'),
  IDEMPOTENCY_TTL_SECONDS: int(24 * 3600, 60),
  /** How long an executing request owns its idempotency key; past that a retry may resume it. */
  IDEMPOTENCY_LOCK_SECONDS: int(30, 1),
  /** Finished idempotent responses kept in memory per api process (LRU) so replays skip the database; 0: off. */
  IDEMPOTENCY_CACHE_ENTRIES: int(10_000, 0, 1_000_000),
  /** How long an api process trusts an API key it looked up before asking the database again; 0: off. */
  API_KEY_CACHE_SECONDS: int(2, 0, 300),
  /** Where the mock and flaky connectors reach the mock provider; default: this process. */
  MOCK_PROVIDER_URL: z.string().url().optional(),
  MOCK_PROVIDER_WEBHOOK_SECRET: z.string().min(8).default('mock_provider_webhook_secret'),
  CONNECTOR_CONNECT_TIMEOUT_MS: int(2000, 1),
  CONNECTOR_AUTHORIZE_TIMEOUT_MS: int(5000, 1),
  CONNECTOR_TIMEOUT_MS: int(5000, 1),
  /** The mock provider's delay for tok_timeout_* tokens; must exceed the read timeout. */
  MOCK_PROVIDER_HANG_MS: int(15000, 1),
  FLAKY_SEED: int(42),
  FLAKY_FAILURE_RATE: rate(0.1),
  FLAKY_TIMEOUT_RATE: rate(0.05),
  FLAKY_LATENCY_MS: int(50),
  /** Per connector and operation, overriding the three above: {"stripe": {"authorize": 8000, "connect": 1000}}. */
  CONNECTOR_TIMEOUTS: z
    .string()
    .default('{}')
    .transform((text, ctx) => {
      try {
        return timeoutsSchema.parse(JSON.parse(text));
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be JSON like {"mock": {"authorize": 5000, "default": 5000, "connect": 2000}}' });
        return z.NEVER;
      }
    }),
  CIRCUIT_FAILURE_RATE: rate(0.5),
  CIRCUIT_SLOW_CALL_RATE: rate(0.8),
  CIRCUIT_SLOW_CALL_MS: int(5000, 1),
  CIRCUIT_WINDOW_MS: int(10_000, 100),
  CIRCUIT_MINIMUM_CALLS: int(10, 1),
  CIRCUIT_OPEN_MS: int(60_000, 1),
  CIRCUIT_HALF_OPEN_PROBES: int(5, 1),
  STRIPE_SECRET_KEY: z.string().min(8).optional(),
  STRIPE_WEBHOOK_SECRET: z.string().min(8).optional(),
  /** Where the Stripe SDK connects; only for a local fake of the Stripe API in tests. */
  STRIPE_API_BASE: urlWithScheme(['http', 'https']).optional(),
  RECONCILE_INTERVAL_MS: int(10_000, 10),
  RECONCILE_THRESHOLD_SECONDS: int(60, 0),
  RECONCILE_ASYNC_THRESHOLD_SECONDS: int(900, 0),
  RECONCILE_MAX_BACKOFF_SECONDS: int(3600, 1),
  /** Requests per window per merchant, by rate tier, and for the whole service. */
  RATE_LIMIT_WINDOW_SECONDS: int(1, 1),
  RATE_LIMIT_PLATINUM: int(5000, 1),
  RATE_LIMIT_GOLD: int(1000, 1),
  RATE_LIMIT_SILVER: int(200, 1),
  RATE_LIMIT_BRONZE: int(50, 1),
  RATE_LIMIT_GLOBAL: int(20_000, 1),
  /** Requests one api process works on at once before answering 503 OVERLOADED. */
  MAX_IN_FLIGHT: int(1000, 1),
  /** Requests are shed (503 OVERLOADED) while a request of this process has waited longer than this for a database connection; 0: never. */
  OVERLOAD_DB_WAIT_MS: int(250, 0),
  /** On SIGTERM, readiness answers 503 this long before the listener closes (load balancers notice). */
  SHUTDOWN_DRAIN_DELAY_MS: int(0, 0, 25_000),
  /** OTLP/HTTP collector for traces; unset: no spans are exported. */
  OTEL_EXPORTER_OTLP_ENDPOINT: urlWithScheme(['http', 'https']).optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default('switchyard'),
  /** A worker-only process serves /metrics and /health/* on this port when set. */
  WORKER_METRICS_PORT: z.string().trim().regex(/^\d+$/, 'must be a port number').transform(Number).pipe(z.number().int().max(65535)).optional(),
  WEBHOOK_TIMEOUT_MS: int(10_000, 100),
  /** Seconds before attempt 1, 2, …: immediately, 1 min, 5 min, 15 min, 1 h, 6 h, 24 h; then dead. */
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .regex(/^\s*\d+(\s*,\s*\d+)*\s*$/, 'a comma-separated list of seconds')
    .default('0,60,300,900,3600,21600,86400'),
  WEBHOOK_LEASE_SECONDS: int(30, 1),
  WEBHOOK_JOB_EXPIRE_SECONDS: int(60, 1),
  WEBHOOK_BACKLOG_THRESHOLD: int(10_000, 1),
  WEBHOOK_DROPPABLE_TYPES: z.string().default('payment.created,payment.processing'),
  WEBHOOK_CONCURRENCY: int(4, 1),
  WEBHOOK_BATCH_SIZE: int(50, 1),
  /** Safety-net poll of each delivery worker; new deliveries wake the workers at once, so this only paces retries that come due. */
  WEBHOOK_POLL_MS: int(2000, 100),
  /** The worker vacuums the delivery queue's job table after this many finished jobs; 0: leave it to autovacuum. */
  WEBHOOK_QUEUE_VACUUM_JOBS: int(20_000, 0),
  OUTBOX_BATCH_SIZE: int(500, 1),
  OUTBOX_POLL_MS: int(1000, 10),
  /** At most one relay wake-up (NOTIFY, after the commit) per this many ms per process; 0: one per commit. */
  OUTBOX_NOTIFY_INTERVAL_MS: int(10, 0, 1000),
  WORKER_MAINTENANCE_SECONDS: int(30, 1),
  HOUSEKEEPING_CRON: z.string().default('*/5 * * * *'),
  SETTLEMENT_CRON: z.string().default('0 2 * * *'),
  SETTLEMENT_RESUME_CRON: z.string().default('*/5 * * * *'),
  SETTLEMENT_TZ: z.string().default('UTC'),
  SETTLEMENT_CHUNK_SIZE: int(1000, 1, 10_000),
  SETTLEMENT_CHUNK_RETRIES: int(3, 0, 100),
  SETTLEMENT_RETRY_DELAY_MS: int(1000, 0),
  SETTLEMENT_LEASE_SECONDS: int(60, 5),
});

export type Config = z.infer<typeof schema>;

const SECRET_NAME = /KEY|SECRET|PASSWORD|TOKEN|URL/;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the environment; one message per bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const firstPerVariable = parsed.error.issues.filter((i, n, all) => all.findIndex((o) => o.path[0] === i.path[0]) === n);
    throw new ConfigError(
      firstPerVariable.map((i) => {
        const name = String(i.path[0]);
        // Secrets and URLs (which may carry passwords) are never echoed back.
        const shown = SECRET_NAME.test(name) ? '' : ` (got ${JSON.stringify(input[name])})`;
        return `${i.path.join('.')}: ${i.message}${shown}`;
      }),
    );
  }
  return parsed.data;
}
