/**
 * schedule(): the pipeline of README.md, request -> feasibility -> fit ->
 * score -> plan.
 *
 * 1. Compile and validate the request and the snapshot into a WorkingState.
 * 2. Run every filter on every node once. A rejected node is counted under
 *    its first failed filter; the rest are scored and put in a heap.
 * 3. For each pending replica, take the best node from the heap, place the
 *    replica there (updating the node's allocation and count), then re-run
 *    the fit filters on that node only: if it cannot take another replica it
 *    leaves the heap (counted under that reason), otherwise it is re-scored
 *    and re-sifted. Other nodes are untouched by this placement, so their
 *    filter results and scores stay valid.
 * 4. When the heap is empty, every node has a rejection reason and the
 *    remaining replicas are unplaced with that summary (all replicas of a
 *    request are identical, so they share it).
 *
 * Cost: O(n + r) to build (n nodes, r existing replicas in the snapshot)
 * plus O(log n) per placed replica.
 */
import { countReasons, formatSummary } from './reasons.js';
import type { RejectReason } from './reasons.js';
import { defaultFilters, firstRejection } from './filters.js';
import type { NodeFilter } from './filters.js';
import { scorerFor } from './scorers.js';
import type { Scorer } from './scorers.js';
import { NodeHeap } from './heap.js';
import { buildState, compileRequest, place } from './state.js';
import { volumeSummary } from './volumes.js';
import type { CompiledRequest } from './state.js';
import type {
  ClusterSnapshot,
  ExistingReplica,
  NodeSnapshot,
  Placement,
  PlacementPlan,
  PlacementRequest,
  ScheduleOptions,
} from './types.js';

/** The pieces a schedule() run is made of; swap one to extend the pipeline. */
export interface Pipeline {
  /** Filters in the order they run; feasibility filters should come first. */
  readonly filters: readonly NodeFilter[];
  /** Picks the scorer for a request. */
  readonly scorer: (req: CompiledRequest) => Scorer;
}

export const defaultPipeline: Pipeline = { filters: defaultFilters, scorer: scorerFor };

/**
 * Places the request's pending replicas on the snapshot's nodes. Pure and
 * deterministic: same snapshot, request and evalId give the same plan.
 * Throws SchedulerInputError when the input is malformed.
 */
export function schedule(
  snapshot: ClusterSnapshot,
  request: PlacementRequest,
  opts: ScheduleOptions,
  pipeline: Pipeline = defaultPipeline,
): PlacementPlan {
  const req = compileRequest(snapshot, request);
  const state = buildState(snapshot, req.workload, opts?.evalId);
  const fitFilters = pipeline.filters.filter((f) => f.stage === 'fit');
  const scorer = pipeline.scorer(req);
  const rejected = new Map<RejectReason, number>();
  const reject = (reason: RejectReason): void => {
    rejected.set(reason, (rejected.get(reason) ?? 0) + 1);
  };

  const heap = new NodeHeap(state);
  for (let i = 0; i < state.size; i++) {
    const reason = firstRejection(pipeline.filters, state, i, req);
    if (reason !== undefined) {
      reject(reason);
    } else {
      scorer.score(state, i, req);
      heap.append(i);
    }
  }
  heap.heapify();

  const ids = req.replicaIds;
  const placements: Placement[] = [];
  let k = 0;
  for (; k < ids.length && heap.size > 0; k++) {
    const i = heap.top();
    placements.push({ replica: ids[k] as string, node: (state.nodes[i] as NodeSnapshot).name });
    place(state, i, req);
    const reason = firstRejection(fitFilters, state, i, req);
    if (reason !== undefined) {
      reject(reason);
      heap.pop();
    } else {
      scorer.score(state, i, req);
      heap.fixTop();
    }
  }

  if (k === ids.length) return { evalId: opts.evalId, workload: req.workload, placements, unplaced: undefined };
  const reasons = countReasons(rejected);
  return {
    evalId: opts.evalId,
    workload: req.workload,
    placements,
    unplaced: {
      replicas: ids.slice(k),
      nodesTotal: state.size,
      nodesAvailable: 0,
      reasons,
      summary: volumeSummary(state, req, pipeline.filters) ?? formatSummary(0, state.size, reasons),
    },
  };
}

/**
 * The snapshot after a plan is carried out: its placements added to
 * `snapshot.replicas` (with the request's resources). Nodes with an explicit
 * `allocated` get the placed resources added to it. Lets a caller schedule
 * several workloads in a row (or a dry run show them) against one snapshot.
 */
export function withPlacements(
  snapshot: ClusterSnapshot,
  request: PlacementRequest,
  plan: PlacementPlan,
  opts: { createdAt?: number } = {},
): ClusterSnapshot {
  const res = request.resources;
  const added: ExistingReplica[] = plan.placements.map((p) => ({
    workload: plan.workload,
    replica: p.replica,
    node: p.node,
    resources: { cpuMillis: res.cpuMillis, memoryBytes: res.memoryBytes, pids: res.pids },
    ...(opts.createdAt === undefined ? {} : { createdAt: opts.createdAt }),
  }));
  const perNode = new Map<string, number>();
  for (const p of plan.placements) perNode.set(p.node, (perNode.get(p.node) ?? 0) + 1);
  const nodes = snapshot.nodes.map((n) => {
    const c = perNode.get(n.name);
    if (c === undefined || n.allocated === undefined) return n;
    return {
      ...n,
      allocated: {
        cpuMillis: n.allocated.cpuMillis + c * res.cpuMillis,
        memoryBytes: n.allocated.memoryBytes + c * res.memoryBytes,
        pids: n.allocated.pids + c * res.pids,
      },
    };
  });
  // Placed replicas that were listed as pending (no node) are replaced.
  const placed = new Set(plan.placements.map((p) => p.replica));
  const kept = snapshot.replicas.filter((r) => !(r.workload === plan.workload && r.node === undefined && placed.has(r.replica)));
  return { nodes, replicas: [...kept, ...added] };
}
