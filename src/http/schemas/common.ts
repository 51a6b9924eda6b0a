import { z } from 'zod';
import { CURRENCY_EXPONENTS, MAX_AMOUNT } from '../../domain/money.js';

export const amountSchema = z
  .number()
  .int()
  .positive()
  .max(MAX_AMOUNT)
  .describe('Integer amount in minor units (paise, cents), 1 to 10^12.');

export const currencySchema = z
  .enum(Object.keys(CURRENCY_EXPONENTS) as [string, ...string[]])
  .describe('ISO-4217 code, upper case, from the configured list.');

export const idParam = (prefix: string) =>
  z.object({ id: z.string().min(1).max(64).describe(`The object id (${prefix}_…)`) }).strict();

export const listLimit = z.coerce.number().int().min(1).max(100).default(10);

export const errorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    layer: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
    request_id: z.string(),
  }),
});
