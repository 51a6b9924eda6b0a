/** Merchant attributes and their defaults (SPEC §3, §5). Pure data, no I/O. */
export const ONBOARDING_STATUSES = ['activated', 'review', 'pending', 'suspended'] as const;
export const KYC_STATUSES = ['verified', 'approved', 'pending', 'not_started', 'rejected'] as const;
export const RATE_TIERS = ['platinum', 'gold', 'silver', 'bronze'] as const;
export const PAYMENT_METHODS = ['card', 'upi', 'netbanking', 'wallet'] as const;

export type OnboardingStatus = (typeof ONBOARDING_STATUSES)[number];
export type KycStatus = (typeof KYC_STATUSES)[number];
export type RateTier = (typeof RATE_TIERS)[number];
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];

export interface MethodLimits {
  min?: number;
  max?: number;
}

export interface MerchantLimits {
  velocity: { max_payments: number; window_seconds: number };
  /** The keys are the enabled methods. */
  payment_methods: Partial<Record<PaymentMethod, MethodLimits>>;
  /** Per currency: amounts at or above are flagged AMOUNT_REPORTING. */
  compliance_reporting_threshold: Record<string, number>;
  /** Per KYC tier, per currency: the largest single payment. A tier not listed has no limit. */
  kyc_tier_limits: Record<string, Record<string, number>>;
}

export type PartialMerchantLimits = Partial<MerchantLimits>;

export interface ConnectorRoute {
  name: string;
  weight: number;
}

export interface Merchant {
  id: string;
  name: string;
  onboarding_status: OnboardingStatus;
  kyc_status: KycStatus;
  kyc_tier: string;
  rate_tier: RateTier;
  limits: MerchantLimits;
  connectors: ConnectorRoute[];
  created_at: string;
  updated_at: string;
}

export const DEFAULT_LIMITS: MerchantLimits = {
  velocity: { max_payments: 10, window_seconds: 300 },
  payment_methods: { card: { min: 10_000 }, upi: { max: 20_000_000 }, netbanking: {}, wallet: {} },
  compliance_reporting_threshold: { INR: 20_000_000 },
  kyc_tier_limits: {
    tier_1: { INR: 10_000_000 },
    tier_2: { INR: 100_000_000 },
  },
};

export const DEFAULT_CONNECTORS: ConnectorRoute[] = [{ name: 'mock', weight: 100 }];

/** Fills omitted limit groups with the defaults; a given group replaces the default whole. */
export function resolveLimits(input: Partial<MerchantLimits> | undefined): MerchantLimits {
  return {
    velocity: input?.velocity ?? DEFAULT_LIMITS.velocity,
    payment_methods: input?.payment_methods ?? DEFAULT_LIMITS.payment_methods,
    compliance_reporting_threshold: input?.compliance_reporting_threshold ?? DEFAULT_LIMITS.compliance_reporting_threshold,
    kyc_tier_limits: input?.kyc_tier_limits ?? DEFAULT_LIMITS.kyc_tier_limits,
  };
}
