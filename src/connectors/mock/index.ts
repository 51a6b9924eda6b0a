import { Agent } from 'undici';
import { verifyMockSignature } from '../../mock-provider/signature.js';
import type {
  AuthorizeRequest,
  CaptureRequest,
  Connector,
  ConnectorOperation,
  ConnectorOutcome,
  NormalizedProviderEvent,
  RefundRequest,
  SyncOutcome,
  SyncRequest,
  VoidRequest,
} from '../port.js';
import { exchange } from './http.js';
import { outcomeFromExchange, syncOutcomeFromExchange } from './outcomes.js';
import { parseMockWebhook } from './webhooks.js';

export interface MockConnectorOptions {
  name?: 'mock' | 'flaky';
  /** Where the provider is mounted, e.g. http://127.0.0.1:8080/mock-provider. */
  baseUrl: string;
  /** '' for the mock mode, '/flaky' for the flaky mode of the same provider. */
  pathPrefix?: '' | '/flaky';
  connectTimeoutMs: number;
  /** Read timeout of authorize; longer than the others because that is where providers are slow. */
  authorizeTimeoutMs: number;
  /** Read timeout of every other call. */
  timeoutMs: number;
  webhookSecret: string;
  webhookToleranceSeconds?: number;
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/** The mock and flaky connectors: the mock provider over real HTTP, so timeouts and resets are real. */
export class MockProviderConnector implements Connector {
  readonly name: string;
  private readonly root: string;
  private readonly agent: Agent;

  constructor(private readonly opts: MockConnectorOptions) {
    this.name = opts.name ?? 'mock';
    this.root = `${opts.baseUrl.replace(/\/+$/, '')}${opts.pathPrefix ?? ''}/v1`;
    this.agent = new Agent({ connect: { timeout: opts.connectTimeoutMs } });
  }

  private post(
    operation: ConnectorOperation,
    path: string,
    idempotencyKey: string,
    body: unknown,
    traceHeaders: Record<string, string> | undefined,
  ): Promise<ConnectorOutcome> {
    const readTimeoutMs = operation === 'authorize' ? this.opts.authorizeTimeoutMs : this.opts.timeoutMs;
    return exchange(this.agent, {
      method: 'POST',
      url: `${this.root}${path}`,
      headers: { ...traceHeaders, 'idempotency-key': idempotencyKey },
      body,
      readTimeoutMs,
    }).then((x) => outcomeFromExchange(operation, x));
  }

  authorize(req: AuthorizeRequest): Promise<ConnectorOutcome> {
    return this.post('authorize', '/charges', req.attemptId, {
      amount: req.amount,
      currency: req.currency,
      token: req.paymentMethodToken,
      capture: req.capture,
      payment_id: req.paymentId,
      metadata: { attempt_id: req.attemptId, payment_method: req.paymentMethod },
    }, req.traceHeaders);
  }

  capture(req: CaptureRequest): Promise<ConnectorOutcome> {
    return this.post('capture', `/charges/${encodeURIComponent(req.providerReference)}/capture`, req.attemptId, {
      amount: req.amount,
      currency: req.currency,
    }, req.traceHeaders);
  }

  void(req: VoidRequest): Promise<ConnectorOutcome> {
    return this.post('void', `/charges/${encodeURIComponent(req.providerReference)}/void`, req.attemptId, {}, req.traceHeaders);
  }

  refund(req: RefundRequest): Promise<ConnectorOutcome> {
    return this.post('refund', `/charges/${encodeURIComponent(req.providerReference)}/refunds`, req.attemptId, {
      amount: req.amount,
      currency: req.currency,
      metadata: { refund_id: req.refundId },
    }, req.traceHeaders);
  }

  async sync(req: SyncRequest): Promise<SyncOutcome> {
    const x = await exchange(this.agent, {
      method: 'GET',
      url: `${this.root}/operations/${encodeURIComponent(req.attemptId)}`,
      headers: {},
      readTimeoutMs: this.opts.timeoutMs,
    });
    return syncOutcomeFromExchange(req.operation, x);
  }

  verifyWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): boolean {
    return verifyMockSignature(
      this.opts.webhookSecret,
      rawBody,
      headerValue(headers, 'mock-signature'),
      this.opts.webhookToleranceSeconds ?? 300,
    );
  }

  parseWebhook(rawBody: Buffer): NormalizedProviderEvent[] {
    return parseMockWebhook(rawBody);
  }

  /** Closes the connection pool after in-flight calls finish; later calls are connector_unreachable. */
  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

export function createMockConnector(opts: MockConnectorOptions): MockProviderConnector {
  return new MockProviderConnector({ name: 'mock', pathPrefix: '', ...opts });
}
