/** How big a chaos run is. `short` is what CI runs; `default` is the full run. */
export interface Profile {
  name: string;
  /** Payment flows to run (each creates at least one payment). */
  flows: number;
  /** SIGKILLs of api and worker processes during the load. */
  kills: number;
  /** Flows running at once. */
  concurrency: number;
  /** New flows stop starting after this long, whatever the count (a safety net). */
  maxLoadMs: number;
  /** The longest wait for reconciliation and deliveries to finish after the load. */
  maxQuietMs: number;
  /** The whole run is aborted (and fails) after this long. */
  maxTotalMs: number;
}

export const PROFILES: Record<string, Profile> = {
  // CI: typically ≈ 1 min on 2 cores; never more than 3 min.
  short: { name: 'short', flows: 360, kills: 4, concurrency: 24, maxLoadMs: 110_000, maxQuietMs: 45_000, maxTotalMs: 180_000 },
  // The quiet period stays well under reconciliation's 300 s claim, so that attempts stranded by
  // a worker killed mid-sweep are reported instead of waited out.
  default: { name: 'default', flows: 10_000, kills: 24, concurrency: 32, maxLoadMs: 3_600_000, maxQuietMs: 120_000, maxTotalMs: 4_500_000 },
};
