import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AppError } from '../../src/domain/errors.js';
import {
  DEFAULT_LIMITS,
  KYC_STATUSES,
  ONBOARDING_STATUSES,
  PAYMENT_METHODS,
  resolveLimits,
  type KycStatus,
  type Merchant,
  type MerchantLimits,
  type OnboardingStatus,
  type PaymentMethod,
} from '../../src/domain/merchant.js';
import { businessLayer, complianceLayer, entityLayer, riskLayer, type PaymentDraft } from '../../src/domain/validation.js';

function merchant(over: Partial<Merchant> = {}): Merchant {
  return {
    id: 'mer_test',
    name: 'Test Store',
    onboarding_status: 'activated',
    kyc_status: 'approved',
    kyc_tier: 'tier_2',
    rate_tier: 'gold',
    limits: resolveLimits(undefined),
    connectors: [{ name: 'mock', weight: 100 }],
    created_at: '2025-01-01T00:00:00.000Z',
    updated_at: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

const draft = (amount: number, payment_method: PaymentMethod = 'card', currency = 'INR'): PaymentDraft => ({
  amount,
  currency,
  payment_method,
});

describe('merchant defaults (SPEC §3, §5)', () => {
  it('DEFAULT_LIMITS carries the SPEC defaults', () => {
    expect(DEFAULT_LIMITS.velocity).toEqual({ max_payments: 10, window_seconds: 300 });
    expect(DEFAULT_LIMITS.payment_methods.upi?.max).toBe(20_000_000); // INR 200,000.00
    expect(DEFAULT_LIMITS.payment_methods.card?.min).toBe(10_000); // INR 100.00
    expect(DEFAULT_LIMITS.payment_methods.netbanking).toBeDefined();
    expect(DEFAULT_LIMITS.payment_methods.netbanking?.max).toBeUndefined();
    expect(DEFAULT_LIMITS.compliance_reporting_threshold.INR).toBe(20_000_000);
  });

  it('resolveLimits(undefined) and resolveLimits({}) give the defaults', () => {
    expect(resolveLimits(undefined)).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({})).toEqual(DEFAULT_LIMITS);
  });

  it('resolveLimits replaces a given group whole and keeps the others at their default', () => {
    const r = resolveLimits({ velocity: { max_payments: 3, window_seconds: 60 }, payment_methods: { upi: { max: 500 } } });
    expect(r.velocity).toEqual({ max_payments: 3, window_seconds: 60 });
    // Replaced whole: card is no longer enabled.
    expect(r.payment_methods).toEqual({ upi: { max: 500 } });
    expect(r.payment_methods.card).toBeUndefined();
    expect(r.compliance_reporting_threshold).toEqual(DEFAULT_LIMITS.compliance_reporting_threshold);
    expect(r.kyc_tier_limits).toEqual(DEFAULT_LIMITS.kyc_tier_limits);
  });
});

describe('entity layer (SPEC §5 layer 2)', () => {
  it('passes an activated merchant with approved or verified KYC', () => {
    expect(entityLayer(merchant({ kyc_status: 'approved' }))).toBeNull();
    expect(entityLayer(merchant({ kyc_status: 'verified' }))).toBeNull();
  });

  it.each(ONBOARDING_STATUSES.filter((s) => s !== 'activated'))(
    'refuses onboarding status %s with ENTITY_MERCHANT_INACTIVE',
    (onboarding_status) => {
      const err = entityLayer(merchant({ onboarding_status }));
      expect(err).toBeInstanceOf(AppError);
      expect(err?.code).toBe('ENTITY_MERCHANT_INACTIVE');
      expect(err?.layer).toBe('entity');
    },
  );

  it.each(['pending', 'not_started', 'rejected'] as const)('refuses KYC status %s with ENTITY_MERCHANT_KYC_INVALID', (kyc_status) => {
    const err = entityLayer(merchant({ kyc_status }));
    expect(err).toBeInstanceOf(AppError);
    expect(err?.code).toBe('ENTITY_MERCHANT_KYC_INVALID');
    expect(err?.layer).toBe('entity');
  });

  it('checks onboarding before KYC', () => {
    expect(entityLayer(merchant({ onboarding_status: 'suspended', kyc_status: 'rejected' }))?.code).toBe('ENTITY_MERCHANT_INACTIVE');
  });

  it('the full (onboarding × kyc) grid: only activated + verified/approved passes', () => {
    for (const onboarding_status of ONBOARDING_STATUSES) {
      for (const kyc_status of KYC_STATUSES) {
        const code = entityLayer(merchant({ onboarding_status, kyc_status }))?.code ?? null;
        const expected =
          onboarding_status !== 'activated'
            ? 'ENTITY_MERCHANT_INACTIVE'
            : kyc_status === 'verified' || kyc_status === 'approved'
              ? null
              : 'ENTITY_MERCHANT_KYC_INVALID';
        expect(code, `${onboarding_status}/${kyc_status}`).toBe(expected);
      }
    }
  });
});

describe('business layer (SPEC §5 layer 3)', () => {
  const m = merchant();

  it('UPI above 20,000,000 minor is RULE_AMOUNT_ABOVE_MAX; exactly at the max passes', () => {
    const err = businessLayer(m, draft(20_000_001, 'upi'));
    expect(err?.code).toBe('RULE_AMOUNT_ABOVE_MAX');
    expect(err?.layer).toBe('business');
    expect(err?.details).toMatchObject({ max: 20_000_000, payment_method: 'upi' });
    expect(businessLayer(m, draft(20_000_000, 'upi'))).toBeNull();
    expect(businessLayer(m, draft(1, 'upi'))).toBeNull();
  });

  it('card below 10,000 minor is RULE_AMOUNT_BELOW_MIN; exactly at the min passes', () => {
    const err = businessLayer(m, draft(9_999, 'card'));
    expect(err?.code).toBe('RULE_AMOUNT_BELOW_MIN');
    expect(err?.layer).toBe('business');
    expect(err?.details).toMatchObject({ min: 10_000, payment_method: 'card' });
    expect(businessLayer(m, draft(10_000, 'card'))).toBeNull();
    expect(businessLayer(m, draft(1, 'card'))?.code).toBe('RULE_AMOUNT_BELOW_MIN');
  });

  it('netbanking has no max by default (up to the KYC tier limit)', () => {
    expect(businessLayer(m, draft(100_000_000, 'netbanking'))).toBeNull();
    expect(businessLayer(merchant({ kyc_tier: 'tier_unlimited' }), draft(1_000_000_000_000, 'netbanking'))).toBeNull();
  });

  it('a method that is not enabled is RULE_INVALID_PAYMENT_METHOD', () => {
    const only = merchant({ limits: resolveLimits({ payment_methods: { card: { min: 100 } } }) });
    for (const method of ['upi', 'netbanking', 'wallet'] as const) {
      const err = businessLayer(only, draft(50_000, method));
      expect(err?.code, method).toBe('RULE_INVALID_PAYMENT_METHOD');
      expect(err?.layer).toBe('business');
    }
    expect(businessLayer(only, draft(50_000, 'card'))).toBeNull();
  });

  it('the KYC tier per-payment limit is RULE_KYC_TIER_LIMIT; exactly at the limit passes', () => {
    const t1 = merchant({ kyc_tier: 'tier_1' }); // INR 10,000,000
    const err = businessLayer(t1, draft(10_000_001, 'card'));
    expect(err?.code).toBe('RULE_KYC_TIER_LIMIT');
    expect(err?.details).toMatchObject({ max: 10_000_000, kyc_tier: 'tier_1' });
    expect(businessLayer(t1, draft(10_000_000, 'card'))).toBeNull();
    // tier_2 allows it.
    expect(businessLayer(merchant({ kyc_tier: 'tier_2' }), draft(10_000_001, 'card'))).toBeNull();
    expect(businessLayer(merchant({ kyc_tier: 'tier_2' }), draft(100_000_001, 'card'))?.code).toBe('RULE_KYC_TIER_LIMIT');
  });

  it('the KYC tier limit applies per currency: a currency the tier does not list is unlimited', () => {
    expect(businessLayer(merchant({ kyc_tier: 'tier_1' }), draft(10_000_001, 'card', 'USD'))).toBeNull();
  });

  it('the per-method max is checked before the KYC tier limit', () => {
    expect(businessLayer(merchant({ kyc_tier: 'tier_1' }), draft(20_000_001, 'upi'))?.code).toBe('RULE_AMOUNT_ABOVE_MAX');
  });

  it('per-merchant method limits replace the defaults, boundaries inclusive', () => {
    const custom = merchant({ limits: resolveLimits({ payment_methods: { wallet: { min: 500, max: 5_000 } } }) });
    expect(businessLayer(custom, draft(499, 'wallet'))?.code).toBe('RULE_AMOUNT_BELOW_MIN');
    expect(businessLayer(custom, draft(500, 'wallet'))).toBeNull();
    expect(businessLayer(custom, draft(5_000, 'wallet'))).toBeNull();
    expect(businessLayer(custom, draft(5_001, 'wallet'))?.code).toBe('RULE_AMOUNT_ABOVE_MAX');
  });
});

describe('compliance layer (SPEC §5 layer 4)', () => {
  const m = merchant();

  it('flags AMOUNT_REPORTING at and above the INR threshold, nothing below', () => {
    expect(complianceLayer(m, draft(20_000_000, 'netbanking'))).toEqual(['AMOUNT_REPORTING']);
    expect(complianceLayer(m, draft(20_000_001, 'netbanking'))).toEqual(['AMOUNT_REPORTING']);
    expect(complianceLayer(m, draft(19_999_999, 'netbanking'))).toEqual([]);
    expect(complianceLayer(m, draft(1, 'card'))).toEqual([]);
  });

  it('a currency without a threshold is never flagged', () => {
    expect(complianceLayer(m, draft(1_000_000_000_000, 'card', 'USD'))).toEqual([]);
    expect(complianceLayer(m, draft(20_000_000, 'card', 'JPY'))).toEqual([]);
  });

  it('per-currency thresholds are configurable', () => {
    const custom = merchant({ limits: resolveLimits({ compliance_reporting_threshold: { USD: 1_000_000 } }) });
    expect(complianceLayer(custom, draft(1_000_000, 'card', 'USD'))).toEqual(['AMOUNT_REPORTING']);
    expect(complianceLayer(custom, draft(999_999, 'card', 'USD'))).toEqual([]);
    // The INR default was replaced whole by the per-merchant group.
    expect(complianceLayer(custom, draft(50_000_000, 'card', 'INR'))).toEqual([]);
  });
});

describe('risk layer (SPEC §5 layer 5)', () => {
  const m = merchant(); // 10 per 300 s

  it('passes while the count is below the max', () => {
    for (let n = 0; n < 10; n++) expect(riskLayer(m, n, 12), `count ${n}`).toBeNull();
  });

  it('refuses at and above the max with RISK_VELOCITY_EXCEEDED and a Retry-After', () => {
    const err = riskLayer(m, 10, 100);
    expect(err?.code).toBe('RISK_VELOCITY_EXCEEDED');
    expect(err?.layer).toBe('risk');
    expect(err?.retryAfter).toBe(200); // the oldest leaves the window in 300 - 100 s
    expect(riskLayer(m, 11, 299.2)?.retryAfter).toBe(1);
    expect(riskLayer(m, 50, 0)?.retryAfter).toBe(300);
    expect(riskLayer(m, 10, 100.5)?.retryAfter).toBe(200); // rounded up, never early
  });

  it('property: count < max passes; count >= max refuses with 1 <= retryAfter <= window_seconds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000 }),
        fc.integer({ min: 1, max: 86_400 * 31 }),
        fc.integer({ min: 0, max: 2_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (max_payments, window_seconds, count, frac) => {
          const mm = merchant({ limits: resolveLimits({ velocity: { max_payments, window_seconds } }) });
          const oldestAge = frac * window_seconds;
          const err = riskLayer(mm, count, oldestAge);
          if (count < max_payments) {
            expect(err).toBeNull();
            return;
          }
          expect(err?.code).toBe('RISK_VELOCITY_EXCEEDED');
          const ra = err!.retryAfter!;
          expect(Number.isInteger(ra)).toBe(true);
          expect(ra).toBeGreaterThanOrEqual(1);
          expect(ra).toBeLessThanOrEqual(window_seconds);
          // Never tells the client to come back before the oldest payment leaves the window.
          expect(ra).toBeGreaterThanOrEqual(window_seconds - oldestAge);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('validation pipeline: properties', () => {
  const methodLimitsArb = fc.record(
    { min: fc.integer({ min: 1, max: 1_000_000 }), max: fc.integer({ min: 1, max: 100_000_000 }) },
    { requiredKeys: [] },
  );
  const limitsArb: fc.Arbitrary<MerchantLimits> = fc.oneof(
    fc.constant(resolveLimits(undefined)),
    fc
      .record({
        payment_methods: fc.dictionary(fc.constantFrom(...PAYMENT_METHODS), methodLimitsArb, { maxKeys: 4 }),
        compliance_reporting_threshold: fc.dictionary(fc.constantFrom('INR', 'USD', 'JPY'), fc.integer({ min: 1, max: 100_000_000 }), {
          maxKeys: 3,
        }),
        kyc_tier_limits: fc.dictionary(
          fc.constantFrom('tier_1', 'tier_2', 'tier_3'),
          fc.dictionary(fc.constantFrom('INR', 'USD', 'JPY'), fc.integer({ min: 1, max: 100_000_000 }), { maxKeys: 3 }),
          { maxKeys: 3 },
        ),
      })
      .map((l) => resolveLimits(l)),
  );
  const merchantArb: fc.Arbitrary<Merchant> = fc
    .record({
      onboarding_status: fc.constantFrom<OnboardingStatus>(...ONBOARDING_STATUSES),
      kyc_status: fc.constantFrom<KycStatus>(...KYC_STATUSES),
      kyc_tier: fc.constantFrom('tier_1', 'tier_2', 'tier_3'),
      limits: limitsArb,
    })
    .map((r) => merchant(r));
  const amountArb = fc.oneof(
    fc.integer({ min: 1, max: 1_000_000_000_000 }),
    fc.integer({ min: 1, max: 200_000_000 }),
    fc.constantFrom(1, 9_999, 10_000, 10_001, 10_000_000, 10_000_001, 19_999_999, 20_000_000, 20_000_001, 100_000_000, 100_000_001),
  );
  const draftArb: fc.Arbitrary<PaymentDraft> = fc.record({
    amount: amountArb,
    currency: fc.constantFrom('INR', 'USD', 'JPY'),
    payment_method: fc.constantFrom<PaymentMethod>(...PAYMENT_METHODS),
  });

  /** Independent oracle of layers 2 and 3. */
  function expectedCode(m: Merchant, d: PaymentDraft): string | null {
    if (m.onboarding_status !== 'activated') return 'ENTITY_MERCHANT_INACTIVE';
    if (!['verified', 'approved'].includes(m.kyc_status)) return 'ENTITY_MERCHANT_KYC_INVALID';
    const ml = m.limits.payment_methods[d.payment_method];
    if (ml === undefined) return 'RULE_INVALID_PAYMENT_METHOD';
    if (ml.max !== undefined && d.amount > ml.max) return 'RULE_AMOUNT_ABOVE_MAX';
    if (ml.min !== undefined && d.amount < ml.min) return 'RULE_AMOUNT_BELOW_MIN';
    const tier = Object.hasOwn(m.limits.kyc_tier_limits, m.kyc_tier) ? m.limits.kyc_tier_limits[m.kyc_tier] : undefined;
    const cap = tier && Object.hasOwn(tier, d.currency) ? tier[d.currency] : undefined;
    if (cap !== undefined && d.amount > cap) return 'RULE_KYC_TIER_LIMIT';
    return null;
  }

  const summary = (e: AppError | null) => (e ? { code: e.code, layer: e.layer, details: e.details, message: e.message } : null);

  it('entity ?? business is deterministic and agrees with an independent oracle', () => {
    fc.assert(
      fc.property(merchantArb, draftArb, (m, d) => {
        const first = entityLayer(m) ?? businessLayer(m, d);
        const again = entityLayer(structuredClone(m)) ?? businessLayer(structuredClone(m), { ...d });
        expect(summary(again)).toEqual(summary(first));
        expect(first?.code ?? null).toBe(expectedCode(m, d));
        if (first) expect(['entity', 'business']).toContain(first.layer);
      }),
      { numRuns: 1_000 },
    );
  });

  it('whenever the business layer passes, the amount lies within the method [min, max] and the tier limit', () => {
    fc.assert(
      fc.property(merchantArb, draftArb, (m, d) => {
        if (businessLayer(m, d) !== null) return;
        const ml = m.limits.payment_methods[d.payment_method];
        expect(ml).toBeDefined();
        expect(d.amount).toBeGreaterThanOrEqual(ml!.min ?? 1);
        expect(d.amount).toBeLessThanOrEqual(ml!.max ?? Number.MAX_SAFE_INTEGER);
        const cap = m.limits.kyc_tier_limits[m.kyc_tier]?.[d.currency];
        if (cap !== undefined) expect(d.amount).toBeLessThanOrEqual(cap);
      }),
      { numRuns: 1_000 },
    );
  });

  it('compliance never throws and flags exactly the amounts at or above the currency threshold', () => {
    fc.assert(
      fc.property(merchantArb, draftArb, (m, d) => {
        let flags: string[] = ['not called'];
        expect(() => {
          flags = complianceLayer(m, d);
        }).not.toThrow();
        const threshold = m.limits.compliance_reporting_threshold[d.currency];
        expect(flags).toEqual(threshold !== undefined && d.amount >= threshold ? ['AMOUNT_REPORTING'] : []);
      }),
      { numRuns: 1_000 },
    );
  });

  it('compliance never throws for any currency code, even odd ones', () => {
    fc.assert(
      fc.property(merchantArb, fc.string({ maxLength: 12 }), fc.integer({ min: 1, max: 1_000_000_000_000 }), (m, currency, amount) => {
        const flags = complianceLayer(m, { amount, currency, payment_method: 'card' });
        expect(Array.isArray(flags)).toBe(true);
        expect(flags.every((f) => f === 'AMOUNT_REPORTING')).toBe(true);
      }),
    );
  });
});
