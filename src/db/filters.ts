/**
 * A WHERE clause built from optional filters, every value a parameter. `add('status = ?', v)`
 * appends `status = $n` and its value; `toString()` joins them with AND.
 */
export class Filters {
  readonly values: unknown[] = [];
  private readonly clauses: string[] = [];

  constructor(first: string, value: unknown) {
    this.add(first, value);
  }

  add(clause: string, value: unknown): this {
    this.values.push(value);
    this.clauses.push(clause.replace('?', `$${this.values.length}`));
    return this;
  }

  /** Adds the clause only when the value is given. */
  maybe(clause: string, value: unknown): this {
    return value === undefined || value === null || value === '' ? this : this.add(clause, value);
  }

  /** A placeholder for one more value (e.g. LIMIT). */
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  toString(): string {
    return this.clauses.join(' AND ');
  }
}
