/**
 * Assertions shared by the HTTP-level tests: the documented error shape, the mock provider's
 * ledger, and small readers over the API.
 */
import { expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ADMIN_KEY, call, paymentBody, type ApiResponse, type Harness } from '../support/harness.js';

export interface LedgerRow {
  operation: 'authorize' | 'capture' | 'void' | 'refund';
  amount: number;
  currency: string;
  idempotency_key: string;
  provider_reference: string;
  created_at: string;
}

/**
 * A JSON object read from a response, navigated freely by the assertions (as the harness's
 * `ApiResponse` body already is); a wrong path fails the assertion that reads it.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

const ERROR_KEYS = new Set(['code', 'message', 'layer', 'details', 'request_id']);

/**
 * The response is the documented error: `{"error": {code, message, layer?, details?, request_id}}`
 * with the given status and code, and request_id equal to the X-Request-Id response header.
 */
export function expectError(res: ApiResponse, status: number, code: string, layer?: string): Json {
  const summary = `${res.status} ${JSON.stringify(res.body)}`;
  expect(res.status, summary).toBe(status);
  expect(res.headers.get('content-type') ?? '', summary).toMatch(/^application\/json/);
  expect(Object.keys(res.body as object), summary).toEqual(['error']);
  const err = res.body.error as Json;
  expect(err.code, summary).toBe(code);
  expect(typeof err.message, summary).toBe('string');
  expect(err.message.length, summary).toBeGreaterThan(0);
  for (const k of Object.keys(err)) expect(ERROR_KEYS.has(k), `unexpected error key ${k}`).toBe(true);
  const requestId = res.headers.get('x-request-id');
  expect(requestId, 'X-Request-Id header').toBeTruthy();
  expect(err.request_id).toBe(requestId);
  if (layer !== undefined) expect(err.layer, summary).toBe(layer);
  if (err.details !== undefined) expect(typeof err.details).toBe('object');
  // No stack traces or internals leave the process.
  expect(JSON.stringify(res.body)).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);
  return err;
}

export async function ledger(h: Harness, paymentId: string): Promise<LedgerRow[]> {
  const res = await call(h, 'GET', `/v1/admin/connectors/mock/ledger?payment_id=${encodeURIComponent(paymentId)}`, { key: ADMIN_KEY });
  expect(res.status).toBe(200);
  return res.body.data as LedgerRow[];
}

export function ops(rows: LedgerRow[]): string[] {
  return rows.map((r) => r.operation);
}

export async function getPayment(h: Harness, key: string, id: string): Promise<Json> {
  const res = await call(h, 'GET', `/v1/payments/${id}`, { key });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** A value that looks like a Luhn-valid card number in no way: for bodies that must not trip the PAN guard. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = Number(digits[i]);
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Merchant limits that keep the velocity rule out of the way of tests about something else. */
export const HIGH_VELOCITY = { limits: { velocity: { max_payments: 10_000, window_seconds: 300 } } };

let refSeq = 0;

/**
 * A fresh merchant order reference that cannot trip the card-number guard. The harness's
 * `paymentBody` embeds `Date.now()` (13 digits) in its reference, which is Luhn-valid about one time
 * in ten and then refused, correctly, as SCHEMA_SENSITIVE_DATA; letters between short digit runs avoid that.
 */
export function ref(prefix = 'ord'): string {
  refSeq += 1;
  return `${prefix}_${randomBytes(6).toString('hex').replace(/\d/g, 'x')}_${refSeq}`;
}

/** `paymentBody` with a safe reference (unless one is given). */
export function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return paymentBody({ reference_id: ref(), ...overrides });
}
