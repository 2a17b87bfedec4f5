/**
 * Scorers rank the nodes that passed every filter. A scorer writes two keys
 * per node into the working state (k1, then k2; smaller is better); the
 * evaluation's seeded tie-break settles equal keys. Keys are recomputed for a
 * node each time a replica lands on it, so they must depend only on that
 * node's own slots in the state.
 *
 * Utilization is the mean of the cpu and memory fractions the node would
 * have in use after taking one more replica (Nomad scores the proposed
 * allocation the same way). Pids are a limit to fit, not a cost to balance.
 */
import type { CompiledRequest, WorkingState } from './state.js';

export interface Scorer {
  readonly name: string;
  /** Writes state.k1[i] and state.k2[i] for node i. */
  score(state: WorkingState, i: number, req: CompiledRequest): void;
}

function fraction(used: number, capacity: number): number {
  if (capacity === Infinity) return 0;
  if (capacity <= 0) return used > 0 ? 1 : 0;
  return used / capacity;
}

/** Mean cpu/memory fraction in use on node i after one more replica of req. */
export function utilizationAfter(state: WorkingState, i: number, req: CompiledRequest): number {
  const cpu = fraction((state.usedCpu[i] as number) + req.cpuMillis, state.capCpu[i] as number);
  const mem = fraction((state.usedMem[i] as number) + req.memoryBytes, state.capMem[i] as number);
  return (cpu + mem) / 2;
}

/** Spread: fewest replicas of this workload first, then least allocated. */
export const spreadScorer: Scorer = {
  name: 'spread',
  score(state, i, req) {
    state.k1[i] = state.count[i] as number;
    state.k2[i] = utilizationAfter(state, i, req);
  },
};

/** Bin-pack: the most allocated node that still fits first. */
export const binpackScorer: Scorer = {
  name: 'binpack',
  score(state, i, req) {
    state.k1[i] = 0;
    state.k2[i] = -utilizationAfter(state, i, req);
  },
};

/** The scorer a request asks for (placement.spread, default true). */
export function scorerFor(req: CompiledRequest): Scorer {
  return req.spread ? spreadScorer : binpackScorer;
}
