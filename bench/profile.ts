/**
 * Summarises a V8 .cpuprofile (written by `node --cpu-prof`): self time per function, self time
 * per area (our src/ modules, each dependency, Node internals, GC, idle), and inclusive time of
 * Switchyard's own functions — where one process's CPU goes under a given load.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  durationMs: number;
  /** Sampled time not idle: what the process spent on the CPU (JS, GC, native). */
  busyMs: number;
  idleShare: number;
  topSelf: ProfileRow[];
  areas: ProfileRow[];
  /** Inclusive (self + callees) time of functions in src/, a function counted once per sample. */
  topInclusiveSrc: ProfileRow[];
}

function areaOf(url: string, name: string, root: string): string {
  if (!url) {
    if (name === '(garbage collector)') return 'GC';
    if (name === '(idle)') return 'idle';
    if (name === '(program)') return 'V8/native (program)';
    return `native (${name || 'anonymous'})`;
  }
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const file = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + 14).split('/');
    return `dep: ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const rel = path.relative(root, file);
  if (!rel.startsWith('..')) {
    const parts = rel.split('/');
    return parts[0] === 'src' && parts.length > 2 ? `src/${parts[1]}` : rel;
  }
  return file;
}

function whereOf(url: string, line: number, root: string): string {
  if (!url) return '';
  const file = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  const nm = file.lastIndexOf('/node_modules/');
  const shown = nm >= 0 ? file.slice(nm + 14) : path.relative(root, file).startsWith('..') ? file : path.relative(root, file);
  // tsx's transform puts a module's code on few lines: for our own .ts files only the file is telling.
  return line > 0 || !shown.endsWith('.ts') ? `${shown}:${line + 1}` : shown;
}

/**
 * `window` (microseconds of the monotonic clock, as process.hrtime.bigint() / 1000 reads it —
 * the clock V8 stamps profiles with on Linux) limits the summary to the samples taken under load,
 * leaving out start-up (module loading, compiling) and shutdown.
 */
export async function summariseProfile(file: string, root: string, window?: { fromUs: number; toUs: number }, top = 25): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  if (window) {
    // Keep the samples inside the window (their gaps with them); fall back to all if none are.
    const samples: number[] = [];
    const deltas: number[] = [];
    let t = p.startTime;
    let prevKept = -1;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      if (t < window.fromUs || t > window.toUs) continue;
      samples.push(p.samples[i]!);
      deltas.push(prevKept < 0 ? 0 : t - prevKept);
      prevKept = t;
    }
    if (samples.length > 10) {
      p.samples = samples;
      p.timeDeltas = deltas;
      p.startTime = Math.max(p.startTime, window.fromUs);
      p.endTime = Math.min(p.endTime, window.toUs);
    }
  }
  const byId = new Map<number, CpuNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    // timeDeltas[i] is the gap before sample i; attribute the gap after it (the next delta) to it.
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;

  const keyOf = (n: CpuNode) => `${n.callFrame.functionName || '(anonymous)'}\u0000${whereOf(n.callFrame.url, n.callFrame.lineNumber, root)}`;
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const k = keyOf(n);
    self.set(k, (self.get(k) ?? 0) + us);
    const area = areaOf(n.callFrame.url, n.callFrame.functionName, root);
    areas.set(area, (areas.get(area) ?? 0) + us);
    if (n.callFrame.functionName === '(idle)') idle += us;
  }
  const busy = total - idle;

  // Inclusive time of our own functions: walk each sample's stack once.
  const inclusive = new Map<string, number>();
  const srcPrefix = `file://${path.join(root, 'src')}/`;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = Math.max(0, p.timeDeltas[i + 1] ?? 0);
    if (dt === 0) continue;
    const seen = new Set<string>();
    for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (!n.callFrame.url.startsWith(srcPrefix)) continue;
      const k = keyOf(n);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  }

  const rows = (m: Map<string, number>, n: number, of: number): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => {
        const [name, where] = k.split('\u0000');
        return { name: name!, where: where ?? '', ms: us / 1000, share: us / of };
      });
  return {
    file,
    durationMs: (p.endTime - p.startTime) / 1000,
    busyMs: busy / 1000,
    idleShare: idle / total,
    // shares of busy time: idle is not work
    topSelf: rows(new Map([...self].filter(([k]) => !k.startsWith('(idle)'))), top, busy),
    areas: rows(new Map([...areas].filter(([k]) => k !== 'idle').map(([k, v]) => [`${k}\u0000`, v])), 30, busy),
    topInclusiveSrc: rows(inclusive, top, busy),
  };
}
