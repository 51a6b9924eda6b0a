/**
 * Event filters of webhook endpoints: exact types (`payment.captured`), hierarchical wildcards
 * (`payment.*` matches every `payment.…` type at any depth) and `*` for everything.
 */
export const EVENT_TYPES = [
  'payment.created',
  'payment.processing',
  'payment.authorized',
  'payment.captured',
  'payment.failed',
  'payment.canceled',
  'payment.settled',
  'payment.refunded',
  'payment.reconciliation_required',
  'refund.created',
  'refund.succeeded',
  'refund.failed',
] as const;

const FILTER = /^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$/;

export function isValidFilter(filter: string): boolean {
  return FILTER.test(filter);
}

export function matchesFilter(filter: string, type: string): boolean {
  if (filter === '*') return true;
  if (filter.endsWith('.*')) return type.startsWith(filter.slice(0, -1));
  return filter === type;
}

export function matchesAny(filters: readonly string[], type: string): boolean {
  return filters.some((f) => matchesFilter(f, type));
}

/** Types that back-pressure may drop for an overloaded endpoint; the rest are never dropped. */
export const DEFAULT_DROPPABLE_TYPES = ['payment.created', 'payment.processing'];
