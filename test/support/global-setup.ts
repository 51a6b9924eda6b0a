import type { TestProject } from 'vitest/node';
import { rm } from 'node:fs/promises';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

let embedded: EmbeddedDatabase | undefined;
// One server per run, so two runs on one machine (an editor and a terminal, CI) never share one.
const dataDir = `.test-data/pg-run-${process.pid}`;

/**
 * Tests run on real PostgreSQL: the server named by DATABASE_URL when set, else an embedded one
 * started once for the whole run. Each test file then makes its own database on it.
 */
export async function setup(project: TestProject): Promise<void> {
  let url = process.env.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(dataDir);
    url = embedded.url;
  }
  project.provide('adminDatabaseUrl', url);
}

export async function teardown(): Promise<void> {
  if (!embedded) return;
  await embedded.stop();
  await rm(dataDir, { recursive: true, force: true });
}
