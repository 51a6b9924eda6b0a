/**
 * The pure parts of merchant webhooks: signing against the reference Standard Webhooks library,
 * the retry schedule and Retry-After, and the response excerpt.
 */
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { generateEndpointSecret, signPayload, webhookHeaders } from '../../src/webhooks/signing.js';
import { DEFAULT_SCHEDULE_SECONDS, nextDelaySeconds, parseRetryAfter, parseSchedule } from '../../src/webhooks/retry-schedule.js';
import { excerptOf } from '../../src/webhooks/deliver.js';
import { matchesAny, matchesFilter } from '../../src/domain/event-filter.js';

describe('signing', () => {
  it('signs exactly as the reference implementation does, and its headers verify there', () => {
    const secret = generateEndpointSecret();
    const body = JSON.stringify({ id: 'evt_1', type: 'payment.captured', data: { object: { amount: 100, note: 'ünïcödé ✓' } } });
    const ts = Math.floor(Date.now() / 1000);
    expect(signPayload(secret, 'evt_1', ts, body)).toBe(new Webhook(secret).sign('evt_1', new Date(ts * 1000), body));
    const headers = webhookHeaders([secret], 'evt_1', ts, body);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it('with several live secrets every one signs, and each verifies on its own', () => {
    const a = generateEndpointSecret();
    const b = generateEndpointSecret();
    const body = '{"id":"evt_2"}';
    const ts = Math.floor(Date.now() / 1000);
    const headers = webhookHeaders([b, a], 'evt_2', ts, body);
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(new Webhook(a).verify(body, headers)).toEqual({ id: 'evt_2' });
    expect(new Webhook(b).verify(body, headers)).toEqual({ id: 'evt_2' });
    expect(() => new Webhook(generateEndpointSecret()).verify(body, headers)).toThrow();
  });

  it('a stale timestamp is refused by the receiver library (replay protection works with our headers)', () => {
    const secret = generateEndpointSecret();
    const ts = Math.floor(Date.now() / 1000) - 3600;
    const headers = webhookHeaders([secret], 'evt_3', ts, '{}');
    expect(() => new Webhook(secret).verify('{}', headers)).toThrow();
  });
});

describe('retry schedule', () => {
  it('the default is immediately, 1 min, 5 min, 15 min, 1 h, 6 h, 24 h, then dead', () => {
    expect(DEFAULT_SCHEDULE_SECONDS).toEqual([0, 60, 300, 900, 3600, 21600, 86400]);
    expect(parseSchedule('0,60,300,900,3600,21600,86400')).toEqual(DEFAULT_SCHEDULE_SECONDS);
    const delays = [1, 2, 3, 4, 5, 6].map((n) => nextDelaySeconds(DEFAULT_SCHEDULE_SECONDS, n));
    expect(delays).toEqual([60, 300, 900, 3600, 21600, 86400]);
    expect(nextDelaySeconds(DEFAULT_SCHEDULE_SECONDS, 7)).toBeNull();
  });

  it('Retry-After only ever lengthens the wait, capped at a day', () => {
    expect(nextDelaySeconds([0, 1, 1], 1, 2)).toBe(2);
    expect(nextDelaySeconds([0, 60], 1, 2)).toBe(60);
    expect(nextDelaySeconds([0, 1], 1, 10_000_000)).toBe(86_400);
    expect(nextDelaySeconds([0, 1], 2, 5)).toBeNull();
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    expect(parseRetryAfter('2', now)).toBe(2);
    expect(parseRetryAfter(' 120 ', now)).toBe(120);
    expect(parseRetryAfter(['7', '9'], now)).toBe(7);
    expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Mon, 31 Dec 2029 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter(undefined, now)).toBeNull();
    expect(parseRetryAfter('soon', now)).toBeNull();
  });

  it('refuses a schedule that is not seconds', () => {
    expect(() => parseSchedule('0,-1')).toThrow();
    expect(() => parseSchedule('0,abc')).toThrow();
  });
});

describe('event filters', () => {
  it('hierarchical wildcards', () => {
    expect(matchesFilter('*', 'refund.created')).toBe(true);
    expect(matchesFilter('payment.*', 'payment.captured')).toBe(true);
    expect(matchesFilter('payment.*', 'refund.created')).toBe(false);
    expect(matchesFilter('payment.*', 'paymentx.captured')).toBe(false);
    expect(matchesFilter('payment.captured', 'payment.captured')).toBe(true);
    expect(matchesFilter('payment.captured', 'payment.canceled')).toBe(false);
    expect(matchesAny(['refund.*', 'payment.captured'], 'payment.captured')).toBe(true);
    expect(matchesAny(['refund.*', 'payment.captured'], 'payment.created')).toBe(false);
  });
});

describe('response excerpt', () => {
  const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

  it('keeps at most 1024 bytes of whole UTF-8 characters', () => {
    expect(excerptOf(Buffer.from('a'.repeat(5000)))).toBe('a'.repeat(1024));
    expect(excerptOf(Buffer.from('short'))).toBe('short');
    const euro = excerptOf(Buffer.from('€'.repeat(1000)));
    expect(euro).toBe('€'.repeat(341));
    expect(bytes(euro)).toBe(1023);
    const emoji = excerptOf(Buffer.from('x' + '😀'.repeat(500)));
    expect(bytes(emoji)).toBeLessThanOrEqual(1024);
    expect(emoji).not.toContain('\uFFFD');
  });

  it('binary bodies become storable text: no NUL, still ≤ 1024 bytes', () => {
    const nul = excerptOf(Buffer.from([0x41, 0x00, 0x42]));
    expect(nul).not.toContain('\u0000');
    expect(nul.startsWith('A')).toBe(true);
    expect(nul.endsWith('B')).toBe(true);
    const junk = excerptOf(Buffer.alloc(4096, 0xff));
    expect(bytes(junk)).toBeLessThanOrEqual(1024);
    expect(junk.length).toBeGreaterThan(0);
    const zeros = excerptOf(Buffer.alloc(4096, 0));
    expect(zeros).not.toContain('\u0000');
    expect(bytes(zeros)).toBeLessThanOrEqual(1024);
  });
});
