import { z } from 'zod';
import { KYC_STATUSES, ONBOARDING_STATUSES, PAYMENT_METHODS, RATE_TIERS } from '../../domain/merchant.js';
import { amountSchema, currencySchema } from './common.js';

const methodLimits = z.object({ min: amountSchema.optional(), max: amountSchema.optional() }).strict();

export const limitsSchema = z
  .object({
    velocity: z.object({ max_payments: z.number().int().min(1).max(1_000_000_000), window_seconds: z.number().int().min(1).max(86_400 * 31) }).strict().optional(),
    payment_methods: z.partialRecord(z.enum(PAYMENT_METHODS), methodLimits).optional(),
    compliance_reporting_threshold: z.partialRecord(currencySchema, amountSchema).optional(),
    kyc_tier_limits: z.record(z.string().min(1).max(40), z.partialRecord(currencySchema, amountSchema)).optional(),
  })
  .strict();

const connectorRoute = z.object({ name: z.string().min(1).max(40), weight: z.number().int().min(0).max(100) }).strict();

export const createMerchantBody = z
  .object({
    name: z.string().min(1).max(200),
    onboarding_status: z.enum(ONBOARDING_STATUSES),
    kyc_status: z.enum(KYC_STATUSES),
    kyc_tier: z.string().min(1).max(40),
    rate_tier: z.enum(RATE_TIERS),
    limits: limitsSchema.optional(),
    connectors: z.array(connectorRoute).min(1).max(10).optional(),
  })
  .strict();

export const updateMerchantBody = createMerchantBody.partial().strict();

export const ledgerQuery = z.object({ payment_id: z.string().min(1).max(64) }).strict();
