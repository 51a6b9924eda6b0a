/**
 * Raw card numbers must never enter the system: any value holding a Luhn-valid 13–19 digit
 * number (digits possibly separated by spaces or dashes) is refused before it is stored or logged.
 */
import { findInJson, type JsonCheck } from './json-walk.js';

// A run of digits with optional single space/dash separators, bounded by non-digits.
const CANDIDATE = /(?<!\d)\d(?:[ -]?\d){3,}(?!\d)/g;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * A run may hold a card number next to other digits ("4111 1111 1111 1111 123", "since 2024
 * 4111111111111111"): every stretch of whole separator-delimited groups is checked, not only the run.
 */
function containsPan(text: string): boolean {
  for (const match of text.matchAll(CANDIDATE)) {
    const groups = match[0].split(/[ -]/);
    for (let i = 0; i < groups.length; i++) {
      let digits = '';
      for (let j = i; j < groups.length; j++) {
        digits += groups[j];
        if (digits.length > 19) break;
        if (digits.length >= 13 && luhnValid(digits)) return true;
      }
    }
  }
  return false;
}

const CARD_CHECK: JsonCheck = {
  text: containsPan,
  number: (n) => Number.isInteger(n) && containsPan(String(n)),
  // A key holding a card number is named without its digits: the error must not echo them.
  keyLabel: (k) => k.replace(CANDIDATE, '[card number]'),
};

/** The JSON path of the first value or key that looks like a card number, or null. */
export function findCardNumber(value: unknown): string[] | null {
  return findInJson(value, CARD_CHECK);
}
