/**
 * The cache of finished idempotent responses over real HTTP (ADR 0010): a replay from the process
 * that finished the request answers from memory, exactly like the database would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createMerchant, startHarness, type Harness } from '../support/harness.js';
import { HIGH_VELOCITY, body } from './helpers.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => h?.close());

describe('cache of finished responses', () => {
  it('replays from memory: 201 answered as 200, the same body; a different body is refused', async () => {
    const m = await createMerchant(h, HIGH_VELOCITY);
    const idem = `hot-${process.pid}-${Date.now().toString(36)}`;
    const b = body();
    const headers = { 'idempotency-key': idem };
    const first = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers });
    expect(first.status).toBe(201);
    // Changed behind the process's back: a replay from this process does not read the row again
    // (a finished key never changes before it expires, so only a test can do this).
    await h.database.db.query(`UPDATE idempotency_keys SET response_body = '{"tampered": true}' WHERE merchant_id = $1 AND key = $2`, [m.id, idem]);
    const replay = await call(h, 'POST', '/v1/payments', { key: m.key, body: b, headers });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(first.body);
    const reused = await call(h, 'POST', '/v1/payments', { key: m.key, body: { ...b, amount: 1234 }, headers });
    expect(reused.status).toBe(409);
    expect(reused.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });
});
