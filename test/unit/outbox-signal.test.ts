/**
 * The relay's wake-up throttle (src/db/outbox-signal.ts): a burst of commits shares NOTIFYs, and
 * yet every commit is followed by a NOTIFY that starts after it, so no event waits for the poll.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Throttle } from '../../src/db/outbox-signal.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A send whose NOTIFY stays in flight until the test finishes it. */
let order = 0;

function sender() {
  const starts: number[] = [];
  /** The order of each start among signals and starts: "after" must not mean "in the same ms". */
  const startOrder: number[] = [];
  const open: (() => void)[] = [];
  const send = () => {
    starts.push(Date.now());
    startOrder.push(order++);
    return new Promise<void>((resolve) => open.push(resolve));
  };
  const finishAll = async () => {
    for (const f of open.splice(0)) f();
    await vi.advanceTimersByTimeAsync(0);
  };
  return { send, starts, startOrder, open, finishAll };
}

describe('outbox wake-up throttle', () => {
  it('sends at once when idle, then one trailing NOTIFY for a burst within the interval', async () => {
    const s = sender();
    const t = new Throttle(s.send, 10, () => Date.now());
    const t0 = Date.now();
    t.signal();
    expect(s.starts).toEqual([t0]);
    await s.finishAll();
    for (let i = 0; i < 50; i++) t.signal();
    expect(s.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(10);
    expect(s.starts).toEqual([t0, t0 + 10]);
    await s.finishAll();
    await vi.advanceTimersByTimeAsync(100);
    expect(s.starts).toHaveLength(2);
  });

  it('a signal while a NOTIFY is in flight gets one more after it, never none', async () => {
    const s = sender();
    const t = new Throttle(s.send, 0, () => Date.now());
    t.signal();
    t.signal();
    t.signal();
    expect(s.starts).toHaveLength(1);
    await s.finishAll();
    expect(s.starts).toHaveLength(2);
    await s.finishAll();
    expect(s.starts).toHaveLength(2);
  });

  it('a failed NOTIFY does not stop later ones', async () => {
    let calls = 0;
    const t = new Throttle(() => (++calls === 1 ? Promise.reject(new Error('connection lost')) : Promise.resolve()), 0, () => Date.now());
    t.signal();
    await vi.advanceTimersByTimeAsync(0);
    t.signal();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(2);
  });

  it('for any timing: every signal is followed by a NOTIFY started at or after it, and NOTIFYs are spaced by the interval', async () => {
    const step = fc.oneof(
      fc.constant({ kind: 'signal' as const }),
      fc.integer({ min: 0, max: 25 }).map((ms) => ({ kind: 'wait' as const, ms })),
      fc.constant({ kind: 'finish' as const }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 20 }), fc.array(step, { maxLength: 40 }), async (interval, steps) => {
        const s = sender();
        const t = new Throttle(s.send, interval, () => Date.now());
        const signals: number[] = [];
        for (const st of steps) {
          if (st.kind === 'signal') {
            signals.push(order++);
            t.signal();
          } else if (st.kind === 'wait') await vi.advanceTimersByTimeAsync(st.ms);
          else await s.finishAll();
        }
        // Let everything settle: NOTIFYs finish, trailing timers fire.
        for (let i = 0; i < 10; i++) {
          await s.finishAll();
          await vi.advanceTimersByTimeAsync(interval + 1);
        }
        for (const at of signals) expect(s.startOrder.some((o) => o > at)).toBe(true);
        for (let i = 1; i < s.starts.length; i++) expect(s.starts[i]! - s.starts[i - 1]!).toBeGreaterThanOrEqual(interval);
        expect(s.starts.length).toBeLessThanOrEqual(signals.length);
      }),
      { numRuns: 300 },
    );
  });
});
