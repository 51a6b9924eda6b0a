/** The worker's own small HTTP server: /metrics and the health endpoints, nothing else. */
import { createServer } from 'node:http';
import type { Db } from '../db/pool.js';
import { migrationsApplied } from '../db/migrate.js';
import { registry } from '../observability/metrics.js';

export interface OpsServer {
  draining: boolean;
  close(): Promise<void>;
}

export async function startOpsServer(host: string, port: number, db: Db): Promise<OpsServer> {
  const state: OpsServer = {
    draining: false,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    void (async () => {
      if (req.url === '/metrics') return send(200, await registry.metrics(), registry.contentType);
      if (req.url === '/health/liveness' || req.url === '/health/startup') return send(200, '{"status":"ok"}');
      if (req.url === '/health/readiness') {
        const database = await db.query('SELECT 1').then(() => true, () => false);
        const migrations = database && (await migrationsApplied(db));
        const ready = database && migrations && !state.draining;
        return send(ready ? 200 : 503, JSON.stringify({ status: ready ? 'ok' : 'unavailable', checks: { database, migrations, draining: state.draining } }));
      }
      send(404, '{"error":{"code":"ROUTE_NOT_FOUND","message":"Not found."}}');
    })().catch(() => send(500, '{"error":{"code":"INTERNAL_ERROR","message":"Something went wrong."}}'));
  });
  await new Promise<void>((resolve) => server.listen(port, host, () => resolve()));
  return state;
}
