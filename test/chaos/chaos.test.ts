/**
 * The chaos harness's short profile in CI (SPEC §16 fault tests): two api and two worker
 * processes on real PostgreSQL, the mock provider injecting faults, processes SIGKILLed and
 * restarted under load, then every invariant checked (docs/reliability.md). The harness runs in a
 * child process, exactly as `npm run chaos -- --profile short` does, on a fresh database of the
 * test server; it must exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChaosResult } from '../../chaos/harness.js';
import type { RunArgs } from '../../chaos/run.js';
import { getAdminDatabaseUrl } from '../support/db.js';
import { waitFor } from '../support/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// Fixed, so CI replays the same choices; `npm run chaos -- --profile short --seed 20240601` does too.
const SEED: RunArgs['seed'] = 20_240_601;
let outDir: string | undefined;
let child: ChildProcess | undefined;

afterAll(async () => {
  // A timed-out test must not leave the harness running: SIGTERM makes it clean up and exit.
  if (child && child.exitCode === null && child.signalCode === null) {
    const c = child;
    c.kill('SIGTERM');
    await waitFor(async () => (c.exitCode !== null || c.signalCode !== null ? true : undefined), 20_000, 'the chaos run to exit').catch(() => undefined);
  }
  if (outDir) await rm(outDir, { recursive: true, force: true });
}, 30_000);

describe('chaos (short profile)', () => {
  it('keeps every invariant while processes are killed under load', async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'switchyard-chaos-test-'));
    let output = '';
    child = spawn(process.execPath, ['--import', 'tsx', 'chaos/run.ts', '--profile', 'short', '--seed', String(SEED), '--out', outDir], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: getAdminDatabaseUrl() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const running = child;
    const code = await new Promise<number | null>((resolve) => running.once('exit', (c) => resolve(c)));
    // The summary (with any violation, its examples and the payments' stories) goes to the log.
    console.log(code === 0 ? output.slice(output.indexOf('Switchyard chaos')) : output);
    expect(code, output.slice(-6000)).toBe(0);

    const files = await readdir(outDir);
    expect(files).toHaveLength(1);
    const result = JSON.parse(await readFile(path.join(outDir, files[0]!), 'utf8')) as ChaosResult;
    expect(result.violations).toBe(0);
    expect(result.kills.length).toBeGreaterThanOrEqual(3);
    expect(result.counts.payments).toBeGreaterThanOrEqual(300);
    expect(result.quiet.settled).toBe(true);
  }, 200_000);
});
