import { request } from 'undici';
import type { Dispatcher } from 'undici';
import { NEVER_SENT_CODES } from '../never-sent.js';

/**
 * One HTTP exchange with the provider, reduced to what decides an outcome: a response, or a
 * failure classified by whether the request can have reached the provider.
 */
export type Exchange =
  | { kind: 'response'; status: number; body: unknown }
  | { kind: 'unreachable'; code: string; message: string }
  | { kind: 'timeout'; message: string }
  | { kind: 'network'; message: string };

// The connection was never established, so the provider cannot have seen the request. undici adds
// its connect timeout, and a dispatch on a closed pool, refused before anything is written.
const NEVER_SENT = new Set([...NEVER_SENT_CODES, 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED']);
const READ_TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_ABORTED']);

function errorCodes(err: unknown, depth = 0): string[] {
  if (!err || typeof err !== 'object' || depth > 3) return [];
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  const codes = typeof e.code === 'string' ? [e.code] : [];
  // Happy-eyeballs connects fail with an AggregateError of one error per address tried.
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, depth + 1));
  codes.push(...errorCodes(e.cause, depth + 1));
  return codes;
}

export function classifyFailure(err: unknown): Exclude<Exchange, { kind: 'response' }> {
  const message = err instanceof Error ? err.message : String(err);
  const codes = errorCodes(err);
  // Our own deadline aborts with a TimeoutError; nothing else aborts these requests.
  const aborted = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
  if (aborted || codes.some((c) => READ_TIMEOUTS.has(c))) return { kind: 'timeout', message };
  const [first] = codes;
  // Every address refused or was unreachable: only then is "never sent" certain.
  if (first !== undefined && codes.every((c) => NEVER_SENT.has(c))) {
    return { kind: 'unreachable', code: first, message };
  }
  if (codes.includes('UND_ERR_INVALID_ARG')) {
    // Refused by the client before any byte was written (a bad URL or header).
    return { kind: 'unreachable', code: 'UND_ERR_INVALID_ARG', message };
  }
  return { kind: 'network', message };
}

export interface ExchangeRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: unknown;
  readTimeoutMs: number;
}

export async function exchange(dispatcher: Dispatcher, req: ExchangeRequest): Promise<Exchange> {
  try {
    const res = await request(req.url, {
      method: req.method,
      dispatcher,
      // undici checks headersTimeout/bodyTimeout on a coarse clock (up to ~1 s late); this native
      // timer makes the deadline exact. It also bounds connecting, so a slow connect can end as
      // a timeout (unknown) rather than unreachable: the cautious side.
      signal: AbortSignal.timeout(req.readTimeoutMs),
      headers: {
        accept: 'application/json',
        ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...req.headers,
      },
      body: req.body === undefined ? undefined : JSON.stringify(req.body),
      headersTimeout: req.readTimeoutMs,
      bodyTimeout: req.readTimeoutMs,
    });
    const text = await res.body.text();
    let body: unknown = null;
    try {
      body = text.length > 0 ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    return { kind: 'response', status: res.statusCode, body };
  } catch (err) {
    return classifyFailure(err);
  }
}
