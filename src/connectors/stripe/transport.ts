import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import Stripe from 'stripe';

/**
 * The HTTP layer under the Stripe SDK, shaped so that every failure can be classified by whether
 * Stripe can have seen the request:
 *
 * - a connect timeout of our own (the SDK has only one, socket-inactivity, timeout), raised before
 *   the socket is connected, so nothing was written;
 * - the SDK's hidden "retry a closed connection once even when retries are disabled" is turned off
 *   by renaming ECONNRESET/EPIPE: a reset after the request was written may have reached Stripe,
 *   and a retry that then failed to connect would otherwise report "connection refused" for a
 *   request that may well have charged. Switchyard owns retries (same key, after a sync).
 */

/** Raised by our agent when the TCP (or TLS) connection is not up within the connect timeout. */
export const CONNECT_TIMEOUT_CODE = 'SWITCHYARD_CONNECT_TIMEOUT';
/** ECONNRESET/EPIPE, renamed so the SDK does not retry behind our back. */
export const CONNECTION_LOST_CODE = 'SWITCHYARD_CONNECTION_LOST';

// The connection was never established, so Stripe cannot have seen the request. (On a reused
// keep-alive socket a failure is a reset or a timeout, never one of these.)
const NEVER_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  CONNECT_TIMEOUT_CODE,
]);

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

/** The SDK's own Node client on our agent, with resets renamed (see above). */
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
    try {
      return await this.inner.makeRequest(...args);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && Stripe.HttpClient.CONNECTION_CLOSED_ERROR_CODES.includes(code)) {
        throw Object.assign(new Error(`connection lost (${code})`, { cause: err }), { code: CONNECTION_LOST_CODE });
      }
      throw err;
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
