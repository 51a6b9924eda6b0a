import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import Stripe from 'stripe';
import { NEVER_SENT_CODES } from '../never-sent.js';

/**
 * The HTTP layer under the Stripe SDK, shaped so that every failure can be classified by whether
 * Stripe can have seen the request:
 *
 * - a connect timeout of our own (the SDK has only one, socket-inactivity, timeout), raised before
 *   the socket is connected, so nothing was written;
 * - the SDK resends a request whose connection was reset (ECONNRESET/EPIPE) once, even with
 *   retries disabled, and then reports only the resend's failure: a resend refused at connect would
 *   read as "never sent" although the first request may have reached Stripe and charged. We do
 *   that one resend here instead (only for requests that are safe to resend: GETs, and POSTs with
 *   an Idempotency-Key — Switchyard always sends one), and if it fails too, the failure is reported
 *   as CONNECTION_LOST, which the SDK does not retry and we classify as "may have been sent".
 */

/** Raised by our agent when the TCP (or TLS) connection is not up within the connect timeout. */
export const CONNECT_TIMEOUT_CODE = 'SWITCHYARD_CONNECT_TIMEOUT';
/** A reset/EPIPE (then a failed resend): the request may have reached Stripe. Not retried by the SDK. */
export const CONNECTION_LOST_CODE = 'SWITCHYARD_CONNECTION_LOST';

// The connection was never established, so Stripe cannot have seen the request.
const NEVER_SENT = new Set([...NEVER_SENT_CODES, CONNECT_TIMEOUT_CODE]);

type ConnectCallback = (err: Error | null, stream: Duplex) => void;

function guardConnect(socket: Duplex | null | undefined, secure: boolean, connectTimeoutMs: number): void {
  if (!socket) return;
  const timer = setTimeout(() => {
    const err = Object.assign(new Error(`connect timeout after ${connectTimeoutMs} ms`), { code: CONNECT_TIMEOUT_CODE });
    socket.destroy(err);
  }, connectTimeoutMs);
  timer.unref();
  const done = (): void => clearTimeout(timer);
  socket.once(secure ? 'secureConnect' : 'connect', done);
  socket.once('close', done);
}

class ConnectTimeoutHttpAgent extends http.Agent {
  constructor(private readonly connectTimeoutMs: number) {
    super({ keepAlive: true });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectCallback): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    guardConnect(socket, false, this.connectTimeoutMs);
    return socket;
  }
}

class ConnectTimeoutHttpsAgent extends https.Agent {
  constructor(private readonly connectTimeoutMs: number) {
    super({ keepAlive: true });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectCallback): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    guardConnect(socket, true, this.connectTimeoutMs);
    return socket;
  }
}

export function createAgent(protocol: 'http' | 'https', connectTimeoutMs: number): http.Agent {
  return protocol === 'http' ? new ConnectTimeoutHttpAgent(connectTimeoutMs) : new ConnectTimeoutHttpsAgent(connectTimeoutMs);
}

type InnerClient = ReturnType<typeof Stripe.createNodeHttpClient>;
type MakeRequest = InnerClient['makeRequest'];

const codeOf = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;
const isConnectionClosed = (err: unknown): boolean => {
  const code = codeOf(err);
  return typeof code === 'string' && Stripe.HttpClient.CONNECTION_CLOSED_ERROR_CODES.includes(code);
};

/** The SDK's own Node client on our agent, with the reset handling described above. */
export class GuardedHttpClient extends Stripe.HttpClient {
  private readonly inner: InnerClient;

  constructor(agent: http.Agent) {
    super();
    this.inner = Stripe.createNodeHttpClient(agent);
  }

  override getClientName(): string {
    return this.inner.getClientName();
  }

  override async makeRequest(...args: Parameters<MakeRequest>): ReturnType<MakeRequest> {
    const [, , , method, headers] = args;
    try {
      return await this.inner.makeRequest(...args);
    } catch (first) {
      if (!isConnectionClosed(first)) throw first;
      const keyed = Object.keys(headers).some((h) => h.toLowerCase() === 'idempotency-key' && headers[h]);
      // Usually a pooled keep-alive socket the server had closed. Resending under the same
      // idempotency key cannot act twice; without a key a POST is not resent.
      let failure: unknown = first;
      if (method === 'GET' || keyed) {
        try {
          return await this.inner.makeRequest(...args);
        } catch (second) {
          failure = second;
        }
      }
      const codes = [codeOf(first), ...(failure === first ? [] : [codeOf(failure)])].map(String).join(', then ');
      throw Object.assign(new Error(`connection lost (${codes})`, { cause: first }), { code: CONNECTION_LOST_CODE });
    }
  }
}

export type TransportFailure =
  | { kind: 'unreachable'; code: string; message: string }
  | { kind: 'timeout'; message: string }
  | { kind: 'network'; message: string };

function errorCodes(err: unknown, depth = 0): string[] {
  if (!err || typeof err !== 'object' || depth > 3) return [];
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown; detail?: unknown; exception?: unknown };
  const codes = typeof e.code === 'string' ? [e.code] : [];
  // Happy-eyeballs connects fail with an AggregateError of one error per address tried.
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, depth + 1));
  codes.push(...errorCodes(e.cause, depth + 1));
  codes.push(...errorCodes(e.exception, depth + 1));
  return codes;
}

/**
 * Classifies a StripeConnectionError by its underlying error (`detail`): "unreachable" only when
 * every code says the connection was never made; a timeout or anything else may have reached Stripe.
 */
export function classifyConnectionError(err: { message: string; detail?: unknown }): TransportFailure {
  const codes = errorCodes(err.detail);
  const message = err.message;
  if (codes.includes(Stripe.HttpClient.TIMEOUT_ERROR_CODE)) return { kind: 'timeout', message };
  const [first] = codes;
  if (first !== undefined && codes.every((c) => NEVER_SENT.has(c))) return { kind: 'unreachable', code: first, message: `${first}: ${message}` };
  const detail = err.detail instanceof Error ? `: ${err.detail.message}` : '';
  return { kind: 'network', message: `${message}${detail}` };
}
