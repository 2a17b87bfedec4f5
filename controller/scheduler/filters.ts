/**
 * Filters decide whether a node can take one more replica of the request.
 * Each has one named RejectReason. They come in two stages:
 *
 * - feasibility: depends only on the node and the request (ready, cordoned,
 *   labels, required nodes). Run once per node per evaluation.
 * - fit: depends on what is placed (resources, replicas per node). Run once
 *   per node up front and again on a node each time a replica lands on it.
 *
 * The pipeline relies on one rule for fit filters: placing replicas only
 * ever turns a pass into a fail, never the reverse (allocations and counts
 * only grow during an evaluation). So a node that stops fitting is dropped
 * for the rest of the request without being looked at again.
 *
 * A node is rejected for the first filter it fails, in list order, so each
 * node counts once in a reason summary.
 */
import { RejectReason } from './reasons.js';
import type { CompiledRequest, WorkingState } from './state.js';

export type FilterStage = 'feasibility' | 'fit';

export interface NodeFilter {
  readonly reason: RejectReason;
  readonly stage: FilterStage;
  /** True when node `i` passes. */
  passes(state: WorkingState, i: number, req: CompiledRequest): boolean;
}

export const readyFilter: NodeFilter = {
  reason: RejectReason.NodeNotReady,
  stage: 'feasibility',
  passes: (s, i) => s.nodes[i]?.ready === true,
};

export const cordonFilter: NodeFilter = {
  reason: RejectReason.NodeCordoned,
  stage: 'feasibility',
  passes: (s, i) => s.nodes[i]?.cordoned !== true,
};

export const nodeSelectorFilter: NodeFilter = {
  reason: RejectReason.NodeSelectorMismatch,
  stage: 'feasibility',
  passes: (s, i, req) => {
    if (req.selector.length === 0) return true;
    const labels = s.nodes[i]?.labels ?? {};
    for (const [k, v] of req.selector) {
      if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
    }
    return true;
  },
};

/** "Must run on node X" (e.g. its volume is there). */
export const requiredNodeFilter: NodeFilter = {
  reason: RejectReason.NodeNotAllowed,
  stage: 'feasibility',
  passes: (s, i, req) => req.requiredNodes === undefined || req.requiredNodes.has(s.nodes[i]?.name ?? ''),
};

/** The node holding the request's local volumes (see volumes.ts). */
export const volumeFilter: NodeFilter = {
  reason: RejectReason.VolumeOnOtherNode,
  stage: 'feasibility',
  passes: (s, i, req) => req.volumes.length === 0 || req.volumes.every((v) => v.node === s.nodes[i]?.name),
};

/** A dimension fits when nothing is requested or used + requested <= capacity. */
function fits(used: number, requested: number, capacity: number): boolean {
  return requested === 0 || used + requested <= capacity;
}

export const cpuFilter: NodeFilter = {
  reason: RejectReason.InsufficientCpu,
  stage: 'fit',
  passes: (s, i, req) => fits(s.usedCpu[i] as number, req.cpuMillis, s.capCpu[i] as number),
};

export const memoryFilter: NodeFilter = {
  reason: RejectReason.InsufficientMemory,
  stage: 'fit',
  passes: (s, i, req) => fits(s.usedMem[i] as number, req.memoryBytes, s.capMem[i] as number),
};

export const pidsFilter: NodeFilter = {
  reason: RejectReason.InsufficientPids,
  stage: 'fit',
  passes: (s, i, req) => fits(s.usedPids[i] as number, req.pids, s.capPids[i] as number),
};

export const maxPerNodeFilter: NodeFilter = {
  reason: RejectReason.MaxPerNodeReached,
  stage: 'fit',
  passes: (s, i, req) => req.maxPerNode === 0 || (s.count[i] as number) < req.maxPerNode,
};

/** The default filters, in the order they run (and reasons are reported). */
export const defaultFilters: readonly NodeFilter[] = [
  readyFilter,
  cordonFilter,
  nodeSelectorFilter,
  requiredNodeFilter,
  volumeFilter,
  cpuFilter,
  memoryFilter,
  pidsFilter,
  maxPerNodeFilter,
];

/** The reason of the first filter node `i` fails, or undefined when it passes all. */
export function firstRejection(
  filters: readonly NodeFilter[],
  state: WorkingState,
  i: number,
  req: CompiledRequest,
): RejectReason | undefined {
  for (const f of filters) {
    if (!f.passes(state, i, req)) return f.reason;
  }
  return undefined;
}
