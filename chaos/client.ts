/**
 * A merchant backend's HTTP client, as a careful one behaves: every POST carries an
 * Idempotency-Key and is retried with that same key after a connection error (the api it talked
 * to was killed: the retry goes to the other api), a 409 IDEMPOTENCY_KEY_IN_USE (after its
 * Retry-After), a 429/503 (after Retry-After) or a 500. Each logical request has a deadline.
 */
import { Agent, request } from 'undici';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

export interface Reply {
  status: number;
  body: Json;
  headers: Record<string, string | string[] | undefined>;
  api: number;
}

export interface ClientStats {
  /** HTTP requests sent (every retry counts). */
  requests: number;
  /** Logical operations (one idempotency key each, or one GET). */
  operations: number;
  connectionErrors: number;
  inUse: number;
  retryAfter: number;
  serverErrors: number;
  /** Logical requests that never got a final answer before their deadline. */
  gaveUp: number;
  replays: number;
  byStatus: Record<string, number>;
}

export function newClientStats(): ClientStats {
  return { requests: 0, operations: 0, connectionErrors: 0, inUse: 0, retryAfter: 0, serverErrors: 0, gaveUp: 0, replays: 0, byStatus: {} };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CallOptions {
  method: 'GET' | 'POST';
  path: string;
  apiKey: string;
  body?: unknown;
  idempotencyKey?: string;
  /** Which api to try first. */
  prefer?: number;
  deadlineMs?: number;
}

export class Client {
  readonly stats = newClientStats();
  /** Logical requests under way right now. */
  inFlight = 0;
  private readonly agent = new Agent({ connections: 128, keepAliveTimeout: 4_000, connect: { timeout: 3_000 }, headersTimeout: 30_000, bodyTimeout: 30_000 });

  constructor(private readonly apiUrls: () => string[]) {}

  /** One HTTP exchange; null when the connection failed (refused, reset, timed out). */
  async once(api: number, o: CallOptions): Promise<Reply | null> {
    const url = `${this.apiUrls()[api]!}${o.path}`;
    const headers: Record<string, string> = { 'x-api-key': o.apiKey };
    if (o.idempotencyKey) headers['idempotency-key'] = o.idempotencyKey;
    let payload: string | undefined;
    if (o.method === 'POST') {
      payload = JSON.stringify(o.body ?? {});
      headers['content-type'] = 'application/json';
    }
    this.stats.requests += 1;
    try {
      const res = await request(url, { method: o.method, headers, body: payload, dispatcher: this.agent, signal: AbortSignal.timeout(30_000) });
      const text = await res.body.text();
      let body: Json = {};
      try {
        body = text ? (JSON.parse(text) as Json) : {};
      } catch {
        body = { raw: text };
      }
      this.stats.byStatus[res.statusCode] = (this.stats.byStatus[res.statusCode] ?? 0) + 1;
      return { status: res.statusCode, body, headers: res.headers, api };
    } catch {
      this.stats.connectionErrors += 1;
      return null;
    }
  }

  /** A logical request: retried as a careful client would until a final answer or the deadline. */
  async call(o: CallOptions): Promise<Reply | null> {
    this.stats.operations += 1;
    this.inFlight += 1;
    try {
      return await this.retrying(o);
    } finally {
      this.inFlight -= 1;
    }
  }

  private async retrying(o: CallOptions): Promise<Reply | null> {
    const n = this.apiUrls().length;
    let api = (o.prefer ?? 0) % n;
    const deadline = Date.now() + (o.deadlineMs ?? 90_000);
    let backoff = 100;
    for (;;) {
      const r = await this.once(api, o);
      if (r && r.headers['idempotent-replayed'] === 'true') this.stats.replays += 1;
      let wait: number | null = null;
      if (!r) {
        api = (api + 1) % n; // that api is probably dead: the other one, same key
        wait = backoff;
        backoff = Math.min(backoff * 2, 2_000);
      } else if (r.status === 409 && r.body?.error?.code === 'IDEMPOTENCY_KEY_IN_USE') {
        this.stats.inUse += 1;
        wait = retryAfterMs(r) ?? 1_000;
        api = (api + 1) % n;
      } else if (r.status === 429 || (r.status === 503 && r.body?.error?.code !== 'CONNECTOR_UNAVAILABLE')) {
        this.stats.retryAfter += 1;
        wait = retryAfterMs(r) ?? 1_000;
      } else if (r.status >= 500 && r.status !== 502 && r.status !== 503) {
        this.stats.serverErrors += 1;
        wait = backoff;
        backoff = Math.min(backoff * 2, 2_000);
      } else {
        return r;
      }
      if (Date.now() + wait > deadline) {
        this.stats.gaveUp += 1;
        return r;
      }
      await sleep(wait + Math.floor(Math.random() * 100));
    }
  }

  async close(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }
}

function retryAfterMs(r: Reply): number | null {
  const v = r.headers['retry-after'];
  const n = Number(Array.isArray(v) ? v[0] : v);
  if (!Number.isFinite(n) || n < 0) return null;
  return Math.min(n, 5) * 1000;
}
