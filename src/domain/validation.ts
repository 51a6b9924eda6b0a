/**
 * Layers 2–5 of the payment validation pipeline (SPEC §5). Layer 1 (schema) is the zod request
 * schema plus the card-number scan at the HTTP edge. Each layer is a pure function returning an
 * AppError or null; the pipeline stops at the first failure.
 */
import { AppError } from './errors.js';
import type { Merchant, PaymentMethod } from './merchant.js';
import { formatMinor } from './money.js';

export interface PaymentDraft {
  amount: number;
  currency: string;
  payment_method: PaymentMethod;
}

export function entityLayer(merchant: Merchant): AppError | null {
  if (merchant.onboarding_status !== 'activated') {
    return new AppError('ENTITY_MERCHANT_INACTIVE', `Merchant onboarding status is '${merchant.onboarding_status}'; only activated merchants may transact.`, { layer: 'entity' });
  }
  if (merchant.kyc_status !== 'verified' && merchant.kyc_status !== 'approved') {
    return new AppError('ENTITY_MERCHANT_KYC_INVALID', `Merchant KYC status is '${merchant.kyc_status}'; it must be approved.`, { layer: 'entity' });
  }
  return null;
}

export function businessLayer(merchant: Merchant, draft: PaymentDraft): AppError | null {
  const limits = merchant.limits.payment_methods[draft.payment_method];
  if (!limits) {
    return new AppError('RULE_INVALID_PAYMENT_METHOD', `Payment method '${draft.payment_method}' is not enabled for this merchant.`, { layer: 'business' });
  }
  if (limits.max !== undefined && draft.amount > limits.max) {
    return new AppError('RULE_AMOUNT_ABOVE_MAX', `Amount ${formatMinor(draft.amount, draft.currency)} ${draft.currency} is above the ${draft.payment_method} maximum of ${formatMinor(limits.max, draft.currency)}.`, {
      layer: 'business',
      details: { max: limits.max, payment_method: draft.payment_method },
    });
  }
  if (limits.min !== undefined && draft.amount < limits.min) {
    return new AppError('RULE_AMOUNT_BELOW_MIN', `Amount ${formatMinor(draft.amount, draft.currency)} ${draft.currency} is below the ${draft.payment_method} minimum of ${formatMinor(limits.min, draft.currency)}.`, {
      layer: 'business',
      details: { min: limits.min, payment_method: draft.payment_method },
    });
  }
  const tierLimit = merchant.limits.kyc_tier_limits[merchant.kyc_tier]?.[draft.currency];
  if (tierLimit !== undefined && draft.amount > tierLimit) {
    return new AppError('RULE_KYC_TIER_LIMIT', `Amount is above the per-payment limit of KYC tier '${merchant.kyc_tier}'.`, {
      layer: 'business',
      details: { max: tierLimit, kyc_tier: merchant.kyc_tier },
    });
  }
  return null;
}

/** Never rejects: returns the compliance flags to record on the payment. */
export function complianceLayer(merchant: Merchant, draft: PaymentDraft): string[] {
  const threshold = merchant.limits.compliance_reporting_threshold[draft.currency];
  return threshold !== undefined && draft.amount >= threshold ? ['AMOUNT_REPORTING'] : [];
}

/**
 * Sliding-window velocity: `recentCount` payments were created in the last window, the oldest of
 * them at `oldestAgeSeconds` ago; Retry-After is when that one leaves the window.
 */
export function riskLayer(merchant: Merchant, recentCount: number, oldestAgeSeconds: number): AppError | null {
  const { max_payments, window_seconds } = merchant.limits.velocity;
  if (recentCount < max_payments) return null;
  const age = Number.isFinite(oldestAgeSeconds) ? Math.max(0, oldestAgeSeconds) : 0;
  const retryAfter = Math.min(window_seconds, Math.max(1, Math.ceil(window_seconds - age)));
  return new AppError('RISK_VELOCITY_EXCEEDED', `More than ${max_payments} payments in ${window_seconds} seconds.`, {
    layer: 'risk',
    retryAfter,
    details: { max_payments, window_seconds },
  });
}
