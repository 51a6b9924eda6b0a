import { LRUCache } from 'lru-cache';
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

/** Partial update; each limit group given replaces that group. This process's key cache forgets the merchant. */
export async function updateMerchant(db: Queryable, id: string, patch: Partial<MerchantInput>, keyCache?: ApiKeyCache): Promise<Merchant> {
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
  keyCache?.forgetMerchant(id);
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

/** Revokes a key; this process's key cache forgets it at once (other processes within their TTL). */
export async function revokeApiKey(db: Queryable, id: string, keyCache?: ApiKeyCache): Promise<{ id: string; object: 'api_key'; revoked: true }> {
  const r = await db.query('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1', [id]);
  keyCache?.forgetKey(id);
  if (r.rowCount === 0) throw new AppError('RESOURCE_NOT_FOUND', `No such API key: '${id}'.`);
  return { id, object: 'api_key', revoked: true };
}

export interface ApiKeyCacheOptions {
  /** How long a looked-up key is trusted without asking the database; 0 turns the cache off. */
  ttlSeconds: number;
  maxEntries?: number;
  /** Milliseconds; tests pass their own clock. */
  now?: () => number;
}

interface CachedKey {
  keyId: string;
  merchant: Merchant;
}

/**
 * Merchants of recently used API keys, by the key's keyed hash (never the clear key), for a few
 * seconds (ADR 0010). Only keys that were found are kept: an unknown key is asked for every time,
 * so a key created a moment ago works at once. Revoking a key or updating a merchant through this
 * process forgets the entries at once; other processes notice within `ttlSeconds`.
 * The cached merchant object is shared by the requests it serves: read it, never change it.
 */
export class ApiKeyCache {
  private readonly entries: LRUCache<string, CachedKey> | null;
  /** Bumped by every forget, so a lookup that raced one does not put back what was just forgotten. */
  private generation = 0;

  constructor(opts: ApiKeyCacheOptions) {
    // lru-cache drops an entry once ttl has passed (an entry is kept while age <= ttl, hence − 1 ms).
    this.entries =
      opts.ttlSeconds > 0
        ? new LRUCache<string, CachedKey>({ max: opts.maxEntries ?? 10_000, ttl: opts.ttlSeconds * 1000 - 1, ttlResolution: 0, perf: { now: opts.now ?? Date.now } })
        : null;
  }

  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** Taken before a database lookup and handed to set(), which ignores results older than a forget. */
  mark(): number {
    return this.generation;
  }

  get(hash: string): Merchant | undefined {
    return this.entries?.get(hash)?.merchant;
  }

  set(hash: string, keyId: string, merchant: Merchant, mark: number): void {
    if (!this.entries || mark !== this.generation) return;
    this.entries.set(hash, { keyId, merchant });
  }

  forgetKey(keyId: string): void {
    this.forget((e) => e.keyId === keyId);
  }

  forgetMerchant(merchantId: string): void {
    this.forget((e) => e.merchant.id === merchantId);
  }

  private forget(match: (e: CachedKey) => boolean): void {
    this.generation += 1;
    if (!this.entries) return;
    for (const [hash, e] of this.entries.entries()) if (match(e)) this.entries.delete(hash);
  }
}

/**
 * The merchant owning an active key, or null. The lookup is by keyed hash, then compared in constant
 * time. With a cache, a key found in the last few seconds is answered from memory by its hash.
 */
export async function merchantForKey(db: Queryable, hasher: KeyHasher, clear: string, cache?: ApiKeyCache): Promise<Merchant | null> {
  const hash = hasher.hash(clear);
  const cacheKey = cache ? hash.toString('base64') : '';
  const cached = cache?.get(cacheKey);
  if (cached) return cached;
  const mark = cache?.mark() ?? 0;
  const r = await db.query<MerchantRow & { key_hash: Buffer; key_id: string }>(
    `SELECT m.*, k.key_hash, k.id AS key_id FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [hash],
  );
  const row = r.rows[0];
  if (!row || !hasher.equal(row.key_hash, hash)) return null;
  const { key_hash: _ignored, key_id: keyId, ...rest } = row;
  const merchant = toMerchant(rest);
  cache?.set(cacheKey, keyId, merchant, mark);
  return merchant;
}
