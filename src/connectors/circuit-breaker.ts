/**
 * A circuit breaker per connector (SPEC §10): over a sliding time window with at least
 * `minimumCalls`, it opens when the failure rate or the slow-call rate reaches its threshold; after
 * `openMs` it half-opens and lets `halfOpenProbes` calls through; their outcome closes it or opens it
 * again. Declines are answers, not failures: only errors, timeouts and unknown outcomes count.
 */
export interface BreakerSettings {
  failureRateThreshold: number;
  slowCallRateThreshold: number;
  slowCallMs: number;
  windowMs: number;
  minimumCalls: number;
  openMs: number;
  halfOpenProbes: number;
}

export const DEFAULT_BREAKER: BreakerSettings = {
  failureRateThreshold: 0.5,
  slowCallRateThreshold: 0.8,
  slowCallMs: 5000,
  windowMs: 10_000,
  minimumCalls: 10,
  openMs: 60_000,
  halfOpenProbes: 5,
};

export type BreakerState = 'closed' | 'open' | 'half_open';

interface Call {
  at: number;
  failed: boolean;
  slow: boolean;
}

export interface BreakerSnapshot {
  state: BreakerState;
  calls: number;
  failure_rate: number;
  slow_call_rate: number;
  opened_at: string | null;
  half_open_at: string | null;
}

export class CircuitBreaker {
  private calls: Call[] = [];
  private state: BreakerState = 'closed';
  private openedAt = 0;
  private probesIssued = 0;
  private probes: Call[] = [];

  constructor(
    private readonly settings: BreakerSettings = DEFAULT_BREAKER,
    private readonly now: () => number = Date.now,
    private readonly onStateChange: (state: BreakerState) => void = () => undefined,
  ) {}

  private move(state: BreakerState): void {
    this.state = state;
    if (state === 'open') this.openedAt = this.now();
    if (state === 'half_open') {
      this.probesIssued = 0;
      this.probes = [];
    }
    if (state === 'closed') this.calls = [];
    this.onStateChange(state);
  }

  private refresh(): void {
    if (this.state === 'open' && this.now() - this.openedAt >= this.settings.openMs) this.move('half_open');
    const cutoff = this.now() - this.settings.windowMs;
    while (this.calls.length > 0 && this.calls[0]!.at < cutoff) this.calls.shift();
  }

  currentState(): BreakerState {
    this.refresh();
    return this.state;
  }

  /** May a new call go out now (without taking a probe slot)? */
  isAvailable(): boolean {
    this.refresh();
    if (this.state === 'closed') return true;
    return this.state === 'half_open' && this.probesIssued < this.settings.halfOpenProbes;
  }

  /** Takes permission for one call; false means the call must not be made. */
  tryAcquire(): boolean {
    this.refresh();
    if (this.state === 'closed') return true;
    if (this.state === 'half_open' && this.probesIssued < this.settings.halfOpenProbes) {
      this.probesIssued += 1;
      return true;
    }
    return false;
  }

  /** Seconds until a call may go out again (0 when it may now). */
  retryAfterSeconds(): number {
    this.refresh();
    if (this.state !== 'open') return 0;
    return Math.max(1, Math.ceil((this.openedAt + this.settings.openMs - this.now()) / 1000));
  }

  record(failed: boolean, durationMs: number): void {
    this.refresh();
    const call = { at: this.now(), failed, slow: durationMs >= this.settings.slowCallMs };
    if (this.state === 'half_open') {
      this.probes.push(call);
      if (this.probes.length >= this.settings.halfOpenProbes) this.move(this.tripped(this.probes) ? 'open' : 'closed');
      return;
    }
    if (this.state === 'open') return;
    this.calls.push(call);
    if (this.calls.length >= this.settings.minimumCalls && this.tripped(this.calls)) this.move('open');
  }

  private tripped(calls: Call[]): boolean {
    const failed = calls.filter((c) => c.failed).length / calls.length;
    const slow = calls.filter((c) => c.slow).length / calls.length;
    return failed >= this.settings.failureRateThreshold || slow >= this.settings.slowCallRateThreshold;
  }

  snapshot(): BreakerSnapshot {
    this.refresh();
    const calls = this.state === 'half_open' ? this.probes : this.calls;
    const n = calls.length || 1;
    return {
      state: this.state,
      calls: calls.length,
      failure_rate: calls.filter((c) => c.failed).length / n,
      slow_call_rate: calls.filter((c) => c.slow).length / n,
      opened_at: this.state === 'closed' ? null : new Date(this.openedAt).toISOString(),
      half_open_at: this.state === 'open' ? new Date(this.openedAt + this.settings.openMs).toISOString() : null,
    };
  }
}
