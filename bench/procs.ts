/**
 * Child processes, cleanup and CPU accounting for the benchmark. Everything started here is
 * registered for cleanup; `cleanup()` runs it all in reverse order with bounded waits, and a
 * synchronous exit hook SIGKILLs whatever is still alive if the bench dies another way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
export { freePort } from '../src/lib/free-port.js';


export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Cleanup

type Task = { name: string; run: () => Promise<void> };
const tasks: Task[] = [];
const liveChildren = new Set<ChildProcess>();
const syncOnExit: (() => void)[] = [];

export function onCleanup(name: string, run: () => Promise<void>): void {
  tasks.push({ name, run });
}

/** Last-resort synchronous work at process exit (kill, rm -rf); must be idempotent. */
export function onExitSync(fn: () => void): void {
  syncOnExit.push(fn);
}

let cleaning: Promise<void> | null = null;

export function cleanup(log: (m: string) => void = () => undefined): Promise<void> {
  cleaning ??= (async () => {
    while (tasks.length > 0) {
      const t = tasks.pop()!;
      const timeout = sleep(30_000).then(() => {
        throw new Error('timed out');
      });
      await Promise.race([t.run(), timeout]).catch((err: unknown) => log(`cleanup of ${t.name} failed: ${(err as Error).message}`));
    }
  })();
  return cleaning;
}

process.on('exit', () => {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const fn of syncOnExit) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
});

export function removeDirSync(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Children

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** Everything it wrote, capped to the last 64 KiB. */
  output(): string;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when it is gone. */
  stop(graceMs?: number): Promise<number | null>;
}

export function spawnChild(name: string, args: string[], env: Record<string, string>, opts: { cwd: string }): Child {
  let out = '';
  const proc = spawn(process.execPath, args, { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(proc);
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 65_536) out = out.slice(-65_536);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code, signal) => {
      liveChildren.delete(proc);
      exitCode = code ?? (signal ? 128 : null);
      resolve(exitCode);
    }),
  );
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    output: () => out,
    exited,
    async stop(graceMs = 15_000) {
      if (exitCode !== undefined) return exitCode;
      proc.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(graceMs).then(() => 'late' as const)]);
      if (code !== 'late') return code;
      proc.kill('SIGKILL');
      return exited;
    },
  };
  onCleanup(`child ${name}`, async () => {
    await child.stop();
  });
  return child;
}

/** Waits until `url` answers 200, or throws when the child exits or the deadline passes. */
export async function waitHttpReady(child: Child, url: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void child.exited.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error(`${child.name} exited during start-up:\n${child.output().slice(-4000)}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`${child.name} not ready after ${timeoutMs} ms:\n${child.output().slice(-4000)}`);
    await sleep(200);
  }
}

/** Waits until the child printed `text`. */
export async function waitOutput(child: Child, text: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void child.exited.then(() => (gone = true));
  while (!child.output().includes(text)) {
    if (gone) throw new Error(`${child.name} exited during start-up:\n${child.output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`${child.name} did not print '${text}' within ${timeoutMs} ms:\n${child.output().slice(-4000)}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux; elsewhere every reading is null)

const TICKS_PER_SECOND = 100; // USER_HZ on every Linux architecture Node runs on

function statOf(pid: number): { ppid: number; ticks: number; comm: string } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    // fields after comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14); the last two
    // hold the CPU of children already reaped (PostgreSQL backends of closed connections).
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), comm };
  } catch {
    return null;
  }
}

/** CPU ticks used by each pid's whole process tree (the root and every descendant alive now). */
function treeTicks(roots: number[]): Map<number, number> {
  const all = new Map<number, { ppid: number; ticks: number }>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return new Map();
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const s = statOf(Number(e));
    if (s) all.set(Number(e), s);
  }
  const out = new Map<number, number>();
  for (const root of roots) {
    if (!all.has(root)) continue;
    let sum = 0;
    for (const [pid, s] of all) {
      let p: number | undefined = pid;
      for (let depth = 0; p !== undefined && p > 1 && depth < 8; depth++) {
        if (p === root) {
          sum += s.ticks;
          break;
        }
        p = all.get(p)?.ppid;
      }
    }
    out.set(root, sum);
  }
  return out;
}

function machineTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

export interface CpuWindow {
  /** Cores used (1.0 = one core fully busy) by each named process tree during the window. */
  cores: Record<string, number>;
  /** Fraction of all cores busy on the whole machine (including everything not ours). */
  machineBusy: number | null;
}

/** Measures the CPU use of named process trees between start() and stop(). */
export class CpuMeter {
  constructor(private readonly roots: () => Record<string, number>) {}

  start(): () => CpuWindow {
    const roots = this.roots();
    const pids = Object.values(roots).filter((p) => p > 0);
    const t0 = performance.now();
    const before = treeTicks(pids);
    const m0 = machineTicks();
    const self0 = process.cpuUsage();
    return () => {
      const seconds = (performance.now() - t0) / 1000;
      const after = treeTicks(pids);
      const m1 = machineTicks();
      const self = process.cpuUsage(self0);
      const cores: Record<string, number> = { bench: (self.user + self.system) / 1e6 / seconds };
      for (const [name, pid] of Object.entries(roots)) {
        const a = after.get(pid);
        const b = before.get(pid);
        if (a !== undefined && b !== undefined) cores[name] = Math.max(0, a - b) / TICKS_PER_SECOND / seconds;
      }
      const machineBusy = m0 && m1 && m1.total > m0.total ? (m1.busy - m0.busy) / (m1.total - m0.total) : null;
      return { cores, machineBusy };
    };
  }
}

/** The postmaster's pid when the database runs on this machine: the parent of our backend. */
export function postmasterOf(backendPid: number): number | null {
  const s = statOf(backendPid);
  if (!s || !s.comm.startsWith('postgres')) return null;
  const parent = statOf(s.ppid);
  return parent && parent.comm.startsWith('postgres') ? s.ppid : null;
}

export function describeCpu(w: CpuWindow): string {
  const parts = Object.entries(w.cores).map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`);
  if (w.machineBusy !== null) parts.push(`machine ${(w.machineBusy * 100).toFixed(0)}% busy`);
  return parts.join(', ');
}
