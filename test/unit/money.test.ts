import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CURRENCY_EXPONENTS, MAX_AMOUNT, formatMinor, isSupportedCurrency, isValidAmount } from '../../src/domain/money.js';

describe('isValidAmount (SPEC §2)', () => {
  it('accepts 1 and 10^12, the bounds', () => {
    expect(MAX_AMOUNT).toBe(10 ** 12);
    expect(isValidAmount(1)).toBe(true);
    expect(isValidAmount(10 ** 12)).toBe(true);
    expect(isValidAmount(150_000)).toBe(true);
  });

  it.each([
    ['zero', 0],
    ['negative zero', -0],
    ['negative', -1],
    ['large negative', -(10 ** 12)],
    ['above 10^12', 10 ** 12 + 1],
    ['far above', 10 ** 15],
    ['float', 1.5],
    ['tiny float', 0.01],
    ['float near an integer', 100.0000001],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['unsafe integer', 2 ** 53],
  ])('refuses %s', (_label, value) => {
    expect(isValidAmount(value)).toBe(false);
  });

  it.each([
    ['numeric string', '100'],
    ['empty string', ''],
    ['null', null],
    ['undefined', undefined],
    ['boolean', true],
    ['bigint', 100n],
    ['array', [100]],
    ['object', { amount: 100 }],
    ['boxed number', Object(100)],
  ])('refuses a non-number: %s', (_label, value) => {
    expect(isValidAmount(value)).toBe(false);
  });

  it('property: accepts exactly the integers in [1, 10^12]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 ** 12 }), (n) => {
        expect(isValidAmount(n)).toBe(true);
      }),
    );
    fc.assert(
      fc.property(fc.double(), (x) => {
        const expected = Number.isInteger(x) && x >= 1 && x <= 10 ** 12;
        expect(isValidAmount(x)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });
});

describe('currencies', () => {
  it('has at least INR 2, USD 2, EUR 2, JPY 0, KWD 3', () => {
    expect(CURRENCY_EXPONENTS).toMatchObject({ INR: 2, USD: 2, EUR: 2, JPY: 0, KWD: 3 });
  });

  it('isSupportedCurrency accepts listed upper-case codes only, not inherited properties', () => {
    expect(isSupportedCurrency('INR')).toBe(true);
    expect(isSupportedCurrency('JPY')).toBe(true);
    expect(isSupportedCurrency('inr')).toBe(false);
    expect(isSupportedCurrency('XYZ')).toBe(false);
    expect(isSupportedCurrency('toString')).toBe(false);
    expect(isSupportedCurrency('__proto__')).toBe(false);
    expect(isSupportedCurrency('')).toBe(false);
  });
});

describe('formatMinor', () => {
  it('formats INR with two decimals', () => {
    expect(formatMinor(20_000_000, 'INR')).toBe('200000.00');
    expect(formatMinor(10_000, 'INR')).toBe('100.00');
    expect(formatMinor(12_345, 'INR')).toBe('123.45');
    expect(formatMinor(5, 'INR')).toBe('0.05');
    expect(formatMinor(50, 'INR')).toBe('0.50');
    expect(formatMinor(1, 'INR')).toBe('0.01');
  });

  it('formats JPY with no decimals', () => {
    expect(formatMinor(500, 'JPY')).toBe('500');
    expect(formatMinor(1, 'JPY')).toBe('1');
    expect(formatMinor(1_000_000, 'JPY')).toBe('1000000');
  });

  it('formats KWD with three decimals', () => {
    expect(formatMinor(1, 'KWD')).toBe('0.001');
    expect(formatMinor(1_234, 'KWD')).toBe('1.234');
    expect(formatMinor(10_500, 'KWD')).toBe('10.500');
  });

  it('formats an unlisted currency with two decimals', () => {
    expect(formatMinor(12_345, 'XYZ')).toBe('123.45');
  });

  it('property: the formatted value parses back to the amount for every listed currency', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 ** 12 }), fc.constantFrom(...Object.keys(CURRENCY_EXPONENTS)), (amount, currency) => {
        const exp = CURRENCY_EXPONENTS[currency]!;
        const s = formatMinor(amount, currency);
        if (exp === 0) expect(s).toMatch(/^\d+$/);
        else expect(s).toMatch(new RegExp(`^\\d+\\.\\d{${exp}}$`));
        expect(s.replace('.', '').replace(/^0+(?=\d)/, '')).toBe(String(amount));
        expect(s).not.toMatch(/^0\d/);
      }),
    );
  });
});
