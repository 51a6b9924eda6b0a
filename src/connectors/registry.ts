import type { Connector } from './port.js';
import type { ConnectorRoute } from '../domain/merchant.js';
import { CircuitBreaker, DEFAULT_BREAKER, type BreakerSettings, type BreakerSnapshot } from './circuit-breaker.js';
import { GuardedConnector } from './guarded.js';
import { metrics } from '../observability/metrics.js';

const CIRCUIT_GAUGE = { closed: 0, half_open: 1, open: 2 } as const;

export interface ConnectorRegistry {
  get(name: string): Connector | undefined;
  names(): string[];
  /** Whether a connector may take new traffic now (the circuit breaker's view). */
  isAvailable(name: string): boolean;
  /** Seconds until the connector may take traffic again (0: now). */
  retryAfterSeconds(name: string): number;
  /** The circuit state of each connector, for operators. */
  status(): { name: string; circuit: BreakerSnapshot | null }[];
}

/** Every connector goes behind its own circuit breaker unless `breakers` is false. */
export function createRegistry(connectors: Connector[], breakers: BreakerSettings | false = DEFAULT_BREAKER, now: () => number = Date.now): ConnectorRegistry {
  const byName = new Map<string, Connector>(
    connectors.map((c) => [
      c.name,
      breakers ? new GuardedConnector(c, new CircuitBreaker(breakers, now, (state) => metrics.circuitState.set({ connector: c.name }, CIRCUIT_GAUGE[state]))) : c,
    ]),
  );
  // Every circuit is exported from the start, so "closed" is never mistaken for "not reported".
  if (breakers) for (const c of connectors) metrics.circuitState.set({ connector: c.name }, CIRCUIT_GAUGE.closed);
  const breakerOf = (name: string) => {
    const c = byName.get(name);
    return c instanceof GuardedConnector ? c.breaker : null;
  };
  return {
    get: (name) => byName.get(name),
    names: () => [...byName.keys()],
    isAvailable: (name) => byName.has(name) && (breakerOf(name)?.isAvailable() ?? true),
    retryAfterSeconds: (name) => breakerOf(name)?.retryAfterSeconds() ?? 0,
    status: () => [...byName.keys()].map((name) => ({ name, circuit: breakerOf(name)?.snapshot() ?? null })),
  };
}

/**
 * The order in which to try a merchant's connectors: with a volume split, the first pick is drawn
 * by weight; the rest follow in the merchant's order as failover candidates. Unavailable
 * connectors (unknown, or circuit open) are left out.
 */
export function routeOrder(routes: ConnectorRoute[], registry: ConnectorRegistry, random: () => number = Math.random): string[] {
  const usable = routes.filter((r) => registry.isAvailable(r.name));
  const weighted = usable.filter((r) => r.weight > 0);
  const total = weighted.reduce((s, r) => s + r.weight, 0);
  if (weighted.length === 0 || total <= 0) return usable.map((r) => r.name);
  let draw = weighted.length === 1 ? 0 : random() * total;
  let first = weighted[weighted.length - 1]!;
  for (const r of weighted) {
    draw -= r.weight;
    if (draw < 0) {
      first = r;
      break;
    }
  }
  return [first.name, ...usable.filter((r) => r !== first).map((r) => r.name)];
}
