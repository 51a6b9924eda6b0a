/**
 * When the next delivery attempt happens. `schedule[i]` is the wait in seconds before attempt
 * i + 1 (attempt 1 is immediate: schedule[0] = 0). After the last one the delivery is dead.
 */
export const DEFAULT_SCHEDULE_SECONDS = [0, 60, 300, 900, 3600, 21600, 86400];
const MAX_RETRY_AFTER_SECONDS = 86_400;

export function parseSchedule(text: string): number[] {
  const parts = text.split(',').map((p) => Number(p.trim()));
  if (parts.length === 0 || parts.some((n) => !Number.isFinite(n) || n < 0)) throw new Error('a comma-separated list of seconds ≥ 0');
  return parts;
}

/**
 * After `attemptsMade` failed attempts: the delay before the next one, or null when the schedule is
 * exhausted. A receiver's Retry-After (429/503) is honoured when it asks for more time.
 */
export function nextDelaySeconds(schedule: readonly number[], attemptsMade: number, retryAfterSeconds?: number | null): number | null {
  if (attemptsMade >= schedule.length) return null;
  const planned = schedule[attemptsMade]!;
  if (retryAfterSeconds === undefined || retryAfterSeconds === null) return planned;
  return Math.max(planned, Math.min(retryAfterSeconds, MAX_RETRY_AFTER_SECONDS));
}

/** Retry-After as seconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const date = Date.parse(v);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - now) / 1000));
}
