/** Builds the connector registry of a process from configuration: mock, flaky, and Stripe when configured. */
import type { Config } from '../config/config.js';
import { createRegistry, type ConnectorRegistry } from '../connectors/registry.js';
import { createMockConnector } from '../connectors/mock/index.js';
import { createFlakyConnector } from '../connectors/flaky/index.js';
import { createStripeConnector } from '../connectors/stripe/index.js';
import type { Connector } from '../connectors/port.js';

function timeoutsFor(config: Config, name: string) {
  const t = config.CONNECTOR_TIMEOUTS[name] ?? {};
  return {
    connectTimeoutMs: t.connect ?? config.CONNECTOR_CONNECT_TIMEOUT_MS,
    authorizeTimeoutMs: t.authorize ?? config.CONNECTOR_AUTHORIZE_TIMEOUT_MS,
    timeoutMs: t.default ?? config.CONNECTOR_TIMEOUT_MS,
  };
}

export function buildConnectors(config: Config, mockProviderUrl: string, now: () => number = Date.now): ConnectorRegistry {
  const mockCommon = { baseUrl: mockProviderUrl, webhookSecret: config.MOCK_PROVIDER_WEBHOOK_SECRET };
  const connectors: Connector[] = [
    createMockConnector({ ...mockCommon, ...timeoutsFor(config, 'mock'), name: 'mock' }),
    createFlakyConnector({ ...mockCommon, ...timeoutsFor(config, 'flaky') }),
  ];
  if (config.STRIPE_SECRET_KEY && config.STRIPE_WEBHOOK_SECRET) {
    const base = config.STRIPE_API_BASE ? new URL(config.STRIPE_API_BASE) : null;
    connectors.push(
      createStripeConnector({
        secretKey: config.STRIPE_SECRET_KEY,
        webhookSecret: config.STRIPE_WEBHOOK_SECRET,
        ...timeoutsFor(config, 'stripe'),
        ...(base ? { host: base.hostname, port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)), protocol: base.protocol === 'https:' ? 'https' : 'http' } : {}),
      }),
    );
  }
  return createRegistry(
    connectors,
    {
      failureRateThreshold: config.CIRCUIT_FAILURE_RATE,
      slowCallRateThreshold: config.CIRCUIT_SLOW_CALL_RATE,
      slowCallMs: config.CIRCUIT_SLOW_CALL_MS,
      windowMs: config.CIRCUIT_WINDOW_MS,
      minimumCalls: config.CIRCUIT_MINIMUM_CALLS,
      openMs: config.CIRCUIT_OPEN_MS,
      halfOpenProbes: config.CIRCUIT_HALF_OPEN_PROBES,
    },
    now,
  );
}

export async function closeConnectors(registry: ConnectorRegistry): Promise<void> {
  await Promise.all(registry.names().map((n) => (registry.get(n) as { close?: () => Promise<void> }).close?.()));
}

/**
 * The longest a connector call may still be in flight. The janitor never looks at an attempt
 * younger than that: a provider with no record yet might simply not have received it yet.
 */
export function slowestCallSeconds(config: Config): number {
  const all = [
    { connect: config.CONNECTOR_CONNECT_TIMEOUT_MS, read: Math.max(config.CONNECTOR_AUTHORIZE_TIMEOUT_MS, config.CONNECTOR_TIMEOUT_MS) },
    ...Object.values(config.CONNECTOR_TIMEOUTS).map((t) => ({
      connect: t.connect ?? config.CONNECTOR_CONNECT_TIMEOUT_MS,
      read: Math.max(t.authorize ?? config.CONNECTOR_AUTHORIZE_TIMEOUT_MS, t.default ?? config.CONNECTOR_TIMEOUT_MS),
    })),
  ];
  return Math.ceil(Math.max(...all.map((t) => t.connect + t.read)) / 1000) + 1;
}

/** How long an actor on an open attempt holds it: twice the slowest call. */
export function attemptClaimSeconds(config: Config): number {
  return slowestCallSeconds(config) * 2;
}
