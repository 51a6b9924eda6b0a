import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTracing } from '../../src/observability/tracing.js';
import { call, createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';

const exporter = new InMemorySpanExporter();
const received: { headers: IncomingHttpHeaders; body: string }[] = [];
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    received.push({ headers: req.headers, body });
    res.end('ok');
  });
});

let h: Harness;
beforeAll(async () => {
  expect(initTracing({ serviceName: 'switchyard-test', exporter })).toBe(true);
  h = await startHarness({}, { worker: true });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
});
afterAll(async () => {
  await h?.close();
  receiver.close();
});

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe('tracing', () => {
  it('follows a payment from the request through the use case, SQL and the connector call into the worker', async () => {
    const m = await createMerchant(h);
    const port = (receiver.address() as AddressInfo).port;
    const ep = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url: `http://127.0.0.1:${port}/hooks`, enabled_events: ['payment.captured'] } });
    expect(ep.status).toBe(201);

    const res = await call(h, 'POST', '/v1/payments', {
      key: m.key,
      headers: { traceparent: PARENT },
      body: {
        amount: 150000,
        currency: 'INR',
        payment_method: 'card',
        payment_method_token: 'tok_success',
        reference_id: 'trace_order_a',
        customer: { email: 'trace@example.com', phone: '+919876543210' },
      },
    });
    expect(res.status).toBe(201);

    const server = await waitFor(async () => spansOf(TRACE_ID).find((s) => s.name === 'HTTP POST /v1/payments'), 5000, 'the server span');
    // Joined to the caller's trace, as a child of its span.
    expect(parentOf(server)).toBe('00f067aa0ba902b7');
    expect(server.attributes['http.response.status_code']).toBe(201);

    const spans = spansOf(TRACE_ID);
    const useCase = spans.find((s) => s.name === 'payments.create')!;
    expect(useCase).toBeDefined();
    expect(parentOf(useCase)).toBe(server.spanContext().spanId);
    const ids = new Set(spans.map((s) => s.spanContext().spanId));
    const txs = spans.filter((s) => s.name === 'db.transaction');
    expect(txs.length).toBeGreaterThanOrEqual(2); // the payment with its first attempt, then the outcome
    for (const tx of txs) expect(ids.has(parentOf(tx)!)).toBe(true);
    const connector = spans.find((s) => s.name === 'connector mock.authorize')!;
    expect(connector).toBeDefined();
    expect(connector.attributes['switchyard.outcome']).toBe('succeeded');
    expect(parentOf(connector)).toBe(useCase.spanContext().spanId);

    // The worker's delivery continues the same trace, and the merchant receives its traceparent.
    const delivered = await waitFor(async () => received.find((r) => JSON.parse(r.body).data.object.id === res.body.id), 10_000, 'the webhook');
    expect(String(delivered.headers.traceparent)).toContain(TRACE_ID);
    const deliver = await waitFor(async () => spansOf(TRACE_ID).find((s) => s.name === 'webhook.deliver'), 5000, 'the delivery span');
    expect(deliver.attributes['switchyard.outcome']).toBe('succeeded');
  });

  it('starts a new trace when the request carries none, and never records statement values', async () => {
    const before = new Set(exporter.getFinishedSpans().map((s) => s.spanContext().traceId));
    const res = await call(h, 'GET', '/v1/payments?limit=1', { key: (await createMerchant(h)).key });
    expect(res.status).toBe(200);
    const server = await waitFor(async () => exporter.getFinishedSpans().find((s) => s.name === 'HTTP GET /v1/payments' && !before.has(s.spanContext().traceId)), 5000, 'a new trace');
    expect(parentOf(server)).toBeUndefined();
    for (const s of exporter.getFinishedSpans()) {
      const statement = String(s.attributes['db.statement'] ?? '');
      expect(statement).not.toContain('trace@example.com');
      expect(statement).not.toContain('sk_test_');
    }
  });
});
