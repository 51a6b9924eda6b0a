/**
 * Shared by the merchant-webhook tests (SPEC §12): a real HTTP receiver on 127.0.0.1 that records
 * every request and answers as a test tells it to, and small readers over the webhook API.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { ADMIN_KEY, call, paymentBody, waitFor, type Harness } from '../support/harness.js';
import { spawnCli, type Spawned } from '../support/process.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

/** One request the receiver got. */
export interface Received {
  /** The webhook-id header. */
  id: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  json: Json;
  /** Date.now() when the whole request had arrived. */
  receivedAt: number;
  /** How many times this webhook-id had arrived, this one included. */
  nth: number;
}

export type Answer = { status: number; headers?: Record<string, string>; body?: string | Buffer } | 'hang';
export type Behaviour = (req: Received) => Answer;

/** The merchant velocity limit raised so that a test may create many payments. */
export const HIGH_VELOCITY = { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } };

export class Receiver {
  readonly received: Received[] = [];
  /** When each answer (status) was written, in order. */
  readonly answers: { id: string; status: number; at: number }[] = [];
  /** The largest number of requests with one webhook-id that were open at the same time. */
  maxConcurrentSameId = 0;
  /** Requests that arrived while another with the same webhook-id was still open. */
  readonly overlapping: string[] = [];
  behaviour: Behaviour;
  private readonly open = new Map<string, number>();
  private readonly counts = new Map<string, number>();
  private readonly held = new Set<ServerResponse>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
    behaviour: Behaviour,
  ) {
    this.behaviour = behaviour;
  }

  static async start(behaviour: Behaviour = () => ({ status: 200 })): Promise<Receiver> {
    const box: { receiver?: Receiver } = {};
    const server = createServer((req, res) => box.receiver!.handle(req, res));
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    box.receiver = new Receiver(server, `http://127.0.0.1:${port}`, behaviour);
    return box.receiver;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const id = String(req.headers['webhook-id'] ?? '');
    const open = (this.open.get(id) ?? 0) + 1;
    this.open.set(id, open);
    if (open > 1) this.overlapping.push(id);
    this.maxConcurrentSameId = Math.max(this.maxConcurrentSameId, open);
    let closed = false;
    const done = () => {
      if (closed) return;
      closed = true;
      this.held.delete(res);
      this.open.set(id, (this.open.get(id) ?? 1) - 1);
    };
    res.on('finish', done);
    res.on('close', done);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Json = {};
      try {
        json = JSON.parse(body) as Json;
      } catch {
        /* recorded as text */
      }
      const nth = (this.counts.get(id) ?? 0) + 1;
      this.counts.set(id, nth);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const r: Received = { id, path: req.url ?? '/', headers, body, json, receivedAt: Date.now(), nth };
      this.received.push(r);
      const answer = this.behaviour(r);
      if (answer === 'hang') {
        this.held.add(res);
        return;
      }
      this.answers.push({ id, status: answer.status, at: Date.now() });
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? '');
    });
  }

  /** How many times a webhook-id arrived. */
  count(id: string): number {
    return this.counts.get(id) ?? 0;
  }

  ids(): Set<string> {
    return new Set(this.received.map((r) => r.id));
  }

  of(id: string): Received[] {
    return this.received.filter((r) => r.id === id);
  }

  /** Requests currently held open by a 'hang' answer. */
  heldCount(): number {
    return this.held.size;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function registerEndpoint(h: Harness, key: string, url: string, enabledEvents: string[] = ['*']): Promise<{ id: string; secret: string; body: Json }> {
  const res = await call(h, 'POST', '/v1/webhook_endpoints', { key, body: { url, enabled_events: enabledEvents } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { id: res.body.id as string, secret: res.body.secret as string, body: res.body };
}

let refSeq = 0;

/**
 * A merchant order reference without digits: the harness's own embeds Date.now(), 13 digits that
 * are Luhn-valid about one time in ten and then refused as a card number.
 */
export function reference(): string {
  refSeq += 1;
  const letters = (n: number) => n.toString(26).replace(/[0-9]/g, (c) => 'qrstuvwxyz'[Number(c)]!);
  return `order_wh_${letters(process.pid)}_${letters(Date.now())}_${letters(refSeq)}`;
}

export async function createPayment(h: Harness, key: string, overrides: Record<string, unknown> = {}, headers?: Record<string, string>): Promise<Json> {
  const res = await call(h, 'POST', '/v1/payments', { key, body: paymentBody({ reference_id: reference(), ...overrides }), headers });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

export async function paymentEvents(h: Harness, key: string, paymentId: string): Promise<Json[]> {
  const res = await call(h, 'GET', `/v1/payments/${paymentId}/events`, { key });
  expect(res.status).toBe(200);
  return res.body.data as Json[];
}

export async function getDelivery(h: Harness, key: string, id: string): Promise<Json> {
  const res = await call(h, 'GET', `/v1/webhook_deliveries/${id}`, { key });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** Every delivery of the merchant matching the filter, walking all pages. */
export async function allDeliveries(h: Harness, key: string, filter: Record<string, string> = {}): Promise<Json[]> {
  const out: Json[] = [];
  let after: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ ...filter, limit: '100', ...(after ? { starting_after: after } : {}) });
    const res = await call(h, 'GET', `/v1/webhook_deliveries?${q}`, { key });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    out.push(...(res.body.data as Json[]));
    if (!res.body.has_more) return out;
    after = out[out.length - 1]!.id as string;
  }
}

/** Waits until the endpoint has a delivery of the event in one of the given statuses. */
export async function waitForDelivery(h: Harness, key: string, endpointId: string, eventId: string, statuses: string[], timeoutMs = 20_000): Promise<Json> {
  return waitFor(
    async () => {
      const res = await call(h, 'GET', `/v1/webhook_deliveries?endpoint_id=${endpointId}&event_id=${eventId}`, { key });
      const d = (res.body.data as Json[]).find((x) => statuses.includes(x.status as string));
      return d;
    },
    timeoutMs,
    `a ${statuses.join('/')} delivery of ${eventId} to ${endpointId}`,
  );
}

/**
 * The deliveries matching `filter` once there are `count` of them and none is still pending. A
 * receiver sees a request before its outcome is written (outcomes are group-committed after the
 * answer), so a test that waited on the receiver waits here before it reads delivery statuses.
 */
export async function finishedDeliveries(h: Harness, key: string, filter: Record<string, string>, count: number, timeoutMs = 15_000): Promise<Json[]> {
  return waitFor(
    async () => {
      const all = await allDeliveries(h, key, filter);
      return all.length === count && all.every((d) => d.status !== 'pending') ? all : undefined;
    },
    timeoutMs,
    `${count} finished deliveries matching ${JSON.stringify(filter)}`,
  );
}

export async function attemptsOf(h: Harness, key: string, deliveryId: string): Promise<Json[]> {
  const res = await call(h, 'GET', `/v1/webhook_deliveries/${deliveryId}/attempts`, { key });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data as Json[];
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A `switchyard worker` child process on the harness's database, once it says it is running. */
export async function startWorkerProcess(h: Harness, env: Record<string, string> = {}): Promise<Spawned> {
  const w = spawnCli(['worker'], {
    DATABASE_URL: h.database.url,
    SWITCHYARD_ADMIN_KEY: ADMIN_KEY,
    SWITCHYARD_DATA_DIR: '.test-data/webhook-workers',
    MOCK_PROVIDER_URL: h.providerUrl,
    LOG_LEVEL: 'warn',
    ...env,
  });
  let exited = false;
  void w.exited.then(() => (exited = true));
  await waitFor(
    async () => {
      if (exited) throw new Error(`worker exited during start:\n${w.output()}`);
      return w.output().includes('Switchyard worker running.') ? true : undefined;
    },
    60_000,
    'the worker process to start',
  );
  return w;
}

/** SIGKILL, and wait for the exit. */
export async function kill(w: Spawned): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return;
  w.child.kill('SIGKILL');
  await w.exited;
}
