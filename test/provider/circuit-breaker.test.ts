/**
 * The circuit breaker's rules (SPEC §10), one by one, on an injected clock: no waiting, no timers.
 * Defaults: open at ≥ 50 % failures or ≥ 80 % slow calls (≥ 5 s) over a 10 s window with at least
 * 10 calls; 60 s open; 5 probe calls half-open. And the guarded connector: an open circuit sends
 * nothing, declines are answers (not failures), a refused sync reads as "unknown".
 */
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, DEFAULT_BREAKER, type BreakerSettings, type BreakerState } from '../../src/connectors/circuit-breaker.js';
import { GuardedConnector } from '../../src/connectors/guarded.js';
import { createRegistry } from '../../src/connectors/registry.js';
import type { Connector, ConnectorOutcome, SyncOutcome } from '../../src/connectors/port.js';

function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

function breaker(settings: Partial<BreakerSettings> = {}) {
  const c = clock();
  const changes: BreakerState[] = [];
  const b = new CircuitBreaker({ ...DEFAULT_BREAKER, ...settings }, c.now, (s) => changes.push(s));
  return { b, c, changes };
}

const FAST = 10;
const SLOW = 5_000;

/** Records `n` calls that each went out through tryAcquire (as the guarded connector does). */
function calls(b: CircuitBreaker, n: number, failed: boolean, durationMs = FAST): void {
  for (let i = 0; i < n; i++) {
    expect(b.tryAcquire()).toBe(true);
    b.record(failed, durationMs);
  }
}

describe('defaults', () => {
  it('are the documented ones', () => {
    expect(DEFAULT_BREAKER).toEqual({
      failureRateThreshold: 0.5,
      slowCallRateThreshold: 0.8,
      slowCallMs: 5000,
      windowMs: 10_000,
      minimumCalls: 10,
      openMs: 60_000,
      halfOpenProbes: 5,
    });
    // The constructor's defaults are those settings and the real clock.
    const b = new CircuitBreaker();
    calls(b, 10, true);
    expect(b.currentState()).toBe('open');
    expect(b.retryAfterSeconds()).toBe(60);
  });
});

describe('opening on failures', () => {
  it('not before 10 calls, however many fail', () => {
    const { b } = breaker();
    calls(b, 9, true);
    expect(b.currentState()).toBe('closed');
    expect(b.isAvailable()).toBe(true);
    expect(b.snapshot()).toMatchObject({ state: 'closed', calls: 9, failure_rate: 1, opened_at: null });
  });

  it('opens at 50 % failures over 10 calls (5 of 10)', () => {
    const { b, changes } = breaker();
    calls(b, 5, false);
    calls(b, 4, true);
    expect(b.currentState()).toBe('closed');
    calls(b, 1, true);
    expect(b.currentState()).toBe('open');
    expect(changes).toEqual(['open']);
  });

  it('stays closed below 50 % (4 of 10), and opens when the rate reaches it later', () => {
    const { b } = breaker();
    calls(b, 6, false);
    calls(b, 4, true);
    expect(b.currentState()).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 10, failure_rate: 0.4 });
    calls(b, 1, true); // 5 of 11: 45 %
    expect(b.currentState()).toBe('closed');
    calls(b, 1, true); // 6 of 12: 50 %
    expect(b.currentState()).toBe('open');
  });
});

describe('opening on slow calls', () => {
  it('opens at 80 % calls at or above 5 s, even when they succeed', () => {
    const { b } = breaker();
    calls(b, 2, false, FAST);
    calls(b, 7, false, SLOW);
    expect(b.currentState()).toBe('closed');
    calls(b, 1, false, SLOW); // 8 of 10 slow
    expect(b.currentState()).toBe('open');
  });

  it('stays closed at 70 % slow calls and does not count 4999 ms as slow', () => {
    const { b } = breaker();
    calls(b, 3, false, FAST);
    calls(b, 7, false, SLOW);
    expect(b.currentState()).toBe('closed');
    expect(b.snapshot().slow_call_rate).toBe(0.7);
    const { b: b2 } = breaker();
    calls(b2, 10, false, SLOW - 1);
    expect(b2.currentState()).toBe('closed');
    expect(b2.snapshot().slow_call_rate).toBe(0);
  });
});

describe('the window slides', () => {
  it('calls older than 10 s no longer count', () => {
    const { b, c } = breaker();
    calls(b, 9, true);
    c.advance(10_001);
    // The nine failures left the window: one more failure is 1 call, not 10.
    calls(b, 1, true);
    expect(b.currentState()).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 1 });
    calls(b, 8, false);
    calls(b, 1, true); // 2 of 10 failed
    expect(b.currentState()).toBe('closed');
  });

  it('a call exactly 10 s old still counts', () => {
    const { b, c } = breaker();
    calls(b, 5, true);
    c.advance(10_000);
    calls(b, 5, false); // 5 of 10 failed, the oldest exactly at the window's edge
    expect(b.currentState()).toBe('open');
  });
});

describe('open', () => {
  it('refuses every call for 60 s and says how long to wait', () => {
    const { b, c } = breaker();
    calls(b, 10, true);
    expect(b.currentState()).toBe('open');
    expect(b.tryAcquire()).toBe(false);
    expect(b.isAvailable()).toBe(false);
    expect(b.retryAfterSeconds()).toBe(60);
    const snap = b.snapshot();
    expect(snap.opened_at).toBe(new Date(c.now()).toISOString());
    expect(snap.half_open_at).toBe(new Date(c.now() + 60_000).toISOString());
    c.advance(59_001);
    expect(b.retryAfterSeconds()).toBe(1);
    expect(b.tryAcquire()).toBe(false);
    c.advance(998);
    expect(b.currentState()).toBe('open');
    // Outcomes arriving while open (calls that left before it opened) change nothing.
    b.record(false, FAST);
    expect(b.currentState()).toBe('open');
    c.advance(1);
    expect(b.currentState()).toBe('half_open');
    expect(b.retryAfterSeconds()).toBe(0);
  });
});

describe('half-open', () => {
  function openThenHalfOpen() {
    const x = breaker();
    calls(x.b, 10, true);
    x.c.advance(60_000);
    expect(x.b.currentState()).toBe('half_open');
    return x;
  }

  it('lets exactly 5 probes through', () => {
    const { b } = openThenHalfOpen();
    expect(b.isAvailable()).toBe(true);
    for (let i = 0; i < 5; i++) expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false);
    expect(b.isAvailable()).toBe(false);
    expect(b.snapshot()).toMatchObject({ state: 'half_open', calls: 0, half_open_at: null });
  });

  it('closes when the probes succeed, with a fresh window', () => {
    const { b, changes } = openThenHalfOpen();
    for (let i = 0; i < 5; i++) expect(b.tryAcquire()).toBe(true);
    for (let i = 0; i < 4; i++) b.record(false, FAST);
    expect(b.currentState()).toBe('half_open');
    b.record(false, FAST);
    expect(b.currentState()).toBe('closed');
    expect(changes).toEqual(['open', 'half_open', 'closed']);
    expect(b.snapshot()).toMatchObject({ state: 'closed', calls: 0, opened_at: null });
    // The failures from before are forgotten: it takes 10 new calls to judge again.
    calls(b, 9, true);
    expect(b.currentState()).toBe('closed');
  });

  it('reopens when the probes fail (3 of 5), for another 60 s', () => {
    const { b, c, changes } = openThenHalfOpen();
    for (let i = 0; i < 5; i++) expect(b.tryAcquire()).toBe(true);
    b.record(true, FAST);
    b.record(false, FAST);
    b.record(true, FAST);
    b.record(false, FAST);
    expect(b.snapshot()).toMatchObject({ state: 'half_open', calls: 4, failure_rate: 0.5 });
    b.record(true, FAST);
    expect(b.currentState()).toBe('open');
    expect(changes).toEqual(['open', 'half_open', 'open']);
    expect(b.retryAfterSeconds()).toBe(60);
    c.advance(60_000);
    expect(b.currentState()).toBe('half_open');
  });

  it('closes when only 2 of 5 probes fail, reopens when 4 of 5 are slow', () => {
    const a = openThenHalfOpen();
    calls(a.b, 2, true);
    calls(a.b, 3, false);
    expect(a.b.currentState()).toBe('closed');
    const s = openThenHalfOpen();
    calls(s.b, 1, false, FAST);
    calls(s.b, 4, false, SLOW);
    expect(s.b.currentState()).toBe('open');
  });
});

// ---------------------------------------------------------------------------------------------

/** A connector whose every answer is scripted; it counts the calls that reached it. */
class ScriptedConnector implements Connector {
  calls = 0;
  constructor(
    readonly name: string,
    private readonly answer: () => ConnectorOutcome,
    private readonly syncAnswer: () => SyncOutcome = () => ({ outcome: 'not_found' }),
  ) {}
  private async go(): Promise<ConnectorOutcome> {
    this.calls += 1;
    return this.answer();
  }
  authorize = () => this.go();
  capture = () => this.go();
  void = () => this.go();
  refund = () => this.go();
  sync = async (): Promise<SyncOutcome> => {
    this.calls += 1;
    return this.syncAnswer();
  };
  verifyWebhook = (raw: Buffer) => raw.toString() === 'signed';
  parseWebhook = () => [];
}

const AUTH = { attemptId: 'att_x', paymentId: 'pay_x', amount: 100, currency: 'INR', paymentMethod: 'card', paymentMethodToken: 'tok_success', capture: true };
const declined: ConnectorOutcome = { outcome: 'declined', code: 'card_declined', message: 'no' };
const refused: ConnectorOutcome = { outcome: 'error', charged: false, code: 'provider_unavailable_not_charged', message: 'down' };
const timedOut: ConnectorOutcome = { outcome: 'unknown', reason: 'timeout', message: 'slow' };
const ok: ConnectorOutcome = { outcome: 'succeeded', providerReference: 'ch_1', providerStatus: 'captured' };

describe('the guarded connector', () => {
  it('declines are answers: 20 declines never open the circuit', async () => {
    const c = clock();
    const inner = new ScriptedConnector('a', () => declined);
    const g = new GuardedConnector(inner, new CircuitBreaker(DEFAULT_BREAKER, c.now));
    for (let i = 0; i < 20; i++) expect(await g.authorize(AUTH)).toEqual(declined);
    expect(g.breaker.currentState()).toBe('closed');
    expect(inner.calls).toBe(20);
  });

  it('errors and unknown outcomes (timeouts) count as failures; a success does not', async () => {
    const c = clock();
    let answer: ConnectorOutcome = refused;
    const inner = new ScriptedConnector('a', () => answer);
    const g = new GuardedConnector(inner, new CircuitBreaker(DEFAULT_BREAKER, c.now));
    for (let i = 0; i < 5; i++) await g.authorize(AUTH);
    answer = timedOut;
    for (let i = 0; i < 4; i++) await g.capture({ attemptId: 'a', paymentId: 'p', providerReference: 'ch', amount: 1, currency: 'INR' });
    expect(g.breaker.currentState()).toBe('closed'); // 9 calls: not judged yet
    answer = ok;
    await g.void({ attemptId: 'a', paymentId: 'p', providerReference: 'ch' });
    // The 10th call makes it judge: 9 of 10 (the errors and the timeouts) failed.
    expect(g.breaker.currentState()).toBe('open');
    expect(g.breaker.snapshot()).toMatchObject({ state: 'open', calls: 10, failure_rate: 0.9 });
    expect(inner.calls).toBe(10);
  });

  it('refuses calls while open without sending them; a refused sync reads as unknown, not as not-charged', async () => {
    const c = clock();
    const inner = new ScriptedConnector('a', () => refused, () => ({ outcome: 'not_found' }));
    const g = new GuardedConnector(inner, new CircuitBreaker({ ...DEFAULT_BREAKER, minimumCalls: 2 }, c.now));
    await g.authorize(AUTH);
    await g.refund({ attemptId: 'a', paymentId: 'p', refundId: 're', providerReference: 'ch', amount: 1, currency: 'INR' });
    expect(g.breaker.currentState()).toBe('open');
    const sent = inner.calls;
    const out = await g.authorize(AUTH);
    expect(out).toMatchObject({ outcome: 'error', charged: false, code: 'circuit_open' });
    const synced = await g.sync({ attemptId: 'a', paymentId: 'p', operation: 'authorize' });
    expect(synced).toMatchObject({ outcome: 'unknown', reason: 'provider_error' });
    expect(inner.calls).toBe(sent);
    // Webhooks are not provider calls: they pass whatever the circuit says.
    expect(g.verifyWebhook(Buffer.from('signed'), {})).toBe(true);
    expect(g.parseWebhook(Buffer.from('x'))).toEqual([]);
    // A sync that does go out passes its answer through.
    c.advance(60_000);
    expect(await g.sync({ attemptId: 'a', paymentId: 'p', operation: 'authorize' })).toEqual({ outcome: 'not_found' });
    await g.close(); // an inner connector without close() is fine
  });

  it('slow successful calls open it too (measured around the real call)', async () => {
    const c = clock();
    const inner = new ScriptedConnector('a', () => ok);
    const g = new GuardedConnector(inner, new CircuitBreaker({ ...DEFAULT_BREAKER, minimumCalls: 2, slowCallMs: 1 }, c.now));
    const slowInner = inner as unknown as { authorize: () => Promise<ConnectorOutcome> };
    slowInner.authorize = () => new Promise((resolve) => setTimeout(() => resolve(ok), 5));
    await g.authorize(AUTH);
    await g.authorize(AUTH);
    expect(g.breaker.currentState()).toBe('open');
  });
});

describe('the registry', () => {
  it('puts each connector behind its own breaker and reports it', async () => {
    const c = clock();
    const a = new ScriptedConnector('a', () => refused);
    const b = new ScriptedConnector('b', () => ok);
    const reg = createRegistry([a, b], { ...DEFAULT_BREAKER, minimumCalls: 2, openMs: 30_000 }, c.now);
    await reg.get('a')!.authorize(AUTH);
    await reg.get('a')!.authorize(AUTH);
    await reg.get('b')!.authorize(AUTH);
    expect(reg.isAvailable('a')).toBe(false);
    expect(reg.isAvailable('b')).toBe(true);
    expect(reg.retryAfterSeconds('a')).toBe(30);
    expect(reg.retryAfterSeconds('b')).toBe(0);
    const status = reg.status();
    expect(status.map((s) => [s.name, s.circuit?.state])).toEqual([
      ['a', 'open'],
      ['b', 'closed'],
    ]);
    c.advance(30_000);
    expect(reg.isAvailable('a')).toBe(true);
    expect(reg.status()[0]!.circuit?.state).toBe('half_open');
    // Without breakers, nothing is ever refused.
    const bare = createRegistry([a], false);
    expect(bare.get('a')).toBe(a);
    expect(bare.status()).toEqual([{ name: 'a', circuit: null }]);
    expect(bare.retryAfterSeconds('a')).toBe(0);
  });
});
