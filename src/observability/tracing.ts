/**
 * OpenTelemetry tracing (SPEC §15): request → use case → SQL → connector call, with W3C
 * `traceparent` taken from incoming requests, sent to connectors, and carried to the worker on the
 * outbox event. Spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set; tests
 * pass an in-memory exporter. Without either, the API is a no-op and costs next to nothing.
 */
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';

let provider: NodeTracerProvider | null = null;

export interface TracingOptions {
  serviceName: string;
  /** OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); spans are batched to it. */
  otlpEndpoint?: string | undefined;
  /** For tests: every span is handed to this exporter at once. */
  exporter?: SpanExporter;
}

/** Starts tracing for this process; a second call is ignored. Returns whether tracing is on. */
export function initTracing(opts: TracingOptions): boolean {
  if (provider) return true;
  const processors = [];
  if (opts.exporter) processors.push(new SimpleSpanProcessor(opts.exporter));
  if (opts.otlpEndpoint) {
    const url = opts.otlpEndpoint.replace(/\/+$/, '');
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: url.endsWith('/v1/traces') ? url : `${url}/v1/traces` })));
  }
  if (processors.length === 0) return false;
  provider = new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': opts.serviceName }), spanProcessors: processors });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return true;
}

export async function shutdownTracing(): Promise<void> {
  await provider?.shutdown();
}

export const tracer = () => trace.getTracer('switchyard');

/** Runs fn inside a new span (child of the active one); records errors and ends the span. */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  return tracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The W3C headers (traceparent, tracestate) of the active context, for an outgoing call. */
export function traceHeaders(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The context a `traceparent` (from a request or a stored event) names. */
export function contextFrom(carrier: Record<string, unknown>): Context {
  return propagation.extract(context.active(), carrier);
}

/** The traceparent of the active span, to store with an outbox event; null when not tracing. */
export function currentTraceparent(): string | null {
  return traceHeaders().traceparent ?? null;
}

export { context, SpanKind, trace };
