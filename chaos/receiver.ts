/**
 * The merchants' webhook receiver, on loopback in the harness process. It records every
 * webhook-id it is sent, verifies the Standard Webhooks signature, and answers as the seed says:
 * mostly 200 at once, sometimes 500, sometimes slowly (within the worker's timeout, or past it).
 * Faults are drawn only for the first two receipts of a webhook-id, so a delivery that keeps being
 * retried is always accepted by its third attempt: an event that never gets a 2xx is then a lost
 * event, not bad luck with the retry schedule.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { unit } from './rng.js';

export interface ReceiverFaults {
  /** Share of first and second receipts answered 500. */
  error: number;
  /** Share answered 200 after `slowMs` (inside the worker's timeout). */
  slow: number;
  slowMs: number;
  /** Share answered 200 after `tooSlowMs`, past the worker's timeout: the worker sees a failure. */
  tooSlow: number;
  tooSlowMs: number;
}

export interface WebhookRecord {
  id: string;
  type: string;
  paymentId: string | null;
  merchantPath: string;
  receipts: number;
  /** Receipts whose 2xx answer was written while the sender was still connected. */
  accepted: number;
  answers: (number | 'too_slow' | 'aborted')[];
  firstAt: number;
  lastAt: number;
}

export class WebhookReceiver {
  readonly records = new Map<string, WebhookRecord>();
  readonly secrets = new Map<string, string>();
  badSignatures: { id: string; path: string }[] = [];
  mismatchedIds: { header: string; body: string }[] = [];
  faults = { error: 0, slow: 0, tooSlow: 0 };
  total = 0;
  private server: Server | null = null;
  private readonly open = new Set<ServerResponse>();
  url = '';

  constructor(
    private readonly seed: number,
    private readonly config: ReceiverFaults,
  ) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Each merchant's endpoint is `${url}/hooks/<name>`; its secret verifies what arrives there. */
  endpointUrl(name: string): string {
    return `${this.url}/hooks/${name}`;
  }

  private verify(path: string, id: string, timestamp: string, signatures: string, body: string): boolean {
    const secret = this.secrets.get(path);
    if (!secret) return false;
    const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
    const expected = Buffer.from(createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64'));
    return signatures.split(' ').some((s) => {
      const [version, mac] = s.split(',');
      if (version !== 'v1' || !mac) return false;
      const got = Buffer.from(mac);
      return got.length === expected.length && timingSafeEqual(got, expected);
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => undefined);
    req.on('end', () => {
      this.total += 1;
      const body = Buffer.concat(chunks).toString('utf8');
      const path = (req.url ?? '').split('?')[0]!;
      const id = String(req.headers['webhook-id'] ?? '');
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        /* recorded as a bad payload below */
      }
      if (json.id !== id) this.mismatchedIds.push({ header: id, body: String(json.id) });
      if (!this.verify(path, id, String(req.headers['webhook-timestamp'] ?? ''), String(req.headers['webhook-signature'] ?? ''), body)) {
        this.badSignatures.push({ id, path });
      }
      const data = (json.data ?? {}) as { object?: { id?: string; payment_id?: string; object?: string } };
      const object = data.object ?? {};
      const paymentId = object.object === 'payment' ? (object.id ?? null) : (object.payment_id ?? null);
      const now = Date.now();
      let rec = this.records.get(id);
      if (!rec) {
        rec = { id, type: String(json.type ?? ''), paymentId, merchantPath: path, receipts: 0, accepted: 0, answers: [], firstAt: now, lastAt: now };
        this.records.set(id, rec);
      }
      rec.receipts += 1;
      rec.lastAt = now;
      const nth = rec.receipts;
      // Stable across runs of one seed: the draw depends on what the event is, not on its random id.
      const draw = nth <= 2 ? unit(this.seed, 'receiver', paymentId ?? id, String(json.type), String(json.sequence ?? ''), nth) : 1;
      const c = this.config;
      const r = rec;
      const answer = (status: number) => {
        if (res.destroyed || req.socket.destroyed) {
          r.answers.push('aborted');
          return;
        }
        this.open.add(res);
        res.on('close', () => this.open.delete(res));
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status === 200 ? 'ok' : 'nope', () => {
          if (status >= 200 && status < 300) r.accepted += 1;
        });
        r.answers.push(status);
      };
      if (draw < c.error) {
        this.faults.error += 1;
        answer(500);
      } else if (draw < c.error + c.slow) {
        this.faults.slow += 1;
        setTimeout(() => answer(200), c.slowMs);
      } else if (draw < c.error + c.slow + c.tooSlow) {
        this.faults.tooSlow += 1;
        setTimeout(() => {
          // The worker gave up on this request already: a late 200 on a dead socket is no delivery.
          if (res.destroyed || req.socket.destroyed) r.answers.push('too_slow');
          else answer(200);
        }, c.tooSlowMs);
      } else {
        answer(200);
      }
    });
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
