/**
 * A small local fake of the Stripe HTTP API (v1, form-encoded), just enough for the Stripe
 * connector: PaymentIntents (create+confirm, retrieve, capture, cancel, search by metadata) and
 * refunds (create, retrieve, list by payment_intent). Listens on 127.0.0.1 only.
 *
 * It behaves like Stripe where the connector's correctness depends on it:
 * - `Authorization: Bearer sk_test_…` is required (401 otherwise);
 * - `Idempotency-Key` on POST: the same key replays the stored answer with no second effect; the
 *   same key with other parameters is a 400 idempotency_error; the same key while the first
 *   request is still running is a 409 idempotency_key_in_use. Only answers of requests that
 *   started executing are stored (2xx and 402), as Stripe does;
 * - errors have Stripe's shape: {error: {type, code, decline_code, message, param, payment_intent}};
 * - a declined confirm still creates the PaymentIntent (requires_payment_method).
 *
 * Payment methods: pm_card_visa (and pm_card_mastercard) succeed; pm_card_chargeDeclined → 402
 * generic_decline; pm_card_chargeDeclinedInsufficientFunds → 402 insufficient_funds;
 * pm_card_authenticationRequired → requires_action; pm_processing → processing (settle it with
 * settleIntent); pm_slow → charged at once, but the answer is held back for `slowDelayMs` or
 * until releaseSlow(); any other pm_… → 400 resource_missing.
 *
 * `ledger` lists every effect actually performed, one row per effect: tests assert exactly-once.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

type Json = Record<string, unknown>;
type Params = Record<string, unknown>;

export interface LedgerRow {
  operation: 'authorize' | 'capture' | 'void' | 'refund';
  paymentIntent: string;
  amount: number;
  currency: string;
  idempotencyKey: string | null;
  reference: string;
}

export interface FakeIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  currency: string;
  status: string;
  capture_method: string;
  confirmation_method: 'automatic';
  payment_method: string | null;
  metadata: Record<string, string>;
  latest_charge: string | null;
  last_payment_error: Json | null;
  cancellation_reason: string | null;
  canceled_at: number | null;
  created: number;
  livemode: false;
}

export interface FakeRefund {
  id: string;
  object: 'refund';
  amount: number;
  currency: string;
  payment_intent: string;
  charge: string | null;
  status: string;
  failure_reason: string | null;
  metadata: Record<string, string>;
  created: number;
}

interface Answer {
  status: number;
  body: unknown;
}

type Stored = { state: 'running'; fingerprint: string } | { state: 'done'; fingerprint: string; answer: Answer };

export interface InjectedFailure {
  status: number;
  error: Json;
}

export interface FakeStripeOptions {
  /** How long a pm_slow answer is held back; default: until releaseSlow(). */
  slowDelayMs?: number;
}

/** Parses a form body the way Stripe does: `a[b][c]=v`, `a[0]=v`, `a[]=v` nest into objects/arrays. */
export function parseForm(body: string): Params {
  const root: Params = {};
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const match = /^([^[\]]+)((?:\[[^\]]*\])*)$/.exec(rawKey);
    if (!match) {
      root[rawKey] = value;
      continue;
    }
    const path = [match[1]!, ...[...match[2]!.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1]!)];
    let node: Record<string, unknown> | unknown[] = root;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      const last = i === path.length - 1;
      const nextIsIndex = !last && /^\d*$/.test(path[i + 1]!);
      if (Array.isArray(node)) {
        const index = seg === '' ? node.length : Number(seg);
        if (last) node[index] = value;
        else node = (node[index] ??= nextIsIndex ? [] : {}) as Record<string, unknown> | unknown[];
      } else {
        if (last) node[seg] = value;
        else node = (node[seg] ??= nextIsIndex ? [] : {}) as Record<string, unknown> | unknown[];
      }
    }
  }
  return root;
}

/** A stable fingerprint of parameters: keys sorted at every level. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Json)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

const newId = (prefix: string): string => `${prefix}_${randomBytes(12).toString('hex')}`;
const now = (): number => Math.floor(Date.now() / 1000);

function stripeError(status: number, error: Json): Answer {
  return { status, body: { error: { message: 'An error occurred.', ...error } } };
}

const invalid = (message: string, extra: Json = {}): Answer => stripeError(400, { type: 'invalid_request_error', message, ...extra });
const missing = (kind: string, id: string, param = 'id'): Answer =>
  stripeError(404, { type: 'invalid_request_error', code: 'resource_missing', param, message: `No such ${kind}: '${id}'` });

function positiveInt(v: unknown): number | null {
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return null;
  const n = Number(v);
  return n > 0 ? n : null;
}

const DECLINES: Record<string, { decline_code: string; message: string }> = {
  pm_card_chargeDeclined: { decline_code: 'generic_decline', message: 'Your card was declined.' },
  pm_card_chargeDeclinedInsufficientFunds: { decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
};
const SUCCEEDING = new Set(['pm_card_visa', 'pm_card_mastercard', 'pm_slow', 'pm_processing', 'pm_card_authenticationRequired']);

export class FakeStripe {
  readonly intents = new Map<string, FakeIntent>();
  readonly refunds = new Map<string, FakeRefund>();
  readonly ledger: LedgerRow[] = [];
  /** Every request as received: method, path, idempotency key. */
  readonly requests: { method: string; path: string; idempotencyKey: string | null }[] = [];
  /** Status new refunds get: Stripe card refunds are usually 'succeeded' at once. */
  refundStatus: 'succeeded' | 'pending' | 'failed' = 'succeeded';
  slowDelayMs: number | undefined;

  private readonly idempotency = new Map<string, Stored>();
  private readonly injected: InjectedFailure[] = [];
  private readonly slow = new Set<() => void>();
  private server: Server | undefined;
  port = 0;

  constructor(opts: FakeStripeOptions = {}) {
    this.slowDelayMs = opts.slowDelayMs;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    this.releaseSlow();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The next request (whatever it is) fails with this answer before doing anything. */
  injectFailure(failure: InjectedFailure): void {
    this.injected.push(failure);
  }

  /** Sends every held-back pm_slow answer now. */
  releaseSlow(): void {
    for (const release of [...this.slow]) release();
  }

  /** Number of pm_slow answers currently held back. */
  get heldBack(): number {
    return this.slow.size;
  }

  /** Moves a processing intent on, as Stripe does when an asynchronous payment settles. */
  settleIntent(id: string, result: 'succeeded' | 'failed'): FakeIntent {
    const pi = this.intents.get(id);
    if (!pi || pi.status !== 'processing') throw new Error(`intent ${id} is not processing`);
    if (result === 'failed') {
      Object.assign(pi, { status: 'requires_payment_method', last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: 'Declined.' } });
    } else if (pi.capture_method === 'manual') {
      Object.assign(pi, { status: 'requires_capture', amount_capturable: pi.amount });
    } else {
      Object.assign(pi, { status: 'succeeded', amount_received: pi.amount });
    }
    return pi;
  }

  ledgerFor(paymentIntent: string): LedgerRow[] {
    return this.ledger.filter((r) => r.paymentIntent === paymentIntent);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const key = typeof req.headers['idempotency-key'] === 'string' ? req.headers['idempotency-key'] : null;
    this.requests.push({ method, path: url.pathname, idempotencyKey: key });

    const send = (answer: Answer, headers: Record<string, string> = {}): void => {
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(answer.status, { 'content-type': 'application/json', 'request-id': newId('req'), ...headers });
      res.end(JSON.stringify(answer.body));
    };

    const auth = req.headers.authorization ?? '';
    if (!/^Bearer sk_test_\w+$/.test(auth)) {
      send(stripeError(401, { type: 'invalid_request_error', message: 'Invalid API Key provided.' }));
      return;
    }
    const failure = this.injected.shift();
    if (failure) {
      send({ status: failure.status, body: { error: failure.error } });
      return;
    }

    const params = method === 'POST' ? parseForm(Buffer.concat(chunks).toString('utf8')) : parseForm(url.search.slice(1));
    if (method !== 'POST' || key === null) {
      send(this.route(method, url.pathname, params, key).answer);
      return;
    }

    const fingerprint = `${method} ${url.pathname} ${canonical(params)}`;
    const stored = this.idempotency.get(key);
    if (stored && stored.fingerprint !== fingerprint) {
      send(stripeError(400, {
        type: 'idempotency_error',
        message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
      }));
      return;
    }
    if (stored?.state === 'running') {
      send(stripeError(409, {
        type: 'invalid_request_error',
        code: 'idempotency_key_in_use',
        message: 'There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through). Please try again later.',
      }));
      return;
    }
    if (stored?.state === 'done') {
      send(stored.answer, { 'idempotent-replayed': 'true', 'idempotency-key': key });
      return;
    }

    this.idempotency.set(key, { state: 'running', fingerprint });
    const { answer, slow } = this.route(method, url.pathname, params, key);
    const finish = (): void => {
      // Only requests that started executing keep their answer; validation errors do not.
      if (answer.status < 300 || answer.status === 402) this.idempotency.set(key, { state: 'done', fingerprint, answer });
      else this.idempotency.delete(key);
      send(answer, { 'idempotency-key': key });
    };
    if (!slow) {
      finish();
      return;
    }
    // Charged already; only the answer is late.
    let timer: NodeJS.Timeout | undefined;
    const release = (): void => {
      if (!this.slow.delete(release)) return;
      if (timer) clearTimeout(timer);
      finish();
    };
    this.slow.add(release);
    if (this.slowDelayMs !== undefined) timer = setTimeout(release, this.slowDelayMs);
  }

  private route(method: string, path: string, params: Params, key: string | null): { answer: Answer; slow?: boolean } {
    let m: RegExpExecArray | null;
    if (method === 'POST' && path === '/v1/payment_intents') return this.createIntent(params, key);
    if (method === 'GET' && path === '/v1/payment_intents/search') return { answer: this.searchIntents(params) };
    if ((m = /^\/v1\/payment_intents\/([^/]+)$/.exec(path)) && method === 'GET') {
      const pi = this.intents.get(decodeURIComponent(m[1]!));
      return { answer: pi ? { status: 200, body: pi } : missing('payment_intent', decodeURIComponent(m[1]!), 'intent') };
    }
    if ((m = /^\/v1\/payment_intents\/([^/]+)\/capture$/.exec(path)) && method === 'POST') {
      return { answer: this.captureIntent(decodeURIComponent(m[1]!), params, key) };
    }
    if ((m = /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(path)) && method === 'POST') {
      return { answer: this.cancelIntent(decodeURIComponent(m[1]!), params, key) };
    }
    if (method === 'POST' && path === '/v1/refunds') return { answer: this.createRefund(params, key) };
    if (method === 'GET' && path === '/v1/refunds') {
      const pi = typeof params.payment_intent === 'string' ? params.payment_intent : null;
      const data = [...this.refunds.values()].filter((r) => pi === null || r.payment_intent === pi).reverse();
      return { answer: { status: 200, body: { object: 'list', data, has_more: false, url: '/v1/refunds' } } };
    }
    if ((m = /^\/v1\/refunds\/([^/]+)$/.exec(path)) && method === 'GET') {
      const refund = this.refunds.get(decodeURIComponent(m[1]!));
      return { answer: refund ? { status: 200, body: refund } : missing('refund', decodeURIComponent(m[1]!)) };
    }
    return { answer: invalid(`Unrecognized request URL (${method}: ${path}).`) };
  }

  private createIntent(p: Params, key: string | null): { answer: Answer; slow?: boolean } {
    const amount = positiveInt(p.amount);
    if (amount === null) return { answer: invalid('Invalid positive integer', { param: 'amount', code: 'parameter_invalid_integer' }) };
    if (typeof p.currency !== 'string' || !/^[a-z]{3}$/.test(p.currency)) {
      return { answer: invalid('Invalid currency.', { param: 'currency', code: 'parameter_invalid_empty' }) };
    }
    const captureMethod = p.capture_method ?? 'automatic';
    if (captureMethod !== 'automatic' && captureMethod !== 'manual') return { answer: invalid('Invalid capture_method.', { param: 'capture_method' }) };
    const pm = typeof p.payment_method === 'string' ? p.payment_method : null;
    const metadata = (p.metadata && typeof p.metadata === 'object' ? p.metadata : {}) as Record<string, string>;
    if (p.confirm !== 'true') return { answer: invalid('This fake only supports confirm=true.', { param: 'confirm' }) };
    if (!pm) return { answer: invalid('You must provide a payment_method to confirm.', { param: 'payment_method' }) };
    const apm = (p.automatic_payment_methods ?? {}) as Params;
    if (p.return_url === undefined && p.payment_method_types === undefined && apm.allow_redirects !== 'never') {
      return {
        answer: invalid(
          'This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`.',
          { code: 'parameter_missing', param: 'return_url' },
        ),
      };
    }
    const decline = DECLINES[pm];
    if (!decline && !SUCCEEDING.has(pm)) {
      return { answer: invalid(`No such PaymentMethod: '${pm}'`, { code: 'resource_missing', param: 'payment_method' }) };
    }

    const pi: FakeIntent = {
      id: newId('pi'),
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      currency: p.currency,
      status: 'requires_confirmation',
      capture_method: captureMethod,
      confirmation_method: 'automatic',
      payment_method: pm,
      metadata: { ...metadata },
      latest_charge: null,
      last_payment_error: null,
      cancellation_reason: null,
      canceled_at: null,
      created: now(),
      livemode: false,
    };
    this.intents.set(pi.id, pi);

    if (decline) {
      const error = { type: 'card_error', code: 'card_declined', decline_code: decline.decline_code, message: decline.message, charge: newId('ch') };
      Object.assign(pi, { status: 'requires_payment_method', latest_charge: error.charge, last_payment_error: error });
      return { answer: stripeError(402, { ...error, payment_intent: { ...pi } }) };
    }
    if (pm === 'pm_card_authenticationRequired') {
      pi.status = 'requires_action';
      return { answer: { status: 200, body: { ...pi } } };
    }
    if (pm === 'pm_processing') {
      pi.status = 'processing';
      return { answer: { status: 200, body: { ...pi } } };
    }
    pi.latest_charge = newId('ch');
    if (captureMethod === 'manual') Object.assign(pi, { status: 'requires_capture', amount_capturable: amount });
    else Object.assign(pi, { status: 'succeeded', amount_received: amount });
    this.ledger.push({ operation: 'authorize', paymentIntent: pi.id, amount, currency: pi.currency, idempotencyKey: key, reference: pi.id });
    if (captureMethod === 'automatic') {
      this.ledger.push({ operation: 'capture', paymentIntent: pi.id, amount, currency: pi.currency, idempotencyKey: key, reference: pi.id });
    }
    return { answer: { status: 200, body: { ...pi } }, slow: pm === 'pm_slow' };
  }

  private searchIntents(p: Params): Answer {
    const query = typeof p.query === 'string' ? p.query : '';
    const m = /^\s*metadata\['([^'\\]+)'\]\s*:\s*'((?:[^'\\]|\\.)*)'\s*$/.exec(query);
    if (!m) return invalid(`This fake only understands queries of the form metadata['key']:'value', not: ${query}`, { param: 'query' });
    const field = m[1]!;
    const value = m[2]!.replace(/\\(.)/g, '$1');
    const limit = positiveInt(p.limit) ?? 10;
    const data = [...this.intents.values()].filter((pi) => pi.metadata[field] === value).reverse();
    return {
      status: 200,
      body: { object: 'search_result', data: data.slice(0, limit), has_more: data.length > limit, next_page: null, url: '/v1/payment_intents/search' },
    };
  }

  private captureIntent(id: string, p: Params, key: string | null): Answer {
    const pi = this.intents.get(id);
    if (!pi) return missing('payment_intent', id, 'intent');
    if (pi.status !== 'requires_capture') {
      return invalid(`This PaymentIntent could not be captured because it has a status of ${pi.status}. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.`, {
        code: 'payment_intent_unexpected_state',
        payment_intent: { ...pi },
      });
    }
    const amount = p.amount_to_capture === undefined ? pi.amount_capturable : positiveInt(p.amount_to_capture);
    if (amount === null || amount > pi.amount_capturable) {
      return invalid('The amount to capture must be at most the amount capturable.', { param: 'amount_to_capture', code: 'amount_too_large' });
    }
    Object.assign(pi, { status: 'succeeded', amount_received: amount, amount_capturable: 0 });
    this.ledger.push({ operation: 'capture', paymentIntent: pi.id, amount, currency: pi.currency, idempotencyKey: key, reference: pi.id });
    return { status: 200, body: { ...pi } };
  }

  private cancelIntent(id: string, p: Params, key: string | null): Answer {
    const pi = this.intents.get(id);
    if (!pi) return missing('payment_intent', id, 'intent');
    const cancelable = ['requires_payment_method', 'requires_capture', 'requires_confirmation', 'requires_action', 'processing'];
    if (!cancelable.includes(pi.status)) {
      return invalid(`You cannot cancel this PaymentIntent because it has a status of ${pi.status}. Only a PaymentIntent with one of the following statuses may be canceled: ${cancelable.join(', ')}.`, {
        code: 'payment_intent_unexpected_state',
        payment_intent: { ...pi },
      });
    }
    const released = pi.amount_capturable;
    Object.assign(pi, {
      status: 'canceled',
      amount_capturable: 0,
      canceled_at: now(),
      cancellation_reason: typeof p.cancellation_reason === 'string' ? p.cancellation_reason : null,
    });
    this.ledger.push({ operation: 'void', paymentIntent: pi.id, amount: released, currency: pi.currency, idempotencyKey: key, reference: pi.id });
    return { status: 200, body: { ...pi } };
  }

  private createRefund(p: Params, key: string | null): Answer {
    const piId = typeof p.payment_intent === 'string' ? p.payment_intent : '';
    const pi = this.intents.get(piId);
    if (!pi) return missing('payment_intent', piId, 'payment_intent');
    if (pi.status !== 'succeeded') {
      return invalid(`This PaymentIntent (${pi.id}) does not have a successful charge to refund.`, { code: 'charge_not_refundable' });
    }
    const refunded = [...this.refunds.values()]
      .filter((r) => r.payment_intent === pi.id && r.status !== 'failed' && r.status !== 'canceled')
      .reduce((s, r) => s + r.amount, 0);
    const left = pi.amount_received - refunded;
    if (left <= 0) return invalid(`Charge ${pi.latest_charge} has already been refunded.`, { code: 'charge_already_refunded' });
    const amount = p.amount === undefined ? left : positiveInt(p.amount);
    if (amount === null || amount > left) {
      return invalid(`Refund amount (${String(p.amount)}) is greater than unrefunded amount on charge (${left}).`, { param: 'amount', code: 'amount_too_large' });
    }
    const refund: FakeRefund = {
      id: newId('re'),
      object: 'refund',
      amount,
      currency: pi.currency,
      payment_intent: pi.id,
      charge: pi.latest_charge,
      status: this.refundStatus,
      failure_reason: this.refundStatus === 'failed' ? 'expired_or_canceled_card' : null,
      metadata: { ...((p.metadata ?? {}) as Record<string, string>) },
      created: now(),
    };
    this.refunds.set(refund.id, refund);
    if (refund.status !== 'failed') {
      this.ledger.push({ operation: 'refund', paymentIntent: pi.id, amount, currency: pi.currency, idempotencyKey: key, reference: refund.id });
    }
    return { status: 200, body: { ...refund } };
  }
}

export async function startFakeStripe(opts: FakeStripeOptions = {}): Promise<FakeStripe> {
  return new FakeStripe(opts).start();
}
