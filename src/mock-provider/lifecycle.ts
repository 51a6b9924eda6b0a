import { setMaxListeners } from 'node:events';

/**
 * Owns every timer and background task the mock provider starts (hangs, asynchronous settlements,
 * webhook retries), so that closing the server cancels them instead of leaving a test process
 * waiting on a 15 s hang or a webhook to a receiver that is already gone.
 */
export class ProviderClosedError extends Error {
  constructor() {
    super('mock provider is closing');
    this.name = 'ProviderClosedError';
  }
}

export class Lifecycle {
  private readonly controller = new AbortController();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly tasks = new Set<Promise<unknown>>();

  constructor() {
    // Every hang and every webhook request listens on this one signal; hundreds at once are normal.
    setMaxListeners(0, this.controller.signal);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get closed(): boolean {
    return this.controller.signal.aborted;
  }

  /** Runs fn after ms unless the provider closes first; fn's errors are fn's to handle. */
  schedule(ms: number, fn: () => Promise<void>): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.track(fn());
    }, Math.max(0, ms));
    this.timers.add(timer);
  }

  /** Resolves after ms; rejects with ProviderClosedError as soon as the provider closes. */
  sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.reject(new ProviderClosedError());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        this.timers.delete(timer);
        reject(new ProviderClosedError());
      };
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.signal.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      this.timers.add(timer);
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  track(task: Promise<unknown>): void {
    const settled = task.catch(() => undefined);
    this.tasks.add(settled);
    void settled.finally(() => this.tasks.delete(settled));
  }

  /** Cancels pending timers, aborts sleeps and in-flight webhook requests, waits for running tasks. */
  async close(): Promise<void> {
    this.controller.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.tasks]);
  }
}
