import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The mock provider's webhook signature, shaped like Stripe's: `t=<unix seconds>,v1=<hex>`, where
 * v1 is HMAC-SHA256(secret, `${t}.${rawBody}`). Signing the timestamp with the body lets the
 * receiver refuse replays of an old, validly signed delivery.
 */
export const MOCK_SIGNATURE_HEADER = 'mock-signature';

function hmacHex(secret: string, rawBody: Buffer | string, timestampSeconds: number): string {
  return createHmac('sha256', secret)
    .update(`${timestampSeconds}.`)
    .update(rawBody)
    .digest('hex');
}

export function signMockWebhook(secret: string, rawBody: Buffer | string, timestampSeconds: number): string {
  return `t=${timestampSeconds},v1=${hmacHex(secret, rawBody, timestampSeconds)}`;
}

/** False for a missing, malformed, wrongly signed or stale header; never throws. */
export function verifyMockSignature(
  secret: string,
  rawBody: Buffer | string,
  header: string | undefined | null,
  toleranceSeconds = 300,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): boolean {
  if (!header) return false;
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    // Several v1 entries are allowed so a sender can sign with an old and a new secret while rotating.
    else if (key === 'v1' && /^[0-9a-f]{64}$/i.test(value)) candidates.push(value.toLowerCase());
  }
  if (timestamp === undefined || candidates.length === 0) return false;
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, rawBody, timestamp), 'hex');
  let ok = false;
  for (const candidate of candidates) {
    // Every candidate is compared, so timing reveals nothing about which one matched.
    if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) ok = true;
  }
  return ok;
}
