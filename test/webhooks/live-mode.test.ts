/**
 * Live mode (SPEC §14): webhook URLs must be https and must not resolve to private or loopback
 * addresses — refused at registration, and checked again when each delivery connects (a name that
 * resolves to an internal address, or a row that got past the API, is never sent to).
 */
import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardedLookup, isInternalAddress, urlProblem } from '../../src/webhooks/url-policy.js';
import { generateEndpointSecret } from '../../src/webhooks/signing.js';
import { call, createMerchant, startHarness, waitFor, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY, attemptsOf, createPayment, paymentEvents, registerEndpoint, waitForDelivery } from './helpers.js';

describe('isInternalAddress', () => {
  it.each([
    '0.0.0.0',
    '10.0.0.1',
    '10.255.255.255',
    '100.64.0.1',
    '127.0.0.1',
    '127.8.9.10',
    '169.254.169.254',
    '172.16.0.1',
    '172.31.255.254',
    '192.0.0.8',
    '192.168.0.1',
    '192.168.255.255',
    '198.18.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
  ])('%s is internal', (address) => {
    expect(isInternalAddress(address)).toBe(true);
  });

  it.each(['8.8.8.8', '1.1.1.1', '9.255.255.255', '11.0.0.1', '172.15.255.255', '172.32.0.1', '192.167.1.1', '192.169.0.1', '100.63.255.255', '100.128.0.1', '2606:4700:4700::1111', '2001:db9::1'])(
    '%s is public',
    (address) => {
      expect(isInternalAddress(address)).toBe(false);
    },
  );

  it('anything that is not an IP address counts as internal (fail closed)', () => {
    expect(isInternalAddress('localhost')).toBe(true);
    expect(isInternalAddress('')).toBe(true);
    expect(isInternalAddress('not an ip')).toBe(true);
  });
});

describe('urlProblem', () => {
  it('live mode: https to a public name only; test mode also allows http and loopback', () => {
    expect(urlProblem('https://hooks.example.com/x', 'live')).toBeNull();
    expect(urlProblem('https://93.184.216.34/x', 'live')).toBeNull();
    expect(urlProblem('http://hooks.example.com/x', 'live')).toMatch(/https/);
    for (const u of ['https://localhost/', 'https://app.localhost/', 'https://127.0.0.1/', 'https://[::1]/', 'https://10.0.0.5/', 'https://2130706433/', 'https://0x7f.1/']) {
      expect(urlProblem(u, 'live'), u).not.toBeNull();
    }
    expect(urlProblem('http://127.0.0.1:9/x', 'test')).toBeNull();
    expect(urlProblem('http://localhost/x', 'test')).toBeNull();
    expect(urlProblem('ftp://example.com/x', 'test')).not.toBeNull();
    expect(urlProblem('https://user:pass@example.com/x', 'test')).toMatch(/credentials/);
    expect(urlProblem('/relative', 'test')).not.toBeNull();
  });
});

describe('guardedLookup', () => {
  const resolve = (mode: 'live' | 'test', host: string) =>
    new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((done) => guardedLookup(mode)(host, {}, (err, address) => done({ err, address })));

  it('refuses a name that resolves to loopback in live mode, and resolves it in test mode', async () => {
    const live = await resolve('live', 'localhost');
    expect(live.err?.code).toBe('EADDRNOTAVAIL_POLICY');
    const test = await resolve('test', 'localhost');
    expect(test.err).toBeNull();
    expect(isInternalAddress(String(test.address))).toBe(true);
  });
});

// A TCP server that only counts connections: if a delivery reached it at all, the guard failed.
async function connectionCounter(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((socket) => {
    n += 1;
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { port, connections: () => n, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A host name (not `localhost`) that resolves to an internal address on this machine. */
async function internalHostName(): Promise<string> {
  for (const name of [os.hostname(), 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']) {
    if (urlProblem(`https://${name}/`, 'live') !== null) continue;
    try {
      const addresses = await lookup(name, { all: true });
      if (addresses.length > 0 && addresses.every((a) => isInternalAddress(a.address))) return name;
    } catch {
      /* not resolvable here */
    }
  }
  throw new Error('no host name on this machine resolves to an internal address');
}

describe('live mode end to end', () => {
  let h: Harness;
  let counter: Awaited<ReturnType<typeof connectionCounter>>;

  beforeAll(async () => {
    h = await startHarness({ SWITCHYARD_MODE: 'live', WEBHOOK_RETRY_SCHEDULE: '0,1' }, { worker: true });
    counter = await connectionCounter();
  });
  afterAll(async () => {
    await counter?.close();
    await h?.close();
  });

  it('refuses http, localhost, loopback, private and link-local URLs at registration', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const refused = [
      'http://hooks.example.com/webhooks',
      'https://localhost/webhooks',
      'https://LOCALHOST:8443/webhooks',
      'https://api.localhost/webhooks',
      'https://127.0.0.1/webhooks',
      'https://127.0.0.1:8443/webhooks',
      'https://127.1/webhooks',
      'https://2130706433/webhooks',
      'https://10.0.0.8/webhooks',
      'https://10.200.1.1:443/webhooks',
      'https://172.16.4.2/webhooks',
      'https://192.168.1.20/webhooks',
      'https://169.254.169.254/latest/meta-data',
      'https://100.64.1.1/webhooks',
      'https://0.0.0.0/webhooks',
      'https://[::1]/webhooks',
      'https://[::1]:8443/webhooks',
      'https://[fd00::5]/webhooks',
      'https://[fe80::1]/webhooks',
      'https://[::ffff:127.0.0.1]/webhooks',
      'https://[::ffff:192.168.0.1]/webhooks',
    ];
    for (const url of refused) {
      const res = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url, enabled_events: ['*'] } });
      expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error.code, url).toBe('SCHEMA_INVALID_FIELD');
      expect(res.body.error.details, url).toMatchObject({ field: 'url' });
    }
    expect((await call(h, 'GET', '/v1/webhook_endpoints', { key: m.key })).body.data).toEqual([]);

    const ok = await call(h, 'POST', '/v1/webhook_endpoints', { key: m.key, body: { url: 'https://hooks.example.com/webhooks', enabled_events: ['*'] } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect((await call(h, 'DELETE', `/v1/webhook_endpoints/${ok.body.id}`, { key: m.key })).status).toBe(200);
  });

  it('an endpoint row with a loopback http URL that got past the API is never sent to', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const id = `we_livemode_${Date.now()}`;
    await h.database.db.query(`INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events) VALUES ($1, $2, $3, '{payment.captured}')`, [
      id,
      m.id,
      `http://127.0.0.1:${counter.port}/webhooks`,
    ]);
    await h.database.db.query('INSERT INTO webhook_endpoint_secrets (endpoint_id, secret) VALUES ($1, $2)', [id, generateEndpointSecret()]);
    const before = counter.connections();
    const p = await createPayment(h, m.key);
    const ev = (await paymentEvents(h, m.key, p.id as string)).find((e) => e.type === 'payment.captured')!;
    const d = await waitForDelivery(h, m.key, id, ev.id as string, ['dead', 'succeeded'], 15_000);
    expect(d.status).toBe('dead');
    const attempts = await attemptsOf(h, m.key, d.id as string);
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    for (const a of attempts) {
      expect(a.status_code).toBeNull();
      expect(a.error).toMatch(/https|internal|loopback|private/i);
    }
    expect(d.last_error).toMatch(/https|internal|loopback|private/i);
    expect(counter.connections()).toBe(before);
  });

  it('an https URL whose host name resolves to loopback is accepted at registration but refused when it connects', async () => {
    const name = await internalHostName();
    const m = await createMerchant(h, HIGH_VELOCITY);
    const ep = await registerEndpoint(h, m.key, `https://${name}:${counter.port}/webhooks`, ['payment.captured']);
    const before = counter.connections();
    const p = await createPayment(h, m.key);
    const ev = (await paymentEvents(h, m.key, p.id as string)).find((e) => e.type === 'payment.captured')!;
    const d = await waitForDelivery(h, m.key, ep.id, ev.id as string, ['dead', 'succeeded'], 15_000);
    expect(d.status).toBe('dead');
    const attempts = await attemptsOf(h, m.key, d.id as string);
    expect(attempts).toHaveLength(2);
    for (const a of attempts) {
      expect(a.status_code).toBeNull();
      expect(a.error).toMatch(/internal address/);
    }
    expect(counter.connections()).toBe(before);
    // The refusal is per connection, not a one-off: a manual retry is refused the same way.
    const retried = await call(h, 'POST', `/v1/webhook_deliveries/${d.id}/retry`, { key: m.key, body: {} });
    expect(retried.status).toBe(200);
    await waitFor(async () => ((await attemptsOf(h, m.key, d.id as string)).length === 3 ? true : undefined), 10_000, 'the retried attempt');
    const third = (await attemptsOf(h, m.key, d.id as string))[2]!;
    expect(third.error).toMatch(/internal address/);
    expect(counter.connections()).toBe(before);
  });
});
