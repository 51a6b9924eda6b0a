/**
 * PostgreSQL cannot store every JavaScript string: text refuses U+0000 and jsonb refuses both
 * U+0000 and an unpaired UTF-16 surrogate (which JSON can carry as a "\ud800" escape). Such input
 * is refused as a schema error up front, instead of failing as an internal error at the INSERT.
 */
import { findInJson, type JsonCheck } from './json-walk.js';

// A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// eslint-disable-next-line no-control-regex -- NUL is exactly what is looked for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNSTORABLE_GLOBAL = new RegExp(UNSTORABLE.source, 'g');

export function isStorableText(text: string): boolean {
  return !UNSTORABLE.test(text);
}

const STORABLE_CHECK: JsonCheck = {
  text: (s) => !isStorableText(s),
  // The key itself is the bad text; it is named by a printable stand-in.
  keyLabel: (k) => k.replace(UNSTORABLE_GLOBAL, '\ufffd'),
};

/** The path of the first string or object key PostgreSQL could not store, or null. */
export function findUnstorableText(value: unknown): string[] | null {
  return findInJson(value, STORABLE_CHECK);
}
