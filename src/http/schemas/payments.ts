import { z } from 'zod';
import { PAYMENT_METHODS } from '../../domain/merchant.js';
import { PAYMENT_STATUSES } from '../../domain/state-machine.js';
import { amountSchema, currencySchema, listLimit } from './common.js';

// E.164-style: a plus, a non-zero country digit, 7–14 more digits.
const PHONE = /^\+[1-9]\d{7,14}$/;

export const createPaymentBody = z
  .object({
    amount: amountSchema,
    currency: currencySchema,
    payment_method: z.enum(PAYMENT_METHODS),
    payment_method_token: z.string().min(1).max(255).describe('An opaque provider token (tok_…); raw card numbers are refused.'),
    reference_id: z.string().min(1).max(255).describe("The merchant's order reference; one live payment per reference."),
    customer: z
      .object({
        email: z.email().max(254),
        phone: z.string().regex(PHONE, 'must be E.164, e.g. +919876543210'),
        name: z.string().min(1).max(200).optional(),
      })
      .strict(),
    capture_method: z.enum(['automatic', 'manual']).optional(),
    confirm: z.boolean().optional(),
    description: z.string().max(1000).optional(),
    metadata: z
      .record(z.string().min(1).max(40), z.string().max(500))
      .refine((m) => Object.keys(m).length <= 50, 'at most 50 keys')
      .refine((m) => !('compliance_flags' in m), 'the key compliance_flags is reserved')
      .optional(),
  })
  .strict();

export const captureBody = z.object({ amount: amountSchema.optional() }).strict();
export const cancelBody = z.object({ reason: z.string().max(500).optional() }).strict();
export const refundBody = z.object({ amount: amountSchema.optional(), reason: z.string().max(500).optional() }).strict();
export const emptyBody = z.object({}).strict();

export const listPaymentsQuery = z
  .object({
    status: z.enum(PAYMENT_STATUSES).optional(),
    reference_id: z.string().min(1).max(255).optional(),
    'created[gte]': z.iso.datetime({ offset: true }).optional(),
    'created[lt]': z.iso.datetime({ offset: true }).optional(),
    limit: listLimit,
    starting_after: z.string().min(1).max(64).optional(),
  })
  .strict();
