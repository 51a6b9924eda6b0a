import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalJson, fingerprint, isValidIdempotencyKey } from '../../src/idempotency/fingerprint.js';

/** Rebuilds a JSON value with every object's keys in a permuted order, at every depth. */
function permuteKeys(value: unknown, pick: (n: number) => number): unknown {
  if (Array.isArray(value)) return value.map((v) => permuteKeys(v, pick));
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    const out: [string, unknown][] = [];
    while (entries.length > 0) {
      const [e] = entries.splice(pick(entries.length), 1);
      out.push([e![0], permuteKeys(e![1], pick)]);
    }
    // Object.fromEntries defines own properties, so a "__proto__" key stays a plain key.
    return Object.fromEntries(out);
  }
  return value;
}

const jsonArb = fc.jsonValue({ maxDepth: 4 });

describe('canonicalJson', () => {
  it('sorts keys at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}');
  });

  it('is key-order independent at every depth (examples)', () => {
    const a = { amount: 100, customer: { email: 'x@y.z', phone: '+911234567890' }, metadata: { k2: 'v', k1: 'w' } };
    const b = { metadata: { k1: 'w', k2: 'v' }, customer: { phone: '+911234567890', email: 'x@y.z' }, amount: 100 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
  });

  it('property: key-order independent at every depth', () => {
    fc.assert(
      fc.property(jsonArb, fc.infiniteStream(fc.nat()), (value, stream) => {
        const it = stream[Symbol.iterator]();
        const pick = (n: number) => it.next().value! % n;
        expect(canonicalJson(permuteKeys(value, pick))).toBe(canonicalJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it('property: it is valid JSON that parses back to an equal value', () => {
    fc.assert(
      fc.property(jsonArb, (value) => {
        const text = canonicalJson(value);
        // JSON.stringify canonicalises -0 to 0 the same way, so compare through it.
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  it('distinguishes different values', () => {
    const distinct = [
      { a: 1 },
      { a: '1' },
      { a: 2 },
      { a: true },
      { a: null },
      { a: [] },
      { a: {} },
      { a: [1] },
      { a: { b: 1 } },
      { b: 1 },
      { a: 1, b: 1 },
      [1, 2],
      [2, 1],
      '1',
      1,
      null,
      '',
      { 'a,b': 1 },
      { a: 'b', c: 'd' },
      { a: 'b,"c":"d"' },
    ];
    const seen = new Map<string, unknown>();
    for (const v of distinct) {
      const c = canonicalJson(v);
      expect(seen.has(c), `${JSON.stringify(v)} collides with ${JSON.stringify(seen.get(c))}`).toBe(false);
      seen.set(c, v);
    }
  });

  it('property: values with different canonical JSON are different values (injective up to JSON equality)', () => {
    fc.assert(
      fc.property(jsonArb, jsonArb, (a, b) => {
        const same = canonicalJson(a) === canonicalJson(b);
        expect(same).toBe(canonicalJson(JSON.parse(JSON.stringify(a))) === canonicalJson(JSON.parse(JSON.stringify(b))));
        if (same) expect(JSON.parse(canonicalJson(a))).toEqual(JSON.parse(canonicalJson(b)));
      }),
    );
  });

  it('drops undefined object members like JSON.stringify does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson([undefined])).toBe('[null]');
  });
});

describe('fingerprint', () => {
  const body = { amount: 1000, currency: 'INR', customer: { email: 'a@b.co', phone: '+911234567890' } };
  const fp = fingerprint('POST', '/v1/payments', body);

  it('is a SHA-256 digest in base64url (no long digit runs a card-number scan could mistake)', () => {
    expect(fp).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(fp, 'base64url')).toHaveLength(32);
  });

  it('is stable across key order and method case', () => {
    const reordered = { customer: { phone: '+911234567890', email: 'a@b.co' }, currency: 'INR', amount: 1000 };
    expect(fingerprint('POST', '/v1/payments', reordered)).toBe(fp);
    expect(fingerprint('post', '/v1/payments', body)).toBe(fp);
  });

  it('differs for a different method, path or body', () => {
    expect(fingerprint('PUT', '/v1/payments', body)).not.toBe(fp);
    expect(fingerprint('POST', '/v1/payments/pay_1/confirm', body)).not.toBe(fp);
    expect(fingerprint('POST', '/v1/refunds', body)).not.toBe(fp);
    expect(fingerprint('POST', '/v1/payments', { ...body, amount: 1001 })).not.toBe(fp);
    expect(fingerprint('POST', '/v1/payments', { ...body, amount: '1000' })).not.toBe(fp);
    expect(fingerprint('POST', '/v1/payments', { ...body, customer: { ...body.customer, email: 'a@b.com' } })).not.toBe(fp);
    expect(fingerprint('POST', '/v1/payments', undefined)).not.toBe(fp);
  });

  it('property: different canonical bodies give different fingerprints; equal ones equal fingerprints', () => {
    fc.assert(
      fc.property(jsonArb, jsonArb, fc.constantFrom('/v1/payments', '/v1/payments/pay_1/capture'), (a, b, path) => {
        const same = canonicalJson(a) === canonicalJson(b);
        expect(fingerprint('POST', path, a) === fingerprint('POST', path, b)).toBe(same);
      }),
    );
  });

  it('property: different paths give different fingerprints for the same body', () => {
    const pathArb = fc.stringMatching(/^\/[a-z0-9_/]{0,30}$/);
    fc.assert(
      fc.property(pathArb, pathArb, jsonArb, (p1, p2, b) => {
        fc.pre(p1 !== p2);
        expect(fingerprint('POST', p1, b)).not.toBe(fingerprint('POST', p2, b));
      }),
    );
  });
});

describe('isValidIdempotencyKey (SPEC §9)', () => {
  it('accepts 1 to 255 printable ASCII characters', () => {
    expect(isValidIdempotencyKey('a')).toBe(true);
    expect(isValidIdempotencyKey('order_1001-attempt-1')).toBe(true);
    expect(isValidIdempotencyKey('x'.repeat(255))).toBe(true);
    expect(isValidIdempotencyKey('~!@#$%^&*()_+{}|:"<>?`-=[]\\;\',./ A1')).toBe(true);
    expect(isValidIdempotencyKey('123e4567-e89b-12d3-a456-426614174000')).toBe(true);
  });

  it('refuses the empty key and a 256-character key', () => {
    expect(isValidIdempotencyKey('')).toBe(false);
    expect(isValidIdempotencyKey('x'.repeat(256))).toBe(false);
    expect(isValidIdempotencyKey('x'.repeat(1000))).toBe(false);
  });

  it.each([
    ['NUL', 'key\u0000'],
    ['tab', 'key\tvalue'],
    ['line feed', 'key\n'],
    ['leading line feed', '\nkey'],
    ['carriage return', 'key\r\nX-Injected: 1'],
    ['unit separator', 'key\u001f'],
    ['DEL', 'key\u007f'],
    ['C1 control', 'key\u0085'],
  ])('refuses a control character: %s', (_label, key) => {
    expect(isValidIdempotencyKey(key)).toBe(false);
  });

  it.each([
    ['é', 'clé'],
    ['non-breaking space', 'key\u00a0x'],
    ['CJK', '键'],
    ['emoji', 'key-😀'],
    ['full-width letters', 'ｋｅｙ'],
  ])('refuses non-ASCII: %s', (_label, key) => {
    expect(isValidIdempotencyKey(key)).toBe(false);
  });

  it('property: accepts exactly strings of 1–255 characters in 0x20–0x7e', () => {
    const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 255 });
    fc.assert(
      fc.property(printable, (k) => {
        expect(isValidIdempotencyKey(k)).toBe(true);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (k) => {
        const expected = k.length >= 1 && k.length <= 255 && [...k].every((ch) => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) <= 0x7e);
        expect(isValidIdempotencyKey(k)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });
});
