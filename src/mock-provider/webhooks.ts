import { Agent, request } from 'undici';
import type { ChargeRow, ProviderMode } from './charges.js';
import type { FlakyDice } from './flaky.js';
import { newEventId } from './ids.js';
import type { Lifecycle } from './lifecycle.js';
import { ProviderClosedError } from './lifecycle.js';
import { signMockWebhook } from './signature.js';

export type MockWebhookType =
  | 'charge.succeeded'
  | 'charge.failed'
  | 'charge.captured'
  | 'charge.voided'
  | 'charge.refunded';

export interface MockWebhookEvent {
  id: string;
  type: MockWebhookType;
  created: number;
  data: {
    charge_id: string;
    payment_id: string;
    idempotency_key: string;
    amount: number;
    status: string;
    failure_code?: string;
    refund_id?: string;
  };
}

export function chargeEvent(
  type: MockWebhookType,
  charge: ChargeRow,
  idempotencyKey: string,
  amount: number,
  extra: { status?: string; refund_id?: string } = {},
): MockWebhookEvent {
  return {
    id: newEventId(),
    type,
    created: Math.floor(Date.now() / 1000),
    data: {
      charge_id: charge.id,
      payment_id: charge.payment_id,
      idempotency_key: idempotencyKey,
      amount,
      status: extra.status ?? charge.status,
      ...(charge.failure_code ? { failure_code: charge.failure_code } : {}),
      ...(extra.refund_id ? { refund_id: extra.refund_id } : {}),
    },
  };
}

export interface WebhookSenderOptions {
  secret: string;
  urlFor: (mode: ProviderMode) => string | undefined;
  lifecycle: Lifecycle;
  dice: FlakyDice;
  log: { warn: (obj: object, msg: string) => void };
  /** Deliveries per webhook before giving up; default 5. */
  maxAttempts?: number;
  /** First retry delay, doubled on each retry; default 250 ms. */
  retryBaseMs?: number;
}

/**
 * Delivers signed webhooks like a provider would: retried with backoff while the receiver fails,
 * given up after a few attempts, and never able to crash the process. In flaky mode deliveries
 * are delayed at random (so they arrive out of order) and sometimes sent twice.
 */
export class WebhookSender {
  // Its own connection pool, so closing the provider also closes its sockets to the receiver.
  private readonly agent = new Agent({ connect: { timeout: 2000 }, headersTimeout: 5000, bodyTimeout: 5000 });

  constructor(private readonly opts: WebhookSenderOptions) {}

  emit(mode: ProviderMode, event: MockWebhookEvent): void {
    const url = this.opts.urlFor(mode);
    if (!url || this.opts.lifecycle.closed) return;
    const body = JSON.stringify(event);
    const delays = mode === 'flaky' ? this.opts.dice.drawWebhookDeliveries() : [0];
    for (const delay of delays) {
      this.opts.lifecycle.schedule(delay, () => this.deliver(url, event, body));
    }
  }

  private async deliver(url: string, event: MockWebhookEvent, body: string): Promise<void> {
    const maxAttempts = this.opts.maxAttempts ?? 5;
    const base = this.opts.retryBaseMs ?? 250;
    let lastError = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      try {
        // Signed at each attempt, as a real provider does, so a late retry is not stale.
        const signature = signMockWebhook(this.opts.secret, body, Math.floor(Date.now() / 1000));
        const res = await request(url, {
          method: 'POST',
          dispatcher: this.agent,
          signal: this.opts.lifecycle.signal,
          headers: { 'content-type': 'application/json', 'mock-signature': signature },
          body,
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) return;
        lastError = `HTTP ${res.statusCode}`;
      } catch (err) {
        if (this.opts.lifecycle.closed) return;
        lastError = err instanceof Error ? err.message : String(err);
      }
      if (attempt === maxAttempts) break;
      try {
        await this.opts.lifecycle.sleep(base * 2 ** (attempt - 1));
      } catch (err) {
        if (err instanceof ProviderClosedError) return;
        throw err;
      }
    }
    this.opts.log.warn({ eventId: event.id, type: event.type, url, error: lastError }, 'mock provider gave up delivering a webhook');
  }

  async close(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }
}
