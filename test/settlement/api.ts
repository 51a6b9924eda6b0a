/** Where the settlement routes are served in tests: the harness's own API. */
import type { FastifyInstance } from 'fastify';
import type { Harness } from '../support/harness.js';

export interface SettlementApi {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function settlementApi(h: Harness): Promise<SettlementApi> {
  if (!h.app.hasRoute({ method: 'POST', url: '/v1/admin/settlements' })) throw new Error('settlement routes are not registered in src/http/app.ts');
  return { url: h.url, app: h.app, close: async () => undefined };
}
