import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PAYMENT_STATUSES,
  TERMINAL_STATUSES,
  allowedTransitions,
  canTransition,
  isTerminal,
  pathTo,
  type PaymentStatus,
} from '../../src/domain/state-machine.js';

/** SPEC §6, written out independently of the implementation. */
const SPEC_ALLOWED: ReadonlyArray<readonly [PaymentStatus, PaymentStatus]> = [
  ['pending', 'processing'],
  ['pending', 'failed'],
  ['pending', 'canceled'],
  ['processing', 'authorized'],
  ['processing', 'captured'],
  ['processing', 'failed'],
  ['authorized', 'captured'],
  ['authorized', 'canceled'],
  ['authorized', 'failed'],
  ['captured', 'settled'],
  ['captured', 'refunded'],
  ['settled', 'refunded'],
];

const ALL: readonly PaymentStatus[] = [
  'pending',
  'processing',
  'authorized',
  'captured',
  'settled',
  'refunded',
  'failed',
  'canceled',
];
const SPEC_TERMINAL: readonly PaymentStatus[] = ['failed', 'canceled', 'refunded'];

/**
 * A forward rank consistent with SPEC §6: every allowed move goes to a strictly higher rank, so
 * "never backwards" means "rank strictly increases".
 */
const RANK: Record<PaymentStatus, number> = {
  pending: 0,
  processing: 1,
  authorized: 2,
  captured: 3,
  settled: 4,
  refunded: 5,
  failed: 6,
  canceled: 6,
};

const isSpecAllowed = (from: PaymentStatus, to: PaymentStatus): boolean =>
  SPEC_ALLOWED.some(([f, t]) => f === from && t === to);

/** Reachability over the SPEC table (transitive closure), used as the oracle for pathTo. */
function specReachable(from: PaymentStatus, to: PaymentStatus): boolean {
  const seen = new Set<PaymentStatus>([from]);
  const stack: PaymentStatus[] = [from];
  while (stack.length > 0) {
    const s = stack.pop()!;
    for (const [f, t] of SPEC_ALLOWED) {
      if (f !== s || seen.has(t)) continue;
      if (t === to) return true;
      seen.add(t);
      stack.push(t);
    }
  }
  return false;
}

const PAIRS = ALL.flatMap((from) => ALL.map((to) => ({ from, to, allowed: isSpecAllowed(from, to) })));

describe('state machine: the status list', () => {
  it('has exactly the 8 statuses of SPEC §6', () => {
    expect([...PAYMENT_STATUSES].sort()).toEqual([...ALL].sort());
  });

  it('has exactly failed, canceled and refunded as terminal statuses', () => {
    expect([...TERMINAL_STATUSES].sort()).toEqual([...SPEC_TERMINAL].sort());
    for (const s of ALL) expect(isTerminal(s), s).toBe(SPEC_TERMINAL.includes(s));
  });

  it('the SPEC table lists the expected number of allowed pairs out of 64', () => {
    expect(PAIRS).toHaveLength(64);
    expect(PAIRS.filter((p) => p.allowed)).toHaveLength(SPEC_ALLOWED.length);
  });
});

describe('state machine: every (from, to) pair', () => {
  it.each(PAIRS.filter((p) => p.allowed))('allows $from → $to', ({ from, to }) => {
    expect(canTransition(from, to)).toBe(true);
    expect(allowedTransitions(from)).toContain(to);
  });

  it.each(PAIRS.filter((p) => !p.allowed))('refuses $from → $to', ({ from, to }) => {
    expect(canTransition(from, to)).toBe(false);
    expect(allowedTransitions(from)).not.toContain(to);
  });

  it.each(ALL)('refuses the self-transition %s → %s', (s) => {
    expect(canTransition(s, s)).toBe(false);
  });

  it.each(ALL)('allowedTransitions(%s) is exactly the SPEC row', (from) => {
    const expected = SPEC_ALLOWED.filter(([f]) => f === from).map(([, t]) => t);
    expect([...allowedTransitions(from)].sort()).toEqual([...expected].sort());
  });

  it.each(SPEC_TERMINAL)('terminal status %s has no outgoing transition', (s) => {
    expect(allowedTransitions(s)).toEqual([]);
    for (const to of ALL) expect(canTransition(s, to), `${s} → ${to}`).toBe(false);
  });

  it('every allowed transition moves strictly forward (nothing moves backwards)', () => {
    for (const { from, to } of PAIRS) {
      if (canTransition(from, to)) expect(RANK[to], `${from} → ${to}`).toBeGreaterThan(RANK[from]);
    }
  });
});

describe('state machine: pathTo', () => {
  it.each(PAIRS)('pathTo($from, $to) is a legal path iff the target is reachable', ({ from, to }) => {
    const path = pathTo(from, to);
    if (from === to) {
      expect(path).toEqual([]);
      return;
    }
    if (!specReachable(from, to)) {
      expect(path).toBeNull();
      return;
    }
    expect(path).not.toBeNull();
    const steps = path!;
    expect(steps.length).toBeGreaterThan(0);
    expect(steps[steps.length - 1]).toBe(to);
    let cur = from;
    for (const next of steps) {
      expect(isSpecAllowed(cur, next), `${cur} → ${next} in ${[from, ...steps].join(' → ')}`).toBe(true);
      cur = next;
    }
    // No status repeats in the path and the start is not revisited.
    expect(new Set([from, ...steps]).size).toBe(steps.length + 1);
  });

  it('returns the direct step for an allowed transition', () => {
    for (const [from, to] of SPEC_ALLOWED) expect(pathTo(from, to), `${from} → ${to}`).toEqual([to]);
  });

  it('walks pending → processing → captured when the provider reports a capture', () => {
    expect(pathTo('pending', 'captured')).toEqual(['processing', 'captured']);
    expect(pathTo('pending', 'refunded')).toEqual(['processing', 'captured', 'refunded']);
    expect(pathTo('authorized', 'settled')).toEqual(['captured', 'settled']);
  });

  it('returns null for every backward move', () => {
    for (const { from, to } of PAIRS) {
      if (from !== to && RANK[to] <= RANK[from]) expect(pathTo(from, to), `${from} → ${to}`).toBeNull();
    }
  });

  it('returns null for every move out of a terminal status', () => {
    for (const from of SPEC_TERMINAL) {
      for (const to of ALL) if (to !== from) expect(pathTo(from, to), `${from} → ${to}`).toBeNull();
    }
  });

  it('returns null for moves between sibling branches (canceled ↔ failed, settled → canceled)', () => {
    expect(pathTo('failed', 'canceled')).toBeNull();
    expect(pathTo('canceled', 'failed')).toBeNull();
    expect(pathTo('captured', 'canceled')).toBeNull();
    expect(pathTo('settled', 'failed')).toBeNull();
    expect(pathTo('captured', 'authorized')).toBeNull();
  });

  it('property: any path returned is made only of allowed steps and ends at the target', () => {
    const status = fc.constantFrom(...ALL);
    fc.assert(
      fc.property(status, status, (from, to) => {
        const path = pathTo(from, to);
        if (path === null) return !specReachable(from, to) && from !== to;
        let cur = from;
        for (const next of path) {
          if (!canTransition(cur, next)) return false;
          cur = next;
        }
        return cur === to;
      }),
    );
  });
});

describe('state machine: property — a reducer of requested statuses', () => {
  /** Applies a requested status only when canTransition allows it; returns every status visited. */
  function reduce(start: PaymentStatus, requests: readonly PaymentStatus[]): PaymentStatus[] {
    const visited: PaymentStatus[] = [start];
    let cur = start;
    for (const req of requests) {
      if (canTransition(cur, req)) {
        cur = req;
        visited.push(cur);
      }
    }
    return visited;
  }

  const requests = fc.array(fc.constantFrom(...ALL), { maxLength: 60 });

  it('never leaves a terminal state, never revisits a status, and every step is a SPEC transition', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALL), requests, (start, reqs) => {
        const visited = reduce(start, reqs);
        // Every consecutive pair is a SPEC transition.
        for (let i = 1; i < visited.length; i++) {
          expect(isSpecAllowed(visited[i - 1]!, visited[i]!)).toBe(true);
          expect(RANK[visited[i]!]).toBeGreaterThan(RANK[visited[i - 1]!]);
        }
        // No status is visited twice (no regression).
        expect(new Set(visited).size).toBe(visited.length);
        // Once terminal, nothing follows.
        const t = visited.findIndex((s) => SPEC_TERMINAL.includes(s));
        if (t !== -1) expect(t).toBe(visited.length - 1);
        // The longest legal path has 5 moves: pending → processing → authorized → captured → settled → refunded.
        expect(visited.length).toBeLessThanOrEqual(6);
      }),
      { numRuns: 500 },
    );
  });

  it('from pending, a request sequence ends exactly where the legal moves lead', () => {
    expect(reduce('pending', ['captured', 'processing', 'pending', 'captured', 'refunded', 'settled'])).toEqual([
      'pending',
      'processing',
      'captured',
      'refunded',
    ]);
    expect(reduce('pending', ['canceled', 'processing', 'authorized'])).toEqual(['pending', 'canceled']);
    expect(reduce('pending', ['processing', 'authorized', 'captured', 'settled', 'refunded'])).toEqual([
      'pending',
      'processing',
      'authorized',
      'captured',
      'settled',
      'refunded',
    ]);
  });
});
