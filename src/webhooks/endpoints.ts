/** Merchant webhook endpoints and their signing secrets. */
import { AppError } from '../domain/errors.js';
import type { Db, Queryable } from '../db/pool.js';
import { withTx } from '../db/pool.js';
import { newId } from '../lib/ids.js';
import { generateEndpointSecret } from './signing.js';
import { urlProblem, type Mode } from './url-policy.js';

export interface EndpointRow {
  id: string;
  merchant_id: string;
  url: string;
  description: string | null;
  enabled_events: string[];
  status: 'enabled' | 'disabled' | 'deleted';
  disabled_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

export function endpointToApi(e: EndpointRow, secret?: string): Record<string, unknown> {
  return {
    id: e.id,
    object: 'webhook_endpoint',
    url: e.url,
    description: e.description,
    enabled_events: e.enabled_events,
    status: e.status,
    disabled_reason: e.disabled_reason,
    created_at: e.created_at.toISOString(),
    updated_at: e.updated_at.toISOString(),
    ...(secret ? { secret } : {}),
  };
}

function checkUrl(url: string, mode: Mode): void {
  const problem = urlProblem(url, mode);
  if (problem) throw new AppError('SCHEMA_INVALID_FIELD', `Invalid field url: ${problem}.`, { layer: 'schema', details: { field: 'url' } });
}

export async function createEndpoint(
  db: Db,
  merchantId: string,
  input: { url: string; enabled_events: string[]; description?: string | undefined },
  mode: Mode,
): Promise<Record<string, unknown>> {
  checkUrl(input.url, mode);
  const secret = generateEndpointSecret();
  return withTx(db, async (tx) => {
    const r = await tx.query<EndpointRow>(
      `INSERT INTO webhook_endpoints (id, merchant_id, url, description, enabled_events) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [newId('we'), merchantId, input.url, input.description ?? null, input.enabled_events],
    );
    const e = r.rows[0]!;
    await tx.query('INSERT INTO webhook_endpoint_secrets (endpoint_id, secret) VALUES ($1, $2)', [e.id, secret]);
    return endpointToApi(e, secret);
  });
}

export async function findEndpoint(q: Queryable, merchantId: string, id: string): Promise<EndpointRow> {
  const r = await q.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND status <> 'deleted'`, [id, merchantId]);
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such webhook endpoint: '${id}'.`);
  return r.rows[0];
}

export async function listEndpoints(q: Queryable, merchantId: string): Promise<{ object: 'list'; data: Record<string, unknown>[]; has_more: false }> {
  const r = await q.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE merchant_id = $1 AND status <> 'deleted' ORDER BY id DESC`, [merchantId]);
  return { object: 'list', data: r.rows.map((e) => endpointToApi(e)), has_more: false };
}

export async function deleteEndpoint(q: Queryable, merchantId: string, id: string): Promise<Record<string, unknown>> {
  const r = await q.query<EndpointRow>(
    `UPDATE webhook_endpoints SET status = 'deleted', updated_at = now() WHERE id = $1 AND merchant_id = $2 AND status <> 'deleted' RETURNING *`,
    [id, merchantId],
  );
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such webhook endpoint: '${id}'.`);
  return { id, object: 'webhook_endpoint', deleted: true };
}

/** Re-enables an endpoint that a 410 Gone (or an operator) disabled. */
export async function enableEndpoint(q: Queryable, merchantId: string, id: string): Promise<Record<string, unknown>> {
  const r = await q.query<EndpointRow>(
    `UPDATE webhook_endpoints SET status = 'enabled', disabled_reason = NULL, updated_at = now()
      WHERE id = $1 AND merchant_id = $2 AND status <> 'deleted' RETURNING *`,
    [id, merchantId],
  );
  if (!r.rows[0]) throw new AppError('RESOURCE_NOT_FOUND', `No such webhook endpoint: '${id}'.`);
  return endpointToApi(r.rows[0]);
}

/**
 * A new secret signs from now on; the old ones keep signing too until the overlap ends, so
 * receivers can switch without dropping a delivery.
 */
export async function rotateSecret(db: Db, merchantId: string, id: string, overlapSeconds: number): Promise<Record<string, unknown>> {
  return withTx(db, async (tx) => {
    const e = await findEndpoint(tx, merchantId, id);
    await tx.query(
      `UPDATE webhook_endpoint_secrets SET expires_at = now() + make_interval(secs => $2)
        WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > now() + make_interval(secs => $2))`,
      [id, overlapSeconds],
    );
    const secret = generateEndpointSecret();
    await tx.query('INSERT INTO webhook_endpoint_secrets (endpoint_id, secret) VALUES ($1, $2)', [id, secret]);
    return endpointToApi(e, secret);
  });
}

export async function disableEndpoint(q: Queryable, id: string, reason: string): Promise<void> {
  await q.query(`UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, updated_at = now() WHERE id = $1 AND status = 'enabled'`, [id, reason]);
}
