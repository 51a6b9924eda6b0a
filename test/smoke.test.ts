import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, paymentBody, startHarness, type Harness, type MerchantWithKey } from './support/harness.js';

let h: Harness;
let m: MerchantWithKey;
beforeAll(async () => {
  h = await startHarness();
  m = await createMerchant(h);
});
afterAll(async () => h?.close());

describe('smoke', () => {
  it('creates a payment through the mock provider', async () => {
    const res = await call(h, 'POST', '/v1/payments', { key: m.key, body: paymentBody() });
    expect(res.status).toBe(201);
    expect(res.body.status).toBe('captured');
    const ledger = await call(h, 'GET', `/v1/admin/connectors/mock/ledger?payment_id=${res.body.id}`, { key: 'test_admin_key_0123456789abcdef' });
    expect(ledger.body.data.filter((r: { operation: string }) => r.operation === 'authorize')).toHaveLength(1);
  });
});
