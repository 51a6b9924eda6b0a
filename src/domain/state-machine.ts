/** The payment state machine (SPEC §6). Pure: no I/O. */
export const PAYMENT_STATUSES = [
  'pending',
  'processing',
  'authorized',
  'captured',
  'settled',
  'refunded',
  'failed',
  'canceled',
] as const;

export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

const TRANSITIONS: Record<PaymentStatus, readonly PaymentStatus[]> = {
  pending: ['processing', 'failed', 'canceled'],
  processing: ['authorized', 'captured', 'failed'],
  authorized: ['captured', 'canceled', 'failed'],
  captured: ['settled', 'refunded'],
  settled: ['refunded'],
  refunded: [],
  failed: [],
  canceled: [],
};

export const TERMINAL_STATUSES: readonly PaymentStatus[] = ['failed', 'canceled', 'refunded'];

export function isTerminal(status: PaymentStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export function canTransition(from: PaymentStatus, to: PaymentStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export function allowedTransitions(from: PaymentStatus): readonly PaymentStatus[] {
  return TRANSITIONS[from];
}

/**
 * The shortest path of allowed transitions from one status to another, or null when the target
 * cannot be reached (it would move backwards or out of a terminal state). A provider may report
 * "captured" for a payment we still hold as "pending"; walking the path keeps every step in the
 * audit trail legal (pending → processing → captured).
 */
export function pathTo(from: PaymentStatus, to: PaymentStatus): PaymentStatus[] | null {
  if (from === to) return [];
  const queue: PaymentStatus[][] = [[from]];
  const seen = new Set<PaymentStatus>([from]);
  while (queue.length > 0) {
    const path = queue.shift()!;
    const last = path[path.length - 1]!;
    for (const next of TRANSITIONS[last]) {
      if (seen.has(next)) continue;
      const candidate = [...path, next];
      if (next === to) return candidate.slice(1);
      seen.add(next);
      queue.push(candidate);
    }
  }
  return null;
}
