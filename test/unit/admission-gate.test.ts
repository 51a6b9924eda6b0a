/**
 * The admission gate in front of the database pool (src/db/admission.ts): a new request starts at
 * once while nobody waits for a connection; otherwise it waits, oldest first, until the pool's
 * queue has cleared — its full time while the waiting room absorbs a burst, a small share of it
 * once the room has not emptied for a larger share (both scale with the wait limit).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AdmissionGate, STANDING_FRACTION, STANDING_WAIT_FRACTION } from '../../src/db/admission.js';

function pool(waiting = 0, free = 0) {
  return {
    waitingNow: waiting,
    freeNow: free,
    waiting() {
      return this.waitingNow;
    },
    free() {
      return this.freeNow;
    },
  };
}

/** The settled value of an admission so far (undefined while pending). */
function settled(p: true | Promise<boolean>): () => boolean | undefined {
  expect(p).toBeInstanceOf(Promise);
  let value: boolean | undefined;
  void (p as Promise<boolean>).then((v) => (value = v));
  return () => value;
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

const clock = () => Date.now(); // faked with the timers

describe('admission gate', () => {
  it('lets a request start at once, without a promise, while nobody waits for a connection', () => {
    const gate = new AdmissionGate(pool(0, 0), clock);
    expect(gate.admit(100)).toBe(true);
    expect(gate.size).toBe(0);
  });

  it('holds new requests while the pool has a queue and lets them in oldest first, as many as there are free connections', async () => {
    const p = pool(3, 0);
    const gate = new AdmissionGate(p, clock);
    const a = settled(gate.admit(1000));
    const b = settled(gate.admit(1000));
    const c = settled(gate.admit(1000));
    await Promise.resolve();
    expect([a(), b(), c()]).toEqual([undefined, undefined, undefined]);
    expect(gate.size).toBe(3);

    // A connection frees up but someone still waits for it: the queue is theirs.
    p.freeNow = 1;
    gate.pump();
    await Promise.resolve();
    expect([a(), b(), c()]).toEqual([undefined, undefined, undefined]);

    // The pool's queue has cleared with two connections free: the two oldest start.
    p.waitingNow = 0;
    p.freeNow = 2;
    gate.pump();
    await Promise.resolve();
    expect([a(), b(), c()]).toEqual([true, true, undefined]);
    expect(gate.size).toBe(1);

    // While one waits here, a newcomer queues behind it even though the pool has no queue.
    p.freeNow = 0; // the two let in took them
    const d = settled(gate.admit(1000));
    p.freeNow = 1;
    gate.pump();
    await Promise.resolve();
    expect([c(), d()]).toEqual([true, undefined]);
  });

  it('a burst waits its full time; once the room has not emptied for a while a newcomer waits only briefly', async () => {
    const limit = 250; // the default OVERLOAD_DB_WAIT_MS
    const standingMs = limit * STANDING_FRACTION;
    const briefMs = limit * STANDING_WAIT_FRACTION;
    expect([standingMs, briefMs]).toEqual([100, 10]);
    const p = pool(1, 0);
    const gate = new AdmissionGate(p, clock);
    const first = settled(gate.admit(limit));
    expect(gate.standing).toBe(false);
    await vi.advanceTimersByTimeAsync(standingMs);
    expect(gate.standing).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(gate.standing).toBe(true);

    const late = settled(gate.admit(limit));
    await vi.advanceTimersByTimeAsync(briefMs - 1);
    expect(late()).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(late()).toBe(false); // refused after the brief wait
    expect(first()).toBeUndefined(); // the first keeps its own time

    await vi.advanceTimersByTimeAsync(limit - standingMs - 1 - briefMs - 1);
    expect(first()).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(first()).toBe(false);
    expect(gate.size).toBe(0);
    expect(gate.standing).toBe(false);

    // The room emptied: the next one waits its full time again, and starts once the pool clears.
    const next = settled(gate.admit(limit));
    await vi.advanceTimersByTimeAsync(standingMs + briefMs);
    expect(next()).toBeUndefined();
    p.waitingNow = 0;
    p.freeNow = 1;
    gate.pump();
    await Promise.resolve();
    expect(next()).toBe(true);
  });

  it('both times scale with the wait limit: with 5 s the room stands after 2 s and then a newcomer waits 200 ms', async () => {
    const gate = new AdmissionGate(pool(1, 0), clock);
    const first = settled(gate.admit(5000));
    await vi.advanceTimersByTimeAsync(1000);
    expect(gate.standing).toBe(false); // 1 s of a busy room is still a burst at this limit
    await vi.advanceTimersByTimeAsync(1001);
    expect(gate.standing).toBe(true);
    const late = settled(gate.admit(5000));
    await vi.advanceTimersByTimeAsync(199);
    expect(late()).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect([first(), late()]).toEqual([undefined, false]);
  });
});
