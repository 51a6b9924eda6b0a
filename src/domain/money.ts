/** Money is integer minor units; currencies come from a configured list with their exponent. */
export const CURRENCY_EXPONENTS: Readonly<Record<string, number>> = {
  INR: 2,
  USD: 2,
  EUR: 2,
  GBP: 2,
  SGD: 2,
  AED: 2,
  JPY: 0,
  KRW: 0,
  KWD: 3,
  BHD: 3,
};

export const MAX_AMOUNT = 1_000_000_000_000; // 10^12 minor units

export function isSupportedCurrency(code: string): boolean {
  return Object.prototype.hasOwnProperty.call(CURRENCY_EXPONENTS, code);
}

export function isValidAmount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_AMOUNT;
}

/** 20000000 INR → "200000.00"; for messages only, never for arithmetic. */
export function formatMinor(amount: number, currency: string): string {
  const exp = CURRENCY_EXPONENTS[currency] ?? 2;
  if (exp === 0) return String(amount);
  const s = String(amount).padStart(exp + 1, '0');
  return `${s.slice(0, -exp)}.${s.slice(-exp)}`;
}
