/** Walking a parsed JSON request (body, query, params) for the first value a check refuses. */

export interface JsonCheck {
  /** True when this text (a string value or an object key) is refused. */
  text(s: string): boolean;
  /** True when this number is refused; numbers pass when absent. */
  number?(n: number): boolean;
  /** How a refused key is named in the returned path (it must not echo what was refused). */
  keyLabel(key: string): string;
}

/** Nesting past this many levels is not walked. */
const MAX_DEPTH = 32;

/** The JSON path of the first refused value or key, or null. Nesting past 32 levels is not walked. */
export function findInJson(value: unknown, check: JsonCheck): string[] | null {
  // One path stack for the whole walk, copied only for a hit: every request body is walked, and
  // a copy per visited value was most of the walk's cost.
  const path: string[] = [];
  return walk(value, check, path, 0) ? path : null;
}

/** True when a refused value is at or under `value`; `path` then leads to it. */
function walk(value: unknown, check: JsonCheck, path: string[], depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  if (typeof value === 'string') return check.text(value);
  if (typeof value === 'number') return check.number?.(value) ?? false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      path.push(String(i));
      if (walk(value[i], check, path, depth + 1)) return true;
      path.pop();
    }
    return false;
  }
  if (value && typeof value === 'object') {
    for (const k in value) {
      if (!Object.hasOwn(value, k)) continue;
      if (check.text(k)) {
        path.push(check.keyLabel(k));
        return true;
      }
      path.push(k);
      if (walk((value as Record<string, unknown>)[k], check, path, depth + 1)) return true;
      path.pop();
    }
  }
  return false;
}
