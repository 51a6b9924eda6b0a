/**
 * Puts a connector behind its circuit breaker. An open circuit refuses the call before anything is
 * sent — a certain non-charge, so routing may fail over to the next connector.
 */
import { CircuitBreaker } from './circuit-breaker.js';
import type { Connector, ConnectorOutcome, SyncOutcome } from './port.js';
import { metrics } from '../observability/metrics.js';

function failed(o: SyncOutcome): boolean {
  return o.outcome === 'error' || o.outcome === 'unknown';
}

export class GuardedConnector implements Connector {
  readonly name: string;

  constructor(
    readonly inner: Connector,
    readonly breaker: CircuitBreaker,
  ) {
    this.name = inner.name;
  }

  private async guard<T extends SyncOutcome>(operation: string, call: () => Promise<T>): Promise<T | ConnectorOutcome> {
    if (!this.breaker.tryAcquire()) {
      metrics.connectorCalls.inc({ connector: this.name, operation, outcome: 'circuit_open' });
      return { outcome: 'error', charged: false, code: 'circuit_open', message: `The circuit of connector '${this.name}' is open; the call was not sent.` };
    }
    const started = performance.now();
    const result = await call();
    const ms = performance.now() - started;
    this.breaker.record(failed(result), ms);
    metrics.connectorCalls.inc({ connector: this.name, operation, outcome: result.outcome });
    metrics.connectorDuration.observe({ connector: this.name, operation }, ms / 1000);
    if (result.outcome === 'unknown' && result.reason === 'timeout') metrics.connectorTimeouts.inc({ connector: this.name, operation });
    return result;
  }

  authorize: Connector['authorize'] = (req) => this.guard('authorize', () => this.inner.authorize(req)) as Promise<ConnectorOutcome>;
  capture: Connector['capture'] = (req) => this.guard('capture', () => this.inner.capture(req)) as Promise<ConnectorOutcome>;
  void: Connector['void'] = (req) => this.guard('void', () => this.inner.void(req)) as Promise<ConnectorOutcome>;
  refund: Connector['refund'] = (req) => this.guard('refund', () => this.inner.refund(req)) as Promise<ConnectorOutcome>;
  // A sync refused by an open circuit must read as "don't know yet", never as "not charged".
  sync: Connector['sync'] = async (req) => {
    const r = await this.guard('sync', () => this.inner.sync(req));
    return r.outcome === 'error' && r.code === 'circuit_open' ? { outcome: 'unknown', reason: 'provider_error', message: r.message } : r;
  };
  verifyWebhook: Connector['verifyWebhook'] = (raw, headers) => this.inner.verifyWebhook(raw, headers);
  parseWebhook: Connector['parseWebhook'] = (raw) => this.inner.parseWebhook(raw);

  async close(): Promise<void> {
    await (this.inner as { close?: () => Promise<void> }).close?.();
  }
}
