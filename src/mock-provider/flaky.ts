/**
 * Seeded chaos for the flaky mode. A fixed seed gives the same sequence of faults in every run of
 * a process, so a failing chaos run can be replayed. Only flaky-mode requests draw from it.
 */
export interface FlakyOptions {
  seed: number;
  /** Share of requests answered 500 before anything is charged. */
  failureRate: number;
  /** Share of requests that hang past the client's timeout: half after charging, half before. */
  timeoutRate: number;
  /** Upper bound of the latency added to every flaky request. */
  latencyMs: number;
  /** Share of webhooks delivered twice; default 0.3. */
  webhookDuplicateRate?: number;
  /** Upper bound of the random delay added to each flaky webhook, which reorders them; default 1500. */
  webhookMaxDelayMs?: number;
}

export type FlakyFault = 'none' | 'fail' | 'hang_charged' | 'hang_uncharged';

export interface FlakyDraw {
  latencyMs: number;
  fault: FlakyFault;
}

/** mulberry32: tiny, fast, and good enough to spread faults; not for anything secret. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FlakyDice {
  private readonly requests: () => number;
  // Webhook draws happen on timers, interleaved with requests; their own stream keeps both
  // sequences reproducible.
  private readonly webhooks: () => number;

  constructor(private readonly opts: FlakyOptions) {
    this.requests = mulberry32(opts.seed);
    this.webhooks = mulberry32(opts.seed ^ 0x5bd1e995);
  }

  /** Three draws per request whatever the outcome, so one request's fault never shifts the next. */
  drawRequest(): FlakyDraw {
    const latency = this.requests();
    const fault = this.requests();
    const hangKind = this.requests();
    const latencyMs = Math.floor(latency * this.opts.latencyMs);
    if (fault < this.opts.failureRate) return { latencyMs, fault: 'fail' };
    if (fault < this.opts.failureRate + this.opts.timeoutRate) {
      return { latencyMs, fault: hangKind < 0.5 ? 'hang_charged' : 'hang_uncharged' };
    }
    return { latencyMs, fault: 'none' };
  }

  /** Delays (ms) of each delivery of one webhook: one entry, or two for a duplicate. */
  drawWebhookDeliveries(): number[] {
    const maxDelay = this.opts.webhookMaxDelayMs ?? 1500;
    const first = Math.floor(this.webhooks() * maxDelay);
    const duplicate = this.webhooks() < (this.opts.webhookDuplicateRate ?? 0.3);
    const second = Math.floor(this.webhooks() * maxDelay);
    return duplicate ? [first, second] : [first];
  }
}
