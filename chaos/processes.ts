/**
 * The Switchyard processes of a chaos run, each a real child process started from source
 * (`node --import tsx src/cli/main.ts <command>`), killed with SIGKILL and restarted on the same
 * port. Every child ever started is tracked so that the harness can kill them all on any exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
export { freePort } from '../src/lib/free-port.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const LIVE = new Set<ChildProcess>();
let shuttingDown = false;

/**
 * SIGKILLs every child still alive and refuses to start new ones; synchronous, so it also works
 * in an 'exit' handler.
 */
export function killAllChildren(): void {
  shuttingDown = true;
  for (const child of LIVE) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Role = 'api' | 'worker' | 'provider';

export interface ManagedOptions {
  name: string;
  role: Role;
  args: string[];
  env: Record<string, string>;
  /** Readiness: an HTTP URL answering 200, or a line on stdout. */
  readyUrl?: string;
  readyLine?: string;
  startTimeoutMs?: number;
  /** Called when the child exits without the harness having killed or stopped it. */
  onCrash?: (m: Managed) => void;
}

/** One supervised child: start, wait until ready, SIGKILL, restart; keeps the tail of its output. */
export class Managed {
  child: ChildProcess | null = null;
  starts = 0;
  kills = 0;
  /** Exits the harness did not cause (a crash): reported, and they fail the run. */
  readonly unexpectedExits: { at: number; code: number | null; signal: string | null; tail: string }[] = [];
  private tail: string[] = [];
  private expectingExit = false;
  private exited: Promise<void> = Promise.resolve();
  up = false;

  constructor(readonly opts: ManagedOptions) {}

  get name(): string {
    return this.opts.name;
  }

  output(): string {
    return this.tail.join('');
  }

  private record(chunk: string): void {
    this.tail.push(chunk);
    if (this.tail.length > 200) this.tail.splice(0, this.tail.length - 200);
  }

  async start(): Promise<void> {
    if (shuttingDown) throw new Error(`${this.name}: not started, the harness is shutting down`);
    this.starts += 1;
    this.expectingExit = false;
    let sawLine = false;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...this.opts.args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    LIVE.add(child);
    const onData = (d: Buffer) => {
      const s = d.toString();
      this.record(s);
      if (this.opts.readyLine && s.includes(this.opts.readyLine)) sawLine = true;
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    let dead = false;
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        dead = true;
        LIVE.delete(child);
        this.up = false;
        resolve();
        if (!this.expectingExit && !shuttingDown) {
          this.unexpectedExits.push({ at: Date.now(), code, signal, tail: this.output().slice(-2000) });
          this.opts.onCrash?.(this);
        }
      });
    });
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 60_000);
    for (;;) {
      if (dead) throw new Error(`${this.name} exited before it was ready:\n${this.output().slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`${this.name} was not ready within ${this.opts.startTimeoutMs ?? 60_000} ms:\n${this.output().slice(-3000)}`);
      if (this.opts.readyLine && sawLine) break;
      if (this.opts.readyUrl) {
        const ok = await fetch(this.opts.readyUrl, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.status === 200)
          .catch(() => false);
        if (ok) break;
      }
      await sleep(150);
    }
    this.up = true;
  }

  /** SIGKILL, wait for the exit; the harness's own doing, so not an unexpected exit. */
  async kill(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.expectingExit = true;
    this.up = false;
    this.kills += 1;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (graceful) then SIGKILL after the grace period. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.expectingExit = true;
    this.up = false;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
