/** The markdown report and the pass/fail of each target of the issue. */
import { fmtMs, type LadderResult, type StepResult } from './load.js';
import type { CpuWindow } from './procs.js';
import type { BenchResults } from './main.js';
import type { ProfileSummary } from './profile.js';
import type { StatementSummary } from './db.js';

export interface TargetLine {
  target: string;
  measured: string;
  pass: boolean | null;
}

export function evaluateTargets(r: BenchResults): TargetLine[] {
  const lines: TargetLine[] = [];
  const na = (target: string) => lines.push({ target, measured: 'not measured', pass: null });
  if (r.payments) lines.push({ target: 'confirmed payments ≥ 2,000/s (0 errors, p99 < 50 ms)', measured: `${r.payments.best}/s`, pass: r.payments.best >= 2000 });
  else na('confirmed payments ≥ 2,000/s');
  if (r.payments && r.baseline) {
    const ratio = r.baseline.best > 0 ? r.payments.best / r.baseline.best : 0;
    lines.push({ target: 'ratio to the lean baseline ≥ 0.5', measured: `${ratio.toFixed(2)} (${r.payments.best} / ${r.baseline.best})`, pass: ratio >= 0.5 });
  } else na('ratio to the lean baseline ≥ 0.5');
  if (r.latency) {
    const s = r.latency.result;
    lines.push({ target: `p99 < 50 ms at ${s.offered} payments/s offered`, measured: `p99 ${fmtMs(s.latencyMs.p99)} ms, ${s.errors} errors, achieved ${s.achieved.toFixed(0)}/s`, pass: s.latencyMs.p99 < 50 && s.errors === 0 });
  } else na('p99 < 50 ms at 1,000 payments/s');
  if (r.replays) lines.push({ target: 'idempotent replays ≥ 10,000/s', measured: `${r.replays.best}/s`, pass: r.replays.best >= 10_000 });
  else na('idempotent replays ≥ 10,000/s');
  if (r.webhooks) {
    const t = r.webhooks.throughput;
    lines.push({ target: 'webhook deliveries ≥ 2,000/s', measured: `${t.deliveriesPerSecond.toFixed(0)}/s (${r.webhooks.workers} worker process${r.webhooks.workers === 1 ? '' : 'es'})`, pass: !t.timedOut && t.deliveriesPerSecond >= 2000 });
    const l = r.webhooks.latency;
    lines.push({ target: `commit→received p99 < 100 ms at ${l.offered} events/s`, measured: `p99 ${fmtMs(l.latencyMs.p99)} ms, ${l.missing} missing`, pass: l.latencyMs.p99 < 100 && l.missing === 0 });
  } else {
    na('webhook deliveries ≥ 2,000/s');
    na('commit→received p99 < 100 ms at 500 events/s');
  }
  return lines;
}

const pct = (v: number | undefined) => (v === undefined ? '–' : `${(v * 100).toFixed(0)}%`);

function cpuCell(cpu: CpuWindow | undefined): string {
  if (!cpu) return '';
  const order = ['switchyard', 'provider', 'baseline', 'postgres', 'bench'];
  const keys = [...order.filter((k) => k in cpu.cores), ...Object.keys(cpu.cores).filter((k) => !order.includes(k))];
  const parts = keys.map((k) => `${k} ${pct(cpu.cores[k])}`);
  if (cpu.machineBusy !== null) parts.push(`machine ${pct(cpu.machineBusy)}`);
  return parts.join(', ');
}

function stepRow(s: StepResult, passed: boolean | null, cpu?: CpuWindow, db?: Record<string, number>): string {
  const kinds = Object.entries(s.errorKinds)
    .map(([k, n]) => `${k}×${n}`)
    .join('; ');
  return `| ${s.offered} | ${s.achieved.toFixed(0)} | ${s.errors}${kinds ? ` (${kinds})` : ''} | ${fmtMs(s.latencyMs.p50)} | ${fmtMs(s.latencyMs.p90)} | ${fmtMs(s.latencyMs.p99)} | ${fmtMs(s.latencyMs.max)} | ${passed === null ? '' : passed ? 'pass' : 'FAIL'} | ${db ? db.xact_commit : ''} | ${cpuCell(cpu)} |`;
}

const STEP_HEADER =
  '| offered /s | achieved /s | errors | p50 ms | p90 ms | p99 ms | max ms | step | tx/req | CPU (1 core = 100%) |\n|---:|---:|---|---:|---:|---:|---:|---|---:|---|';

function ladderTable(l: LadderResult): string {
  return [STEP_HEADER, ...l.steps.map((s) => stepRow(s.result, s.passed, s.extra?.cpu as CpuWindow | undefined, s.extra?.db as Record<string, number> | undefined))].join('\n');
}

function statementsTable(st: StatementSummary, unit: string): string {
  return [
    `${st.statements_per_request} statements and ${st.exec_ms_per_request} ms of statement execution per ${unit} (pg_stat_statements; the heaviest by total time):`,
    '',
    `| per ${unit} | mean ms | share of DB time | statement |`,
    '|---:|---:|---:|---|',
    ...st.top.slice(0, 15).map((q) => {
      const total = st.exec_ms_per_request * st.requests;
      return `| ${q.per_request >= 0.1 ? Number(q.per_request.toFixed(2)) : q.per_request.toPrecision(2)} | ${q.mean_ms.toFixed(3)} | ${total > 0 ? `${((q.total_ms / total) * 100).toFixed(0)}%` : '–'} | \`${q.query.replace(/\|/g, '\\|').slice(0, 160)}\` |`;
    }),
  ].join('\n');
}

function profileSection(title: string, p: ProfileSummary, statements: StatementSummary | undefined, unit: string): string {
  const out = [
    `#### ${title}`,
    '',
    `Process busy ${(p.busyMs / 1000).toFixed(1)} s of ${(p.durationMs / 1000).toFixed(1)} s under load (idle ${(p.idleShare * 100).toFixed(0)}%). Shares below are of busy time. Profile: \`${p.file}\`.`,
    '',
    '| area | self |',
    '|---|---:|',
    ...p.areas.slice(0, 15).map((a) => `| ${a.name} | ${pct(a.share)} |`),
    '',
    '| top self time | where | self |',
    '|---|---|---:|',
    ...p.topSelf.slice(0, 20).map((f) => `| \`${f.name}\` | ${f.where} | ${(f.share * 100).toFixed(1)}% |`),
    '',
    '| Switchyard function (inclusive) | where | incl. |',
    '|---|---|---:|',
    ...p.topInclusiveSrc.slice(0, 15).map((f) => `| \`${f.name}\` | ${f.where} | ${(f.share * 100).toFixed(1)}% |`),
  ];
  if (statements) out.push('', statementsTable(statements, unit));
  return out.join('\n');
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine as { cpu_model: string; cores: number; memory_gb: number; node: string; os: string; load_average_at_start: number[]; load_average_at_end?: number[]; git: { commit: string; dirty_files: number } };
  const s = r.database.facts.settings;
  const out: string[] = [];
  out.push(`# Switchyard benchmark — ${r.started_at.slice(0, 16).replace('T', ' ')} UTC (${r.profile} profile)`);
  out.push('');
  out.push(
    `Machine: ${m.cpu_model}, ${m.cores} cores, ${m.memory_gb} GB, ${m.os}; Node ${m.node}; load average ${m.load_average_at_start.join(' ')} at start, ${m.load_average_at_end?.join(' ') ?? '?'} at end. ` +
      `Commit ${m.git.commit.slice(0, 12)}${m.git.dirty_files > 0 ? ` (+${m.git.dirty_files} uncommitted files)` : ''}.`,
  );
  out.push(
    `Database: ${r.database.facts.version.split(' on ')[0]} (${r.database.kind}); synchronous_commit=${s.synchronous_commit}, fsync=${s.fsync}, wal_sync_method=${s.wal_sync_method}, full_page_writes=${s.full_page_writes}, commit_delay=${s.commit_delay}, shared_buffers=${s.shared_buffers}, max_connections=${s.max_connections}` +
      (r.config.pgSettings ? `; set for this run: ${r.config.pgSettings.split(';').map((x) => x.trim().split('=')[0]!).filter(Boolean).map((n) => `${n}=${s[n] ?? '?'}`).join(', ')}` : '') +
      '.',
  );
  out.push(
    `Switchyard: one \`switchyard start\` process (API + worker)${r.config.providerProcess ? '; the mock provider in its own process (`switchyard mock-provider`), called over loopback HTTP' : ' with the mock provider inside it, called over loopback HTTP and sharing its CPU'}, LOG_LEVEL=warn, DB_POOL_MAX=${r.config.dbPoolMax}, ` +
      `an Idempotency-Key on every payment: ${r.config.paymentIdempotencyKey ? 'yes' : 'no'}, merchant velocity window ${r.config.velocityWindowSeconds} s. ` +
      `Load: open model, latency from the intended send time, ${r.config.warmupSeconds} s warm-up discarded, ${r.config.stepSeconds} s measured per step, up to ${r.config.connections} connections, no pipelining.`,
  );
  if (r.profile === 'quick') out.push('', '**Quick profile: short steps, indicative only — not a reference result.**');
  out.push('');
  if (r.targets) {
    out.push('## Targets', '', '| target | measured | result |', '|---|---|---|');
    for (const t of r.targets) out.push(`| ${t.target} | ${t.measured} | ${t.pass === null ? 'not measured' : t.pass ? 'pass' : '**miss**'} |`);
    out.push('');
  }
  if (r.raw) {
    out.push('## Raw commit rate of the database', '', 'The baseline transaction (BEGIN; UPDATE 1 row; INSERT 2 rows; INSERT 1 outbox row; COMMIT) straight on the database, closed loop, no HTTP.', '');
    out.push('| client | connections | tx/s | p50 ms | p99 ms | errors |', '|---|---:|---:|---:|---:|---:|');
    for (const x of r.raw) out.push(`| ${x.tool} | ${x.clients} | ${x.tps.toFixed(0)} | ${x.latencyMs ? fmtMs(x.latencyMs.p50) : (x.note ?? '–')} | ${x.latencyMs ? fmtMs(x.latencyMs.p99) : '–'} | ${x.errors} |`);
    out.push('');
  }
  if (r.baseline) {
    out.push(`## Lean baseline (Fastify + pg, one transaction per request): best ${r.baseline.best}/s`, '', `Criterion: ${r.baseline.criterion}.`, '', ladderTable(r.baseline), '');
  }
  if (r.payments) {
    const ratio = r.baseline?.best ? ` — ${(r.payments.best / r.baseline.best).toFixed(2)} × the baseline` : '';
    out.push(`## Confirmed payments (POST /v1/payments, create + confirm): best ${r.payments.best}/s${ratio}`, '', `Criterion: ${r.payments.criterion}.`, '', ladderTable(r.payments), '');
  }
  if (r.latency) {
    const l = r.latency.result;
    out.push(`## Latency at ${l.offered} payments/s offered (${l.measuredSeconds} s measured)`, '', STEP_HEADER, stepRow(l, null, r.latency.cpu, r.latency.db), '');
    out.push(`p99.9 ${fmtMs(l.latencyMs.p999)} ms, mean ${fmtMs(l.latencyMs.mean)} ms; generator send lag p99 ${fmtMs(l.sendLagMs.p99)} ms.`, '');
    const d = r.latency.db;
    out.push(`Database work per payment (over the ${d.units} payments created during the run): ${d.xact_commit} transactions, ${d.tup_inserted} rows inserted, ${d.tup_updated} updated, ${d.tup_deleted} deleted, ${d.tup_fetched} fetched.`, '');
    if (r.latency.statements) out.push(statementsTable(r.latency.statements, 'payment'), '');
  }
  if (r.replays) {
    out.push(`## Idempotent replays (${r.replays.keys} keys round-robin): best ${r.replays.best}/s`, '', `Criterion: ${r.replays.criterion}.`, '', ladderTable(r.replays), '');
  }
  if (r.webhooks) {
    const w = r.webhooks;
    out.push(`## Webhooks (${w.workers} \`switchyard worker\` process${w.workers === 1 ? '' : 'es'}, receiver in the bench process)`, '');
    out.push('| measurement | result |', '|---|---|');
    out.push(
      `| commit→received at ${w.latency.offered} events/s (${w.latency.measuredSeconds} s, inserted ${w.latency.insertedPerSecond.toFixed(0)}/s) | p50 ${fmtMs(w.latency.latencyMs.p50)} ms, p90 ${fmtMs(w.latency.latencyMs.p90)} ms, p99 ${fmtMs(w.latency.latencyMs.p99)} ms, max ${fmtMs(w.latency.latencyMs.max)} ms; ${w.latency.missing} missing |`,
    );
    out.push(`| CPU during the latency run | ${cpuCell(w.latency.cpu)} |`);
    out.push(
      `| throughput: ${w.throughput.events} events committed at once | ${w.throughput.received} received in ${w.throughput.seconds.toFixed(1)} s → **${w.throughput.deliveriesPerSecond.toFixed(0)} deliveries/s**${w.throughput.timedOut ? ' (timed out)' : ''}; relay fan-out done after ${w.throughput.dispatchSeconds?.toFixed(1) ?? '?'} s; ${w.throughput.duplicates} duplicates |`,
    );
    out.push(`| CPU during the burst | ${cpuCell(w.throughput.cpu)} |`);
    out.push(`| database work per delivery | ${w.throughput.db.xact_commit} transactions, ${w.throughput.db.tup_inserted} rows inserted, ${w.throughput.db.tup_updated} updated |`);
    out.push(`| worker settings | ${Object.entries(w.worker_env).map(([k, v]) => `${k}=${v}`).join(', ')} |`);
    out.push('');
  }
  if (r.profiles && (r.profiles.payments || r.profiles.replays || r.profiles.webhooks)) {
    out.push('## Where the time goes (CPU profiles, `node --cpu-prof`)', '');
    const stepTitle = (what: string, p: { step: StepResult; db: Record<string, number> }) =>
      `${what}: ${p.step.offered}/s offered for ${p.step.measuredSeconds} s — achieved ${p.step.achieved.toFixed(0)}/s, p99 ${fmtMs(p.step.latencyMs.p99)} ms, ${p.db.xact_commit} transactions per request`;
    if (r.profiles.payments) out.push(profileSection(stepTitle('Switchyard `start`, payments', r.profiles.payments), r.profiles.payments, r.profiles.payments.statements, 'payment'), '');
    if (r.profiles.replays) out.push(profileSection(stepTitle('Switchyard `start`, idempotent replays', r.profiles.replays), r.profiles.replays, r.profiles.replays.statements, 'replay'), '');
    if (r.profiles.webhooks) {
      const w = r.profiles.webhooks;
      out.push(profileSection(`one \`switchyard worker\`, a burst of ${w.throughput.events} events — ${w.throughput.deliveriesPerSecond.toFixed(0)} deliveries/s`, w, w.statements, 'delivery'), '');
    }
  }
  if (r.errors.length > 0) out.push('## Problems during the run', '', ...r.errors.map((e) => `- ${e.replace(/\n/g, ' ')}`), '');
  return `${out.join('\n')}\n`;
}
