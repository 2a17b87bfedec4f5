/** Small builders for scheduler tests (no I/O: the scheduler is pure). */
import type { ClusterSnapshot, ExistingReplica, NodeSnapshot, PlacementPlan, ResourceAmounts } from '../../../controller/scheduler/index.js';

export const GiB = 1024 * 1024 * 1024;
export const MiB = 1024 * 1024;

export function res(cpuMillis: number, memoryBytes: number, pids = 0): ResourceAmounts {
  return { cpuMillis, memoryBytes, pids };
}

export function node(name: string, over: Partial<NodeSnapshot> = {}): NodeSnapshot {
  return {
    name,
    labels: {},
    ready: true,
    cordoned: false,
    capacity: res(4000, 8 * GiB, 1000),
    ...over,
  };
}

export function cluster(nodes: NodeSnapshot[], replicas: ExistingReplica[] = []): ClusterSnapshot {
  return { nodes, replicas };
}

/** node name -> number of placements in the plan. */
export function perNode(plan: PlacementPlan): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of plan.placements) out[p.node] = (out[p.node] ?? 0) + 1;
  return out;
}

/** Sorted list of per-node counts, e.g. [2, 2, 2]. */
export function shape(plan: PlacementPlan): number[] {
  return Object.values(perNode(plan)).sort((a, b) => a - b);
}
