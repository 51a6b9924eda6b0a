/**
 * Admission of new requests while the database pool has a queue (ADR 0009).
 *
 * pg's pool serves waiters first come, first served. A confirmed payment takes a connection
 * several times (claim, outcome, idempotency result…), so under overload every one of those
 * waits joins the back of a queue full of requests that have not started yet: a payment that
 * gets in waits the whole queue once per transaction. Here a request that arrives while callers
 * are waiting for a connection waits instead, in front of the pool, until that queue has cleared —
 * work already started goes first, and the queue it meets is short.
 *
 * The wait here is bounded the CoDel way (controlled delay, as in Facebook's request queues): a
 * queue that empties now and then is absorbing bursts, and a request may wait its full time
 * (OVERLOAD_DB_WAIT_MS); a queue that has not emptied for STANDING_FRACTION of that time is
 * standing, and a request that joins it waits at most STANDING_WAIT_FRACTION of it before it is
 * refused (at the default 250 ms: standing after 100 ms, then 10 ms). Under a flood the waiting
 * room so holds only what can start within milliseconds, refusals come at once, and the payments
 * let in do not wait behind a crowd; a burst of concurrent requests is never refused for size.
 * Both scale with the one setting, so a deployment (or a test run) that allows longer database
 * waits also lets a busy moment last longer before anything is refused.
 */
export interface PoolState {
  /** Callers now waiting for a connection. */
  waiting(): number;
  /** Connections that could be handed out now: idle ones plus room to open more. */
  free(): number;
}

/** A waiting room not empty for this share of the wait limit is a standing queue. */
export const STANDING_FRACTION = 0.4;
/** How long, as a share of the wait limit, a request may wait to start behind a standing queue. */
export const STANDING_WAIT_FRACTION = 1 / 25;

interface Waiter {
  resolve: (admitted: boolean) => void;
  timer: NodeJS.Timeout;
}

export class AdmissionGate {
  private readonly queue: Waiter[] = [];
  /** When the waiting room last went from empty to not empty. */
  private busySince = 0;
  /** The wait limit of the latest request (OVERLOAD_DB_WAIT_MS: the same for every request). */
  private limitMs = 0;
  constructor(
    private readonly pool: PoolState,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** New requests waiting here now. */
  get size(): number {
    return this.queue.length;
  }

  /** Not empty for over STANDING_FRACTION of the wait limit: who joins now waits only briefly. */
  get standing(): boolean {
    return this.queue.length > 0 && this.now() - this.busySince > this.limitMs * STANDING_FRACTION;
  }

  /**
   * true at once when nobody waits for a connection (the common case: no promise); otherwise
   * resolves true when the pool's queue has cleared, false after maxWaitMs (STANDING_WAIT_FRACTION
   * of it when the waiting room is a standing queue).
   */
  admit(maxWaitMs: number): true | Promise<boolean> {
    if (this.queue.length === 0 && this.pool.waiting() === 0) return true;
    this.limitMs = maxWaitMs;
    const waitMs = this.standing ? maxWaitMs * STANDING_WAIT_FRACTION : maxWaitMs;
    if (this.queue.length === 0) this.busySince = this.now();
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          resolve(false);
        }, waitMs),
      };
      this.queue.push(waiter);
      this.pump();
    });
  }

  /** Lets in, oldest first, as many as there are free connections while nobody waits for one. */
  pump(): void {
    if (this.queue.length === 0 || this.pool.waiting() > 0) return;
    for (let free = this.pool.free(); free > 0 && this.queue.length > 0; free -= 1) {
      const waiter = this.queue.shift()!;
      clearTimeout(waiter.timer);
      waiter.resolve(true);
    }
  }
}
