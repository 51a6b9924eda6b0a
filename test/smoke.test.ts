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

describe('OpenAPI', () => {
  it('is generated from the validating schemas and served with a UI', async () => {
    const doc = await call(h, 'GET', '/docs/json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    const create = doc.body.paths['/v1/payments'].post;
    const schema = create.requestBody.content['application/json'].schema;
    expect(schema.required).toEqual(expect.arrayContaining(['amount', 'currency', 'payment_method', 'payment_method_token', 'reference_id', 'customer']));
    expect(schema.properties.amount.type).toBe('integer');
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/payments/{id}/capture', '/v1/payments/{id}/refunds', '/v1/admin/merchants']));
    const ui = await fetch(`${h.url}/docs`);
    expect(ui.status).toBeLessThan(400);
  });
});
