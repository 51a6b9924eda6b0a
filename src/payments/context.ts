import type { Db } from '../db/pool.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { Merchant } from '../domain/merchant.js';
import type { Actor } from './types.js';

export interface PaymentDeps {
  db: Db;
  connectors: ConnectorRegistry;
  /**
   * How long whoever acts on an open attempt holds it: longer than the slowest connector call, so
   * no one concludes "the provider has no record" while a request for it may still arrive there.
   */
  claimSeconds: number;
}

/** Who is asking, and through which request. */
export interface OperationContext {
  merchant: Merchant;
  requestId: string;
}

/**
 * Set when a request resumes after its predecessor with the same idempotency key died: the
 * resource it had committed, if any. `record` stores the recovery point in the caller's transaction.
 */
export interface Recovery {
  /** True when an earlier request with this key died or gave up before finishing. */
  resumed: boolean;
  resourceId: string | null;
  record(tx: import('../db/pool.js').Tx, resourceId: string): Promise<void>;
}

export function merchantActor(ctx: OperationContext): Actor {
  return { actor: `merchant:${ctx.merchant.id}`, requestId: ctx.requestId };
}
