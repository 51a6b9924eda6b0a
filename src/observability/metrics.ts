/**
 * Prometheus metrics (SPEC §15). One registry per process; the API serves it at /metrics, a
 * worker-only process on its own small HTTP server. Gauges that describe the database (backlog,
 * oldest pending delivery, queue depth) are read at scrape time, so every process reports the same.
 */
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'switchyard_process_' });

const seconds = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const metrics = {
  httpDuration: new client.Histogram({
    name: 'switchyard_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: seconds,
    registers: [registry],
  }),
  paymentTransitions: new client.Counter({
    name: 'switchyard_payment_transitions_total',
    help: 'Payment status transitions',
    labelNames: ['from', 'to'],
    registers: [registry],
  }),
  connectorCalls: new client.Counter({
    name: 'switchyard_connector_calls_total',
    help: 'Connector calls by outcome (succeeded, pending, declined, error, unknown, circuit_open)',
    labelNames: ['connector', 'operation', 'outcome'],
    registers: [registry],
  }),
  connectorDuration: new client.Histogram({
    name: 'switchyard_connector_call_duration_seconds',
    help: 'Connector call latency',
    labelNames: ['connector', 'operation'],
    buckets: seconds,
    registers: [registry],
  }),
  connectorTimeouts: new client.Counter({
    name: 'switchyard_connector_timeouts_total',
    help: 'Connector calls whose outcome is unknown because of a timeout',
    labelNames: ['connector', 'operation'],
    registers: [registry],
  }),
  circuitState: new client.Gauge({
    name: 'switchyard_connector_circuit_state',
    help: 'Circuit breaker state per connector: 0 closed, 1 half-open, 2 open',
    labelNames: ['connector'],
    registers: [registry],
  }),
  webhookDeliveries: new client.Counter({
    name: 'switchyard_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome (succeeded, retry, dead, dropped)',
    labelNames: ['outcome'],
    registers: [registry],
  }),
  webhookDuration: new client.Histogram({
    name: 'switchyard_webhook_delivery_duration_seconds',
    help: 'Webhook delivery attempt latency',
    buckets: seconds,
    registers: [registry],
  }),
  webhookEndToEnd: new client.Histogram({
    name: 'switchyard_webhook_event_to_delivery_seconds',
    help: 'From the event transaction to a successful delivery',
    buckets: seconds,
    registers: [registry],
  }),
  idempotentReplays: new client.Counter({
    name: 'switchyard_idempotent_replays_total',
    help: 'Requests answered from a stored idempotent response',
    registers: [registry],
  }),
  rateLimited: new client.Counter({
    name: 'switchyard_rate_limited_total',
    help: 'Requests refused by a rate limit',
    labelNames: ['scope'],
    registers: [registry],
  }),
  shed: new client.Counter({
    name: 'switchyard_shed_requests_total',
    help: 'Requests refused with 503 OVERLOADED by load shedding',
    registers: [registry],
  }),
  admissionWait: new client.Histogram({
    name: 'switchyard_admission_wait_seconds',
    help: 'How long new requests waited to start behind the database pool queue (only those that had to wait; OVERLOAD_DB_WAIT_MS at most)',
    labelNames: ['admitted'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  reconciliation: new client.Counter({
    name: 'switchyard_reconciliation_outcomes_total',
    help: 'Reconciliation checks by outcome (settled, still_open, manual_review)',
    labelNames: ['outcome'],
    registers: [registry],
  }),
  settlement: new client.Counter({
    name: 'switchyard_settlement_outcomes_total',
    help: 'Settlement items by outcome (settled, error) and batches (completed, failed)',
    labelNames: ['outcome'],
    registers: [registry],
  }),
  providerEvents: new client.Counter({
    name: 'switchyard_provider_events_total',
    help: 'Inbound provider events by result (processed, ignored, unmatched, failed, duplicate)',
    labelNames: ['connector', 'result'],
    registers: [registry],
  }),
};

/** Registers gauges computed at scrape time (database-wide views). */
export function registerScrapeGauge(name: string, help: string, labelNames: string[], collect: (g: client.Gauge) => Promise<void>): void {
  if (registry.getSingleMetric(name)) return;
  new client.Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      await collect(this).catch(() => undefined);
    },
  });
}

export type Metrics = typeof metrics;
