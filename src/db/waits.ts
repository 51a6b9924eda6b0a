/** How long a completed long wait keeps counting: shedding holds through brief drains of a queue. */
export const WAIT_WINDOW_MS = 1000;

export interface WaitEntry {
  readonly since: number;
}

/**
 * Callers waiting in one queue, and how long: the oldest still waiting, and a long completed wait
 * with when it ended — replaced by a longer one, or by the next one once it is WAIT_WINDOW_MS old
 * (one value, not a window of them: a standing queue completes waits all the time, so the value
 * stays fresh while it matters).
 */
export class Waits {
  private readonly waiting = new Set<WaitEntry>();
  private recent = { ms: 0, at: Number.NEGATIVE_INFINITY };

  constructor(private readonly now: () => number = () => performance.now()) {}

  start(): WaitEntry {
    const entry = { since: this.now() };
    this.waiting.add(entry);
    return entry;
  }

  /** The wait is over (served or given up). */
  end(entry: WaitEntry): void {
    if (!this.waiting.delete(entry)) return;
    const now = this.now();
    const ms = now - entry.since;
    if (ms >= this.recent.ms || now - this.recent.at > WAIT_WINDOW_MS) this.recent = { ms, at: now };
  }

  /** The longer of the oldest current wait and the longest completed within WAIT_WINDOW_MS (0 when neither). */
  longestMs(): number {
    const now = this.now();
    const oldest = this.waiting.values().next().value;
    const current = oldest ? now - oldest.since : 0;
    const recent = now - this.recent.at <= WAIT_WINDOW_MS ? this.recent.ms : 0;
    return Math.max(current, recent);
  }
}
