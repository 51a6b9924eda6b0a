import type { Agent } from 'node:http';
import Stripe from 'stripe';
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
import {
  authorizeOutcome,
  captureOutcome,
  outcomeFromError,
  refundOutcome,
  syncOutcomeFromLookupError,
  voidOutcome,
} from './outcomes.js';
import { createAgent, GuardedHttpClient } from './transport.js';
import { parseStripeWebhook } from './webhooks.js';

export interface StripeConnectorOptions {
  /** sk_live_… / sk_test_… */
  secretKey: string;
  /** whsec_… of the webhook endpoint that delivers to Switchyard. */
  webhookSecret: string;
  /** Defaults to Stripe's own (api.stripe.com, 443, https); tests point these at a local fake. */
  host?: string;
  port?: number;
  protocol?: 'http' | 'https';
  /** TCP (and TLS) connect timeout; default 2000 ms. A connect that times out sent nothing. */
  connectTimeoutMs?: number;
  /** Read timeout of capture, void, refund and sync lookups. */
  timeoutMs: number;
  /** Read timeout of authorize; longer than the others because that is where providers are slow. */
  authorizeTimeoutMs: number;
  /** Connector name in the registry; default 'stripe'. */
  name?: string;
  /** Max age of a webhook signature; default 300 s. */
  webhookToleranceSeconds?: number;
}

type PaymentIntent = Stripe.PaymentIntent;

const DEFAULT_CONNECT_TIMEOUT_MS = 2000;
const DEFAULT_WEBHOOK_TOLERANCE_S = 300;
// Headers the caller may not set: they carry Stripe's own semantics.
const RESERVED_HEADER = /^(idempotency-key|authorization|stripe-|content-|host$)/i;

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/** A value inside a Stripe search query string: single-quoted, with ' and \ escaped. */
function searchLiteral(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * The Stripe connector: PaymentIntents with confirm: true (authorize), capture, cancel (void) and
 * refunds, through the official SDK. Every call that can move money carries the attempt id as the
 * Idempotency-Key, and every PaymentIntent carries {payment_id, attempt_id} in its metadata so a
 * sync can find it even when the create call's answer was lost.
 */
export class StripeConnector implements Connector {
  readonly name: string;
  private readonly stripe: Stripe;
  private readonly agent: Agent;

  constructor(private readonly opts: StripeConnectorOptions) {
    this.name = opts.name ?? 'stripe';
    const protocol = opts.protocol ?? 'https';
    this.agent = createAgent(protocol, opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    this.stripe = new Stripe(opts.secretKey, {
      ...(opts.host !== undefined ? { host: opts.host } : {}),
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      protocol,
      timeout: opts.timeoutMs,
      // Switchyard owns retries: after an unknown outcome it syncs first, then resends under the
      // same key. The SDK's own retries (and its hidden reset retry, see transport.ts) are off.
      maxNetworkRetries: 0,
      httpClient: new GuardedHttpClient(this.agent),
      telemetry: false,
      appInfo: { name: 'Switchyard' },
    });
  }

  private requestOptions(operation: ConnectorOperation | 'lookup', idempotencyKey?: string, traceHeaders?: Record<string, string>): Stripe.RequestOptions {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(traceHeaders ?? {})) if (!RESERVED_HEADER.test(k)) headers[k] = v;
    return {
      timeout: operation === 'authorize' ? this.opts.authorizeTimeoutMs : this.opts.timeoutMs,
      maxNetworkRetries: 0,
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
    };
  }

  /** Runs one call that asks Stripe to act; every failure becomes an outcome. */
  private async act<T>(call: () => Promise<T>, map: (value: T) => ConnectorOutcome): Promise<ConnectorOutcome> {
    let value: T;
    try {
      value = await call();
    } catch (err) {
      return outcomeFromError(err);
    }
    return map(value);
  }

  authorize(req: AuthorizeRequest): Promise<ConnectorOutcome> {
    return this.act(
      () =>
        this.stripe.paymentIntents.create(
          {
            amount: req.amount,
            currency: req.currency.toLowerCase(),
            payment_method: req.paymentMethodToken,
            confirm: true,
            capture_method: req.capture ? 'automatic' : 'manual',
            // A server-side confirm has nowhere to redirect a customer to; without this Stripe
            // refuses a confirm that has no return_url.
            automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
            metadata: { payment_id: req.paymentId, attempt_id: req.attemptId },
          },
          this.requestOptions('authorize', req.attemptId, req.traceHeaders),
        ),
      (pi) => authorizeOutcome(pi),
    );
  }

  capture(req: CaptureRequest): Promise<ConnectorOutcome> {
    return this.act(
      () =>
        this.stripe.paymentIntents.capture(
          req.providerReference,
          { amount_to_capture: req.amount },
          this.requestOptions('capture', req.attemptId, req.traceHeaders),
        ),
      captureOutcome,
    );
  }

  void(req: VoidRequest): Promise<ConnectorOutcome> {
    return this.act(
      () => this.stripe.paymentIntents.cancel(req.providerReference, {}, this.requestOptions('void', req.attemptId, req.traceHeaders)),
      voidOutcome,
    );
  }

  refund(req: RefundRequest): Promise<ConnectorOutcome> {
    return this.act(
      () =>
        this.stripe.refunds.create(
          {
            payment_intent: req.providerReference,
            amount: req.amount,
            metadata: { payment_id: req.paymentId, attempt_id: req.attemptId, refund_id: req.refundId },
          },
          this.requestOptions('refund', req.attemptId, req.traceHeaders),
        ),
      refundOutcome,
    );
  }

  /**
   * What became of an earlier attempt — lookups only, never a call that could act.
   *
   * authorize: by the intent id when known, else by Stripe search on metadata.attempt_id.
   * capture/void: the payment's intent (by id, else searched by metadata.payment_id); the operation
   * happened iff the intent reached succeeded/canceled. refund: the refund by id when known, else
   * the intent's refunds filtered by metadata.attempt_id. `not_found` means Stripe shows no effect
   * of the attempt: the caller then resends under the same idempotency key, which Stripe answers
   * from its idempotency store (24 h) if the first request did arrive — search is eventually
   * consistent (under a minute), and that resend is what makes a stale "no result" harmless.
   */
  async sync(req: SyncRequest): Promise<SyncOutcome> {
    try {
      switch (req.operation) {
        case 'authorize':
          return await this.syncAuthorize(req);
        case 'capture':
        case 'void':
          return await this.syncIntentOperation(req);
        case 'refund':
          return await this.syncRefund(req);
      }
    } catch (err) {
      return syncOutcomeFromLookupError(err);
    }
  }

  private lookupOptions(): Stripe.RequestOptions {
    return this.requestOptions('lookup');
  }

  private async searchIntents(key: 'attempt_id' | 'payment_id', value: string): Promise<PaymentIntent[]> {
    const result = await this.stripe.paymentIntents.search(
      { query: `metadata['${key}']:${searchLiteral(value)}`, limit: 100 },
      this.lookupOptions(),
    );
    return result.data;
  }

  private isIntentId(ref: string | null | undefined): ref is string {
    return typeof ref === 'string' && ref.startsWith('pi_');
  }

  /** The payment's intent(s): by id when the reference is one, else by metadata.payment_id. */
  private async intentsOfPayment(req: SyncRequest): Promise<PaymentIntent[]> {
    if (this.isIntentId(req.providerReference)) {
      return [await this.stripe.paymentIntents.retrieve(req.providerReference, {}, this.lookupOptions())];
    }
    return this.searchIntents('payment_id', req.paymentId);
  }

  private async syncAuthorize(req: SyncRequest): Promise<SyncOutcome> {
    let intents: PaymentIntent[];
    if (this.isIntentId(req.providerReference)) {
      intents = [await this.stripe.paymentIntents.retrieve(req.providerReference, {}, this.lookupOptions())];
    } else {
      // The attempt id in metadata identifies the intent this attempt created, if any.
      intents = (await this.searchIntents('attempt_id', req.attemptId)).filter((pi) => pi.metadata?.attempt_id === req.attemptId);
    }
    if (intents.length === 0) return { outcome: 'not_found' };
    // One key, one intent; should there ever be more (a resend after the key expired), the one
    // that moved money decides.
    const outcomes = intents.map((pi) => authorizeOutcome(pi, true));
    return outcomes.find((o) => o.outcome === 'succeeded') ?? outcomes.find((o) => o.outcome === 'pending') ?? outcomes[0]!;
  }

  private async syncIntentOperation(req: SyncRequest): Promise<SyncOutcome> {
    const intents = await this.intentsOfPayment(req);
    for (const pi of intents) {
      if (req.operation === 'capture' && (pi.status === 'succeeded' || pi.status === 'processing')) return captureOutcome(pi);
      if (req.operation === 'void' && pi.status === 'canceled') return voidOutcome(pi);
    }
    return { outcome: 'not_found' };
  }

  private async syncRefund(req: SyncRequest): Promise<SyncOutcome> {
    if (typeof req.providerReference === 'string' && req.providerReference.startsWith('re_')) {
      return refundOutcome(await this.stripe.refunds.retrieve(req.providerReference, {}, this.lookupOptions()));
    }
    for (const pi of await this.intentsOfPayment(req)) {
      const refunds = await this.stripe.refunds.list({ payment_intent: pi.id, limit: 100 }, this.lookupOptions());
      const mine = refunds.data.find((r) => r.metadata?.attempt_id === req.attemptId);
      if (mine) return refundOutcome(mine);
    }
    return { outcome: 'not_found' };
  }

  verifyWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): boolean {
    const signature = headerValue(headers, 'stripe-signature');
    if (!signature) return false;
    try {
      this.stripe.webhooks.constructEvent(
        rawBody,
        signature,
        this.opts.webhookSecret,
        this.opts.webhookToleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_S,
      );
      return true;
    } catch {
      return false;
    }
  }

  parseWebhook(rawBody: Buffer): NormalizedProviderEvent[] {
    return parseStripeWebhook(rawBody);
  }

  /** Drops pooled keep-alive connections; later calls open new ones. */
  close(): Promise<void> {
    this.agent.destroy();
    return Promise.resolve();
  }
}

export function createStripeConnector(opts: StripeConnectorOptions): StripeConnector {
  return new StripeConnector(opts);
}
