import { AppError } from '../domain/errors.js';
import { DEFAULT_CONNECTORS, resolveLimits, type ConnectorRoute, type Merchant, type MerchantLimits } from '../domain/merchant.js';
import type { Db, Queryable } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { generateApiKey, type KeyHasher } from './secrets.js';

interface MerchantRow extends Omit<Merchant, 'created_at' | 'updated_at'> {
  created_at: Date;
  updated_at: Date;
}

function toMerchant(r: MerchantRow): Merchant {
  return { ...r, created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() };
}

export function merchantToApi(m: Merchant): Record<string, unknown> {
  return { object: 'merchant', ...m };
}

export interface MerchantInput {
  name: string;
  onboarding_status: Merchant['onboarding_status'];
  kyc_status: Merchant['kyc_status'];
  kyc_tier: string;
  rate_tier: Merchant['rate_tier'];
  limits?: Partial<MerchantLimits> | undefined;
  connectors?: ConnectorRoute[] | undefined;
}

export async function insertMerchant(db: Queryable, input: MerchantInput): Promise<Merchant> {
  const r = await db.query<MerchantRow>(
    `INSERT INTO merchants (id, name, onboarding_status, kyc_status, kyc_tier, rate_tier, limits, connectors)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
    [
      newId('mer'),
      input.name,
      input.onboarding_status,
      input.kyc_status,
      input.kyc_tier,
      input.rate_tier,
      JSON.stringify(resolveLimits(input.limits)),
      JSON.stringify(input.connectors ?? DEFAULT_CONNECTORS),
    ],
  );
  return toMerchant(r.rows[0]!);
}

export async function getMerchant(db: Queryable, id: string): Promise<Merchant> {
  const r = await db.query<MerchantRow>('SELECT * FROM merchants WHERE id = $1', [id]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such merchant: '${id}'.`);
  return toMerchant(r.rows[0]);
}

/** Partial update; each limit group given replaces that group. */
export async function updateMerchant(db: Queryable, id: string, patch: Partial<MerchantInput>): Promise<Merchant> {
  const current = await getMerchant(db, id);
  const limits = patch.limits ? { ...current.limits, ...patch.limits } : current.limits;
  const r = await db.query<MerchantRow>(
    `UPDATE merchants SET name = $2, onboarding_status = $3, kyc_status = $4, kyc_tier = $5, rate_tier = $6,
            limits = $7, connectors = $8, updated_at = now() WHERE id = $1 RETURNING *`,
    [
      id,
      patch.name ?? current.name,
      patch.onboarding_status ?? current.onboarding_status,
      patch.kyc_status ?? current.kyc_status,
      patch.kyc_tier ?? current.kyc_tier,
      patch.rate_tier ?? current.rate_tier,
      JSON.stringify(limits),
      JSON.stringify(patch.connectors ?? current.connectors),
    ],
  );
  return toMerchant(r.rows[0]!);
}

export interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  merchant_id: string;
  created_at: string;
}

export async function createApiKey(db: Db, hasher: KeyHasher, merchantId: string): Promise<CreatedKey> {
  await getMerchant(db, merchantId);
  const key = generateApiKey();
  const prefix = key.slice(0, 12);
  const r = await db.query<{ id: string; created_at: Date }>(
    'INSERT INTO api_keys (id, merchant_id, prefix, key_hash) VALUES ($1, $2, $3, $4) RETURNING id, created_at',
    [newId('key'), merchantId, prefix, hasher.hash(key)],
  );
  return { id: r.rows[0]!.id, key, prefix, merchant_id: merchantId, created_at: r.rows[0]!.created_at.toISOString() };
}

export async function revokeApiKey(db: Queryable, id: string): Promise<{ id: string; object: 'api_key'; revoked: true }> {
  const r = await db.query('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1', [id]);
  if (r.rowCount === 0) throw new AppError('RESOURCE_NOT_FOUND', `No such API key: '${id}'.`);
  return { id, object: 'api_key', revoked: true };
}

/** The merchant owning an active key, or null. The lookup is by keyed hash, then compared in constant time. */
export async function merchantForKey(db: Queryable, hasher: KeyHasher, clear: string): Promise<Merchant | null> {
  const hash = hasher.hash(clear);
  const r = await db.query<MerchantRow & { key_hash: Buffer }>(
    `SELECT m.*, k.key_hash FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [hash],
  );
  const row = r.rows[0];
  if (!row || !hasher.equal(row.key_hash, hash)) return null;
  const { key_hash: _ignored, ...merchant } = row;
  return toMerchant(merchant);
}
