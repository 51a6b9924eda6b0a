/**
 * The open-model load generator.
 *
 * Requests are SCHEDULED at a fixed arrival rate: request i of a step is due at t0 + i / rate,
 * whatever happened to the requests before it. Its latency is measured from that intended send
 * time, not from the moment it actually left (coordinated-omission correction): when the server
 * or the generator falls behind, the queueing delay a real client population would have suffered
 * shows up in the percentiles instead of silently lowering the offered load.
 *
 * No pipelining (undici Pool, pipelining 1: one request per connection at a time), a bounded
 * number of connections, a warm-up period whose requests are sent but not counted, a bound on
 * outstanding requests and a per-request timeout, so every step ends by itself in bounded time.
 */
import { Pool } from 'undici';

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface StepResult {
  /** Scheduled arrivals per second. */
  offered: number;
  /** Successful (2xx) measured responses per second of the measured window (or until the last of them arrived, if later). */
  achieved: number;
  warmupSeconds: number;
  measuredSeconds: number;
  /** Requests scheduled in the measured window (after warm-up). */
  measured: number;
  ok: number;
  /** Non-2xx answers, network errors, timeouts and requests the generator could not send in time. */
  errors: number;
  errorKinds: Record<string, number>;
  /** Latency from the intended send time, milliseconds, over successful measured requests. */
  latencyMs: Percentiles;
  /** How late the generator actually put requests on the wire (its own lag), milliseconds. */
  sendLagMs: { p99: number; max: number };
  /** CPU seconds the generator process used during the step, divided by its wall time (1.0 = one core). */
  generatorCpu: number;
  wallSeconds: number;
}

export interface StepOptions {
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Builds request number i (0-based across warm-up and measured window). */
  makeRequest: (i: number) => RequestSpec;
  timeoutMs?: number;
  /** After the last arrival, how long outstanding requests may take before they are aborted. */
  drainMs?: number;
  /** Requests in flight (including those undici queues for a free connection) before new arrivals are refused as errors. */
  maxOutstanding?: number;
}

export function percentiles(values: Float64Array | number[]): Percentiles {
  const n = values.length;
  if (n === 0) return { p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  const sorted = Float64Array.from(values).sort();
  // nearest-rank
  const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: sorted[n - 1]!, mean: sum / n };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Calls fire(i, intendedTime) for i = 0..count-1 at `rate` per second from t0, on time or as soon
 * after as the event loop allows (late calls still carry their intended time). Resolves when the
 * last one has been fired.
 */
export async function openLoop(rate: number, count: number, fire: (i: number, intended: number) => void, t0 = performance.now() + 20): Promise<void> {
  const interval = 1000 / rate;
  let next = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      const now = performance.now();
      while (next < count && t0 + next * interval <= now) {
        fire(next, t0 + next * interval);
        next += 1;
      }
      if (next >= count) return resolve();
      setTimeout(pump, Math.max(0, t0 + next * interval - performance.now()));
    };
    setTimeout(pump, Math.max(0, t0 - performance.now()));
  });
}

export class LoadTarget {
  readonly pool: Pool;

  constructor(
    readonly origin: string,
    connections = 256,
  ) {
    if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(origin)) throw new Error(`the load generator only talks to 127.0.0.1, not ${origin}`);
    this.pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
  }

  async close(): Promise<void> {
    await this.pool.destroy().catch(() => undefined);
  }

  /** One request outside any step (setup); returns the status and parsed JSON body. */
  async call<T = Record<string, unknown>>(spec: RequestSpec, timeoutMs = 30_000): Promise<{ status: number; body: T; headers: Record<string, string | string[] | undefined> }> {
    const res = await this.pool.request({
      method: spec.method,
      path: spec.path,
      headers: spec.headers,
      body: spec.body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* keep the text */
    }
    return { status: res.statusCode, body: body as T, headers: res.headers };
  }

  /** One open-model step at a fixed arrival rate. */
  async step(o: StepOptions): Promise<StepResult> {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const drainMs = o.drainMs ?? timeoutMs + 1_000;
    const maxOutstanding = o.maxOutstanding ?? 20_000;
    const warmCount = Math.round((o.rate * o.warmupMs) / 1000);
    const measuredCount = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
    const total = warmCount + measuredCount;
    const interval = 1000 / o.rate;

    const latencies = new Float64Array(measuredCount);
    let nLat = 0;
    const lags = new Float64Array(measuredCount);
    let nLag = 0;
    let ok = 0;
    let errors = 0;
    const errorKinds: Record<string, number> = {};
    let lastMeasuredDone = 0;
    let outstanding = 0;
    const controllers = new Set<AbortController>();
    const t0 = performance.now() + 20;
    const measureFrom = t0 + warmCount * interval;
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();

    const error = (measured: boolean, kind: string) => {
      if (!measured) return;
      errors += 1;
      errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
    };

    let settle: () => void = () => undefined;
    const allDone = new Promise<void>((r) => (settle = r));
    let finished = 0;
    const done = () => {
      finished += 1;
      if (finished === total) settle();
    };

    const fire = (i: number, intended: number) => {
      const measured = i >= warmCount;
      if (outstanding >= maxOutstanding) {
        error(measured, 'generator: too many outstanding');
        done();
        return;
      }
      let spec: RequestSpec;
      try {
        spec = o.makeRequest(i);
      } catch (err) {
        error(measured, `generator: ${(err as Error).message}`);
        done();
        return;
      }
      outstanding += 1;
      const ac = new AbortController();
      controllers.add(ac);
      const timer = setTimeout(() => ac.abort(new Error('timeout')), timeoutMs);
      if (measured && nLag < lags.length) lags[nLag++] = performance.now() - intended;
      this.pool
        .request({ method: spec.method, path: spec.path, headers: spec.headers, body: spec.body, signal: ac.signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
        .then(async (res) => {
          await res.body.dump({ limit: 1 << 20 });
          const end = performance.now();
          if (!measured) return;
          if (res.statusCode >= 200 && res.statusCode < 300) {
            ok += 1;
            latencies[nLat++] = end - intended;
            if (end > lastMeasuredDone) lastMeasuredDone = end;
          } else error(true, `HTTP ${res.statusCode}`);
        })
        .catch((err: unknown) => {
          const e = err as { code?: string; name?: string; message?: string };
          error(measured, ac.signal.aborted ? 'timeout' : `network: ${e.code ?? e.name ?? e.message}`);
        })
        .finally(() => {
          clearTimeout(timer);
          controllers.delete(ac);
          outstanding -= 1;
          done();
        });
    };

    await openLoop(o.rate, total, fire, t0);
    const drained = await Promise.race([allDone.then(() => true), sleep(drainMs).then(() => false)]);
    if (!drained) {
      for (const ac of controllers) ac.abort(new Error('drain deadline'));
      await Promise.race([allDone, sleep(2_000)]);
    }
    const wallSeconds = (performance.now() - wall0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const measuredEnd = measureFrom + measuredCount * interval;
    const window = Math.max(measuredEnd, lastMeasuredDone) - measureFrom;
    const lagP = percentiles(lags.subarray(0, nLag));
    return {
      offered: o.rate,
      achieved: ok / (window / 1000),
      warmupSeconds: o.warmupMs / 1000,
      measuredSeconds: o.durationMs / 1000,
      measured: measuredCount,
      ok,
      errors: errors + Math.max(0, measuredCount - ok - errors), // anything unaccounted for (aborted at the deadline) is an error
      errorKinds,
      latencyMs: percentiles(latencies.subarray(0, nLat)),
      sendLagMs: { p99: lagP.p99, max: lagP.max },
      generatorCpu: (cpu.user + cpu.system) / 1e6 / wallSeconds,
      wallSeconds,
    };
  }
}

export interface LadderStep {
  result: StepResult;
  passed: boolean;
  /** Whatever the caller measured around the step (CPU of the processes, …). */
  extra?: Record<string, unknown>;
}

export interface LadderResult {
  steps: LadderStep[];
  /** The highest offered rate that passed, or 0. */
  best: number;
  criterion: string;
}

/**
 * The step method: fixed-rate steps in increasing order; the best is the highest step with no
 * errors and p99 under the bound. Stops at the first failing step (higher ones would fail too and
 * only pile up a backlog in the database).
 */
export async function ladder(
  rates: number[],
  run: (rate: number) => Promise<{ result: StepResult; extra?: Record<string, unknown> }>,
  opts: { p99Ms: number; pauseMs: number; log: (line: string) => void },
): Promise<LadderResult> {
  const steps: LadderStep[] = [];
  let best = 0;
  for (const rate of rates) {
    const { result, extra } = await run(rate);
    const passed = result.errors === 0 && result.latencyMs.p99 < opts.p99Ms;
    steps.push({ result, passed, ...(extra ? { extra } : {}) });
    opts.log(`  ${describeStep(result)}  ${passed ? 'PASS' : 'FAIL'}`);
    if (!passed) break;
    best = rate;
    await sleep(opts.pauseMs);
  }
  return { steps, best, criterion: `0 errors and p99 < ${opts.p99Ms} ms` };
}

export function fmtMs(v: number): string {
  if (!Number.isFinite(v)) return '–';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function describeStep(r: StepResult): string {
  const kinds = Object.entries(r.errorKinds)
    .map(([k, n]) => `${k}×${n}`)
    .join(', ');
  return (
    `offered ${r.offered}/s achieved ${r.achieved.toFixed(0)}/s errors ${r.errors}${kinds ? ` (${kinds})` : ''} ` +
    `p50 ${fmtMs(r.latencyMs.p50)} p90 ${fmtMs(r.latencyMs.p90)} p99 ${fmtMs(r.latencyMs.p99)} max ${fmtMs(r.latencyMs.max)} ms ` +
    `[gen cpu ${(r.generatorCpu * 100).toFixed(0)}%, send lag p99 ${fmtMs(r.sendLagMs.p99)} ms]`
  );
}
