import type { Db } from '../db/pool.js';
import { loadKeyHasher } from './secrets.js';
import { createApiKey, insertMerchant } from './store.js';
import type { Merchant } from '../domain/merchant.js';

export interface SeedResult {
  merchant: Merchant;
  key: string;
}

/** A demo merchant that may transact at once, with a fresh API key. */
export async function seedDemoMerchant(db: Db): Promise<SeedResult> {
  const merchant = await insertMerchant(db, {
    name: 'Demo Store',
    onboarding_status: 'activated',
    kyc_status: 'approved',
    kyc_tier: 'tier_2',
    rate_tier: 'gold',
    connectors: [{ name: 'mock', weight: 100 }],
  });
  const key = await createApiKey(db, await loadKeyHasher(db), merchant.id);
  return { merchant, key: key.key };
}

export async function merchantCount(db: Db): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM merchants')).rows[0]!.n;
}

export function tryItCurl(baseUrl: string, key: string): string {
  const body = JSON.stringify({
    amount: 150000,
    currency: 'INR',
    payment_method: 'card',
    payment_method_token: 'tok_success',
    reference_id: 'order_1001',
    customer: { email: 'asha@example.com', phone: '+919876543210' },
  });
  return [
    `curl -s -X POST ${baseUrl}/v1/payments \\`,
    `  -H 'X-Api-Key: ${key}' -H 'Content-Type: application/json' \\`,
    `  -H 'Idempotency-Key: order_1001-attempt-1' \\`,
    `  -d '${body}'`,
  ].join('\n');
}
