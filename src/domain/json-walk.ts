/** Walking a parsed JSON request (body, query, params) for the first value a check refuses. */

export interface JsonCheck {
  /** True when this text (a string value or an object key) is refused. */
  text(s: string): boolean;
  /** True when this number is refused; numbers pass when absent. */
  number?(n: number): boolean;
  /** How a refused key is named in the returned path (it must not echo what was refused). */
  keyLabel(key: string): string;
}

/** The JSON path of the first refused value or key, or null. Nesting past 32 levels is not walked. */
export function findInJson(value: unknown, check: JsonCheck, path: string[] = [], depth = 0): string[] | null {
  if (depth > 32) return null;
  if (typeof value === 'string') return check.text(value) ? path : null;
  if (typeof value === 'number') return check.number?.(value) ? path : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const hit = findInJson(value[i], check, [...path, String(i)], depth + 1);
      if (hit) return hit;
    }
    return null;
  }
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (check.text(k)) return [...path, check.keyLabel(k)];
      const hit = findInJson(v, check, [...path, k], depth + 1);
      if (hit) return hit;
    }
  }
  return null;
}
