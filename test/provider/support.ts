/**
 * Shared pieces of the provider-truth tests (SPEC §10, §11, §13): the common harness (its mock
 * provider delivers webhooks to the API), a signer for provider events, and readers that take
 * every figure from SQL.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../../src/config/config.js';
import type { Queryable } from '../../src/db/pool.js';
import { canTransition, type PaymentStatus } from '../../src/domain/state-machine.js';
import { signMockWebhook } from '../../src/mock-provider/signature.js';
import { ADMIN_KEY, call, paymentBody, startHarness, type ApiResponse, type Harness, type HarnessOptions } from '../support/harness.js';

/** The provider-truth tests use the common harness; the provider's webhooks reach the API. */
export type ProviderHarness = Harness;
export type ProviderHarnessOptions = HarnessOptions;

export function startProviderHarness(env: Record<string, string> = {}, opts: ProviderHarnessOptions = {}): Promise<ProviderHarness> {
  return startHarness(env, opts);
}

// ---------------------------------------------------------------------------------------------
// Provider events

export interface MockEventData {
  charge_id?: string;
  payment_id?: string;
  idempotency_key?: string;
  amount?: number;
  status?: string;
  failure_code?: string;
}

export interface MockEvent {
  id: string;
  type: string;
  created: number;
  data: MockEventData;
}

let eventSeq = 0;

/** A provider event id with letters between its digits (no long digit run for the card guard). */
export function eventId(): string {
  eventSeq += 1;
  return `evt_mock_${randomBytes(6).toString('hex').replace(/\d/g, 'q')}_${eventSeq}`;
}

export function mockEvent(type: string, data: MockEventData, id = eventId()): MockEvent {
  return { id, type, created: Math.floor(Date.now() / 1000), data };
}

export interface SendOptions {
  connector?: string;
  secret?: string;
  /** Unix seconds the signature claims; default now. */
  timestamp?: number;
  /** Sent instead of the signed body (a tampered delivery). */
  sentBody?: string;
  /** Overrides the signature header entirely (null: none). */
  signature?: string | null;
}

/** POSTs a provider webhook exactly as the mock provider does: raw JSON, `Mock-Signature: t=…,v1=…`. */
export async function sendEvent(h: { url: string; config: Config }, event: MockEvent | string, opts: SendOptions = {}): Promise<ApiResponse> {
  const raw = typeof event === 'string' ? event : JSON.stringify(event);
  const ts = opts.timestamp ?? Math.floor(Date.now() / 1000);
  const signature = opts.signature === undefined ? signMockWebhook(opts.secret ?? h.config.MOCK_PROVIDER_WEBHOOK_SECRET, raw, ts) : opts.signature;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (signature !== null) headers['mock-signature'] = signature;
  return call(h, 'POST', `/v1/connectors/${opts.connector ?? 'mock'}/webhooks`, { raw: opts.sentBody ?? raw, headers });
}

// ---------------------------------------------------------------------------------------------
// Readers (SQL)

export interface PaymentSnapshot {
  id: string;
  status: PaymentStatus;
  version: number;
  amount: number;
  amount_captured: number;
  amount_capturable: number;
  reconciliation_status: string;
  provider_reference: string | null;
  connector: string | null;
  failure_code: string | null;
  failure_message: string | null;
  event_sequence: number;
}

export async function paymentRow(db: Queryable, id: string): Promise<PaymentSnapshot> {
  const r = await db.query<PaymentSnapshot>(
    `SELECT id, status, version, amount, amount_captured, amount_capturable, reconciliation_status, provider_reference,
            connector, failure_code, failure_message, event_sequence FROM payments WHERE id = $1`,
    [id],
  );
  if (!r.rows[0]) throw new Error(`no payment ${id}`);
  return r.rows[0];
}

export interface HistoryRow {
  from_status: string | null;
  to_status: string;
  cause: string;
  actor: string;
}

export async function historyOf(db: Queryable, paymentId: string): Promise<HistoryRow[]> {
  const r = await db.query<HistoryRow>('SELECT from_status, to_status, cause, actor FROM payment_status_history WHERE payment_id = $1 ORDER BY id', [paymentId]);
  return r.rows;
}

/** Every step of the audit trail is an allowed transition and starts where the previous one ended. */
export function isValidPath(history: HistoryRow[]): boolean {
  for (let i = 0; i < history.length; i++) {
    const h = history[i]!;
    if (h.from_status === null) {
      if (i !== 0) return false;
      continue;
    }
    if (i > 0 && history[i - 1]!.to_status !== h.from_status) return false;
    if (!canTransition(h.from_status as PaymentStatus, h.to_status as PaymentStatus)) return false;
  }
  return true;
}

export interface ProviderEventRow {
  id: string;
  connector: string;
  provider_event_id: string;
  type: string;
  status: string;
  result: string | null;
  error: string | null;
  payment_id: string | null;
  process_attempts: number;
  next_retry_at: Date | null;
  processed_at: Date | null;
}

export async function providerEvents(db: Queryable, providerEventId: string): Promise<ProviderEventRow[]> {
  const r = await db.query<ProviderEventRow>(
    `SELECT id, connector, provider_event_id, type, status, result, error, payment_id, process_attempts, next_retry_at, processed_at
       FROM provider_events WHERE provider_event_id = $1 ORDER BY id`,
    [providerEventId],
  );
  return r.rows;
}

export interface AttemptSnapshot {
  id: string;
  operation: string;
  connector: string;
  status: string;
  provider_reference: string | null;
  provider_status: string | null;
  error_code: string | null;
  reconcile_attempts: number;
  next_reconcile_at: Date | null;
}

export async function attemptsOf(db: Queryable, paymentId: string): Promise<AttemptSnapshot[]> {
  const r = await db.query<AttemptSnapshot>(
    `SELECT id, operation, connector, status, provider_reference, provider_status, error_code, reconcile_attempts, next_reconcile_at
       FROM payment_attempts WHERE payment_id = $1 ORDER BY id`,
    [paymentId],
  );
  return r.rows;
}

export async function eventTypes(db: Queryable, paymentId: string): Promise<string[]> {
  const r = await db.query<{ type: string }>('SELECT type FROM events WHERE payment_id = $1 ORDER BY sequence', [paymentId]);
  return r.rows.map((e) => e.type);
}

export interface LedgerEntry {
  operation: string;
  amount: number;
  idempotency_key: string;
  provider_reference: string;
}

/** The provider's own ledger, through the admin API. */
export async function ledgerOf(h: { url: string }, paymentId: string): Promise<LedgerEntry[]> {
  const res = await call<{ data: LedgerEntry[] }>(h, 'GET', `/v1/admin/connectors/mock/ledger?payment_id=${encodeURIComponent(paymentId)}`, { key: ADMIN_KEY });
  if (res.status !== 200) throw new Error(`ledger read failed: ${res.status}`);
  return res.body.data;
}

/** The provider's charges for a payment, straight from its table. */
export async function chargesOf(db: Queryable, paymentId: string): Promise<{ id: string; status: string; mode: string }[]> {
  const r = await db.query<{ id: string; status: string; mode: string }>('SELECT id, status, mode FROM mock_provider_charges WHERE payment_id = $1 ORDER BY created_at', [paymentId]);
  return r.rows;
}

let refSeq = 0;

/** A merchant order reference with no long digit run (the card-number guard refuses those). */
export function reference(tag = 'prv'): string {
  refSeq += 1;
  return `${tag}_${randomBytes(6).toString('hex').replace(/\d/g, 'k')}_${refSeq}`;
}

export function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return paymentBody({ reference_id: reference(), ...overrides });
}

/** Merchant limits that keep the velocity rule out of the way. */
export const HIGH_VELOCITY = { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } };
