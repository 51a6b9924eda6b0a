/**
 * Seeded randomness for the chaos harness. Every choice the harness makes (what each payment
 * flow does, when and whom to kill, how the webhook receiver answers) comes from a stream derived
 * from the run's seed and a stable label, never from Math.random, so that the same seed makes the
 * same choices whatever the timing: flow 17 always uses the same token, amount and operations.
 */
import { createHash } from 'node:crypto';
import { mulberry32 } from '../src/mock-provider/flaky.js';


/** A 32-bit number from the seed and any labels, stable across runs and platforms. */
export function hash32(seed: number, ...labels: (string | number)[]): number {
  return createHash('sha256').update(`${seed}|${labels.join('|')}`).digest().readUInt32BE(0);
}

/** A uniform number in [0, 1) fixed by the seed and labels: one draw without keeping a stream. */
export function unit(seed: number, ...labels: (string | number)[]): number {
  return hash32(seed, ...labels) / 4294967296;
}

export class Rng {
  private readonly next: () => number;

  constructor(seed: number, ...labels: (string | number)[]) {
    this.next = mulberry32(hash32(seed, ...labels));
  }

  float(): number {
    return this.next();
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** One of the keys, with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((s, [, w]) => s + w, 0);
    let draw = this.next() * total;
    for (const [k, w] of entries) {
      draw -= w;
      if (draw < 0) return k;
    }
    return entries[entries.length - 1]![0];
  }
}
