import { z } from 'zod';

// Loose objects: like a real provider, unknown fields are ignored rather than refused.
const amount = z.number().int().positive().max(1e12);
const currency = z.string().regex(/^[A-Z]{3}$/, 'an upper-case ISO-4217 code');

export const chargeBody = z.object({
  amount,
  currency,
  token: z.string().min(1).max(255),
  capture: z.boolean(),
  payment_id: z.string().min(1).max(255),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const amountBody = z
  .object({ amount: amount.optional(), currency: currency.optional() })
  .nullish()
  .transform((b) => b ?? {});

export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
}
