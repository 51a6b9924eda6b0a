/**
 * isStorableText says exactly which strings PostgreSQL can keep: a string it accepts goes into a
 * text column and a jsonb value and comes back unchanged; a string it refuses would have failed
 * at the INSERT (the 500 that hostile input once found in a webhook endpoint's description).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createPool, type Db } from '../../src/db/pool.js';
import { findUnstorableText, isStorableText } from '../../src/domain/storable-text.js';

let t: TestDatabase;
let db: Db;

beforeAll(async () => {
  t = await createTestDatabase({ migrate: false });
  db = createPool(t.url, 1);
});
afterAll(async () => {
  await db?.end();
  await t?.drop();
});

/** Any UTF-16 sequence, leaning on the code units that matter: NUL and both surrogate halves. */
const codeUnit = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(0, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0x41, 0xe9),
);
const anyText = fc.array(codeUnit, { maxLength: 8 }).map((units) => String.fromCharCode(...units));

async function roundTrips(text: string): Promise<boolean> {
  try {
    const r = await db.query<{ t: string; j: { v: string } }>('SELECT $1::text AS t, $2::jsonb AS j', [text, JSON.stringify({ v: text })]);
    return r.rows[0]!.t === text && r.rows[0]!.j.v === text;
  } catch {
    return false;
  }
}

describe('storable text', () => {
  it('is exactly what PostgreSQL stores and returns unchanged, in text and in jsonb', async () => {
    await fc.assert(
      fc.asyncProperty(anyText, async (text) => {
        expect(await roundTrips(text), JSON.stringify(text)).toBe(isStorableText(text));
      }),
      { numRuns: 500 },
    );
  });

  it('a paired surrogate (an emoji) is fine; NUL and either half alone are not', () => {
    expect(isStorableText('pay \ud83d\ude00')).toBe(true);
    for (const bad of ['\u0000', 'a\u0000b', '\ud800', 'x\udc00', '\ude00\ud83d']) expect(isStorableText(bad), JSON.stringify(bad)).toBe(false);
  });

  it('names the path of the first unstorable value or key', () => {
    expect(findUnstorableText({ a: 'ok', b: ['fine', 'no\u0000'] })).toEqual(['b', '1']);
    expect(findUnstorableText({ meta: { 'k\u0000': 'v' } })).toEqual(['meta', 'k\ufffd']);
    expect(findUnstorableText({ a: 1, b: null, c: [true, 'x'] })).toBeNull();
    expect(findUnstorableText('\ud800')).toEqual([]);
  });
});
