/**
 * Shared by the operability tests (SPEC §14, §15): a Prometheus text-format reader, a Redis probe,
 * a tiny webhook receiver on 127.0.0.1, and safe payment bodies.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { ADMIN_KEY, call, paymentBody, type ApiResponse } from '../support/harness.js';
import type { Queryable } from '../../src/db/pool.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

/** The merchant velocity rule raised out of the way of tests about something else. */
export const HIGH_VELOCITY = { limits: { velocity: { max_payments: 100_000, window_seconds: 300 } } };

let refSeq = 0;

/**
 * A merchant order reference with no run of digits (the harness's own embeds Date.now(), 13 digits
 * that are Luhn-valid about one time in ten and then refused as a card number).
 */
export function ref(prefix = 'ops'): string {
  refSeq += 1;
  const letters = (n: number) => n.toString(26).replace(/[0-9]/g, (c) => 'qrstuvwxyz'[Number(c)]!);
  return `${prefix}_${letters(process.pid)}_${randomBytes(5).toString('hex').replace(/\d/g, 'k')}_${letters(refSeq)}`;
}

/** `paymentBody` with a safe reference. */
export function body(overrides: Record<string, unknown> = {}): Json {
  return paymentBody({ reference_id: ref(), ...overrides });
}

const ERROR_KEYS = new Set(['code', 'message', 'layer', 'details', 'request_id']);

/** The documented error shape with this status and code; returns the `error` object. */
export function expectError(res: ApiResponse, status: number, code: string): Json {
  const summary = `${res.status} ${JSON.stringify(res.body)}`;
  expect(res.status, summary).toBe(status);
  expect(res.headers.get('content-type') ?? '', summary).toMatch(/^application\/json/);
  expect(Object.keys(res.body as object), summary).toEqual(['error']);
  const err = res.body.error as Json;
  expect(err.code, summary).toBe(code);
  expect(typeof err.message).toBe('string');
  for (const k of Object.keys(err)) expect(ERROR_KEYS.has(k), `unexpected error key ${k}`).toBe(true);
  expect(err.request_id).toBe(res.headers.get('x-request-id'));
  return err;
}

/** Retry-After as whole seconds, asserted present and within [min, max]. */
export function retryAfter(res: ApiResponse, min: number, max: number): number {
  const v = res.headers.get('retry-after');
  expect(v, `Retry-After on ${res.status} ${JSON.stringify(res.body)}`).toMatch(/^\d+$/);
  const n = Number(v);
  expect(n).toBeGreaterThanOrEqual(min);
  expect(n).toBeLessThanOrEqual(max);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  text: string;
  samples: Sample[];
  /** `# TYPE` of each metric family. */
  types: Map<string, string>;
}

function parseLabels(raw: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(raw); m; m = re.exec(raw)) labels[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  return labels;
}

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/** Parses the Prometheus text exposition format (what prom-client writes). */
export function parseProm(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.push({ name: m[1]!, labels: m[3] ? parseLabels(m[3]) : {}, value: parseValue(m[4]!) });
  }
  return { text, samples, types };
}

export async function scrape(base: { url: string }, path = '/metrics'): Promise<Scrape> {
  const res = await fetch(`${base.url}${path}`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type') ?? '').toMatch(/^text\/plain/);
  return parseProm(await res.text());
}

function matches(s: Sample, name: string, labels: Record<string, string>): boolean {
  return s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
}

/** The samples of `name` whose labels include `labels`. */
export function find(s: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return s.samples.filter((x) => matches(x, name, labels));
}

/** The sum of the matching samples (0 when there are none). */
export function sum(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  return find(s, name, labels).reduce((a, x) => a + x.value, 0);
}

/** How much the matching samples grew between two scrapes. */
export function delta(before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}): number {
  return sum(after, name, labels) - sum(before, name, labels);
}

// ---------------------------------------------------------------------------------------------
// Redis

/** Does something on host:port answer a Redis PING with +PONG? */
export function redisAnswersPing(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      data += d.toString('utf8');
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

/**
 * The Redis to share rate limits through, if there is one on loopback: REDIS_URL when it names a
 * loopback host (these tests never reach anything but 127.0.0.1), else 127.0.0.1:6379 if it answers.
 */
export async function loopbackRedisUrl(): Promise<string | null> {
  // SWITCHYARD_TEST_REDIS=off runs the no-Redis branch on a machine that has one.
  if (process.env.SWITCHYARD_TEST_REDIS === 'off') return null;
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    const u = new URL(fromEnv);
    if (['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && (await redisAnswersPing('127.0.0.1', Number(u.port || 6379)))) {
      return fromEnv.replace('localhost', '127.0.0.1');
    }
  }
  return (await redisAnswersPing('127.0.0.1', 6379)) ? 'redis://127.0.0.1:6379' : null;
}

// ---------------------------------------------------------------------------------------------
// A merchant-webhook receiver

export interface Hook {
  path: string;
  headers: Record<string, string>;
  json: Json;
}

export class HookReceiver {
  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly received: Hook[],
  ) {}

  /** Answers every request with `status(path)`. */
  static async start(status: (path: string) => number = () => 200): Promise<HookReceiver> {
    const received: Hook[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        let json: Json = {};
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
        } catch {
          /* not JSON */
        }
        received.push({ path: req.url ?? '/', headers, json });
        res.writeHead(status(req.url ?? '/'));
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new HookReceiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function setReadOnly(h: { url: string }, enabled: boolean): Promise<void> {
  const res = await call(h, 'PUT', '/v1/admin/read_only', { key: ADMIN_KEY, body: { enabled } });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body).toEqual({ object: 'read_only', enabled });
}

/** Nothing of a refused payment request was stored: no payment with its reference, and its Idempotency-Key is free. */
export async function expectNothingStored(db: Queryable, merchantId: string, referenceId: unknown, idempotencyKey: string): Promise<void> {
  const stored = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments WHERE merchant_id = $1 AND reference_id = $2', [merchantId, referenceId]);
  expect(stored.rows[0]!.n).toBe(0);
  const keys = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [merchantId, idempotencyKey]);
  expect(keys.rows[0]!.n).toBe(0);
}
