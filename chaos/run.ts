/**
 * npm run chaos -- [--profile short|default] [--seed N] [--flows N] [--kills N] [--concurrency N]
 *                  [--out DIR] [--keep]
 *
 * Runs Switchyard under seeded chaos (see docs/reliability.md), checks the invariants, prints a
 * summary and writes chaos/results/<date>-<seed>.json. Exit code: 0 when every invariant held,
 * 1 on any violation, 2 when the run could not do what its profile asks, 3 when it overran its
 * time budget or failed.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChaos, stopAndExit, type ChaosResult } from './harness.js';
import { killAllChildren, ROOT } from './processes.js';
import { PROFILES, type Profile } from './profiles.js';

export interface RunArgs {
  profile: Profile;
  seed: number;
  outDir: string;
  keep: boolean;
}

export function parseArgs(argv: string[]): RunArgs {
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const [name, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (inline !== undefined) flags[name] = inline;
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags[name] = argv[++i]!;
    else flags[name] = 'true';
  }
  const known = new Set(['profile', 'seed', 'flows', 'kills', 'concurrency', 'out', 'keep']);
  for (const k of Object.keys(flags)) if (!known.has(k)) throw new Error(`unknown flag --${k}`);
  const base = PROFILES[flags.profile ?? 'default'];
  if (!base) throw new Error(`--profile: one of ${Object.keys(PROFILES).join(', ')}`);
  const int = (name: string, min: number): number | undefined => {
    if (flags[name] === undefined) return undefined;
    const n = Number(flags[name]);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
    return n;
  };
  const profile: Profile = { ...base };
  profile.flows = int('flows', 1) ?? profile.flows;
  profile.kills = int('kills', 0) ?? profile.kills;
  profile.concurrency = int('concurrency', 1) ?? profile.concurrency;
  return {
    profile,
    seed: int('seed', 0) ?? Math.floor(Date.now() % 1_000_000),
    outDir: path.resolve(flags.out ?? path.join(ROOT, 'chaos', 'results')),
    keep: flags.keep === 'true',
  };
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

export function summary(r: ChaosResult): string {
  const lines: string[] = [];
  const row = (k: string, v: string | number) => lines.push(`  ${pad(k, 34)} ${v}`);
  lines.push('', `Switchyard chaos — profile ${r.profile}, seed ${r.seed}`, '');
  row('duration', `${(r.durationMs / 1000).toFixed(1)} s (${Object.entries(r.phases).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')})`);
  row('flows', `${r.flows.done} done of ${r.flows.planned}`);
  row('payments', r.counts.payments ?? 0);
  row('refunds', r.counts.refunds ?? 0);
  row('http requests (with retries)', r.client.requests);
  row('logical operations', r.client.operations);
  row('idempotent replays', r.client.replays);
  row('retries: connection / in use / 5xx', `${r.client.connectionErrors} / ${r.client.inUse} / ${r.client.serverErrors}`);
  row('operations given up', r.client.gaveUp);
  row('kills', `${r.kills.length} (${r.kills.map((k) => k.target).join(', ')})`);
  for (const [k, v] of Object.entries(r.faults)) row(`fault: ${k}`, v);
  row('events / deliveries / receipts', `${r.counts.events} / ${r.counts.webhook_deliveries} / ${r.counts.webhook_receipts}`);
  row('quiet period', `${r.quiet.settled ? 'settled' : 'NOT SETTLED'} in ${(r.quiet.waitedMs / 1000).toFixed(1)} s`);
  const statuses = Object.entries(r.counts).filter(([k]) => k.startsWith('payments_')).map(([k, v]) => `${k.slice(9)} ${v}`);
  row('final payment statuses', statuses.join(', '));
  lines.push('', '  invariant                          violations');
  for (const c of r.checks) lines.push(`  ${pad(c.name, 34)} ${c.violations === 0 ? '0' : `${c.violations}  ✗`}`);
  for (const c of r.checks.filter((x) => x.violations > 0)) {
    lines.push('', `  ✗ ${c.name}: ${c.description}`);
    for (const e of c.examples) lines.push(`      ${JSON.stringify(e)}`);
  }
  for (const story of r.stories) {
    const p = (story.payment ?? {}) as Record<string, unknown>;
    lines.push('', `  story of ${String(p.id)} (flow ${String(p.flow)}, ${String(p.payment_method_token)}, ${String(p.status)}):`);
    for (const [k, v] of Object.entries(story)) {
      if (k === 'payment' || !Array.isArray(v) || v.length === 0) continue;
      lines.push(`    ${k}:`);
      for (const row of v) lines.push(`      ${JSON.stringify(row)}`);
    }
  }
  for (const w of r.warnings) {
    lines.push('', `  ! ${w.name}: ${w.count}`);
    for (const e of w.examples.slice(0, 5)) lines.push(`      ${typeof e === 'string' ? e.split('\n').slice(0, 4).join(' | ') : JSON.stringify(e)}`);
  }
  for (const i of r.incomplete) lines.push('', `  ! incomplete run: ${i}`);
  lines.push('', `  ${r.violations === 0 && r.incomplete.length === 0 ? 'PASS' : 'FAIL'}: ${r.violations} violation(s)`, `  results: ${r.resultsFile ?? '(not written)'}`, '');
  return lines.join('\n');
}

async function main(): Promise<number> {
  let args: RunArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n`);
    return 2;
  }
  const log = (line: string) => process.stdout.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  // Whatever happens, no child outlives the harness.
  process.on('exit', killAllChildren);
  // Ctrl-C reaches npm, tsx and this process at once (and tsx relays it): one signal or several,
  // the run stops the same orderly way: children killed, database stopped, temporary files gone.
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: killing every process, stopping the database`);
    void stopAndExit(130);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  log(`profile ${args.profile.name} (${args.profile.flows} flows, ${args.profile.kills} kills, concurrency ${args.profile.concurrency}), seed ${args.seed}`);
  try {
    const result = await runChaos({ seed: args.seed, profile: args.profile, outDir: args.outDir, keep: args.keep, log });
    process.stdout.write(summary(result));
    if (interrupted) return 130;
    if (result.violations > 0) return 1;
    return result.incomplete.length > 0 ? 2 : 0;
  } catch (err) {
    process.stderr.write(`chaos: the run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return interrupted ? 130 : 3;
  }
}

// Only when run as a program (the test imports its types).
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  void main().then((code) => process.exit(code));
}
