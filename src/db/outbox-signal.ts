/**
 * Wakes the outbox relay after a transaction that wrote events has committed.
 *
 * Why not a NOTIFY inside that transaction (an AFTER INSERT trigger, as before): PostgreSQL
 * serialises every transaction that notifies on one database-wide lock, held until its commit
 * record is flushed. Every payment transaction wrote an event, so every payment commit queued
 * behind the previous one's fsync (pgbench on this machine, 8 clients, insert + commit:
 * ~10,500 tx/s without NOTIFY, ~4,800 with it inside, ~8,500 with a separate NOTIFY after the
 * commit). A NOTIFY sent on its own writes no WAL and holds that lock only for an instant.
 *
 * Throttled: the first signal sends at once (an idle system keeps its latency), the ones that
 * follow within `intervalMs` share one trailing NOTIFY. Every signal is followed by a NOTIFY
 * that starts after it, so no committed event waits for the relay's poll unless a NOTIFY fails
 * (then the poll, OUTBOX_POLL_MS, still finds it: the events table is the truth, not the signal).
 */
export const OUTBOX_CHANNEL = 'switchyard_outbox';

export class Throttle {
  private last = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private inFlight = false;
  private pending = false;

  constructor(
    private readonly send: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  signal(): void {
    if (this.timer || this.inFlight) {
      this.pending = true;
      return;
    }
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) {
      this.fire();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.fire();
    }, wait);
    this.timer.unref();
  }

  private fire(): void {
    this.pending = false;
    this.inFlight = true;
    this.last = this.now();
    void this.send()
      .catch(() => undefined)
      .finally(() => {
        this.inFlight = false;
        if (this.pending) {
          this.pending = false;
          this.signal();
        }
      });
  }
}
