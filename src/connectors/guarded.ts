/**
 * Puts a connector behind its circuit breaker. An open circuit refuses the call before anything is
 * sent — a certain non-charge, so routing may fail over to the next connector.
 */
import { CircuitBreaker } from './circuit-breaker.js';
import type { Connector, ConnectorOutcome, SyncOutcome } from './port.js';
import { metrics } from '../observability/metrics.js';
import { inSpan, SpanKind, traceHeaders } from '../observability/tracing.js';

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

  private guard<T extends SyncOutcome>(operation: string, call: (headers: Record<string, string>) => Promise<T>): Promise<T | ConnectorOutcome> {
    return inSpan(`connector ${this.name}.${operation}`, { 'switchyard.connector': this.name, 'switchyard.operation': operation }, async (span) => {
      const result = await this.guarded(operation, () => call(traceHeaders()));
      span.setAttribute('switchyard.outcome', result.outcome);
      return result;
    }, SpanKind.CLIENT);
  }

  private async guarded<T extends SyncOutcome>(operation: string, call: () => Promise<T>): Promise<T | ConnectorOutcome> {
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

  authorize: Connector['authorize'] = (req) => this.guard('authorize', (h) => this.inner.authorize({ ...req, traceHeaders: h })) as Promise<ConnectorOutcome>;
  capture: Connector['capture'] = (req) => this.guard('capture', (h) => this.inner.capture({ ...req, traceHeaders: h })) as Promise<ConnectorOutcome>;
  void: Connector['void'] = (req) => this.guard('void', (h) => this.inner.void({ ...req, traceHeaders: h })) as Promise<ConnectorOutcome>;
  refund: Connector['refund'] = (req) => this.guard('refund', (h) => this.inner.refund({ ...req, traceHeaders: h })) as Promise<ConnectorOutcome>;
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
