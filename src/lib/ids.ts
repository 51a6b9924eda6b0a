import { monotonicFactory } from 'ulid';

// ULIDs sort by creation time, so ids double as a stable pagination cursor.
const next = monotonicFactory();

export type IdPrefix = 'pay' | 'att' | 're' | 'evt' | 'we' | 'wd' | 'mer' | 'stl' | 'key' | 'pe';

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${next().toLowerCase()}`;
}
