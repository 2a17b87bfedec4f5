/**
 * Local volumes in plans: a replica that mounts an existing local volume can
 * only run on the node that holds it (volumeFilter), so when it cannot be
 * placed the useful answer is about that node, not a count of the others:
 *
 *   0/3 nodes: volume "data" is on node "n2" which is NotReady
 *   0/3 nodes: volume "data" is on node "n2" which has insufficient memory
 *   0/3 nodes: volume "a" is on node "n1" but volume "b" is on node "n2"
 */
import type { NodeFilter } from './filters.js';
import { firstRejection } from './filters.js';
import type { RejectReason } from './reasons.js';
import type { CompiledRequest, WorkingState } from './state.js';
import type { NodeSnapshot } from './types.js';

const WHY: Readonly<Record<RejectReason, string>> = {
  node_not_ready: 'which is NotReady',
  node_cordoned: 'which is cordoned',
  node_selector_mismatch: 'which does not match the node selector',
  node_not_allowed: 'which is not a required node',
  volume_on_other_node: 'which does not hold the other volumes',
  insufficient_cpu: 'which has insufficient cpu',
  insufficient_memory: 'which has insufficient memory',
  insufficient_pids: 'which has insufficient pids',
  max_per_node_reached: 'which reached max per node',
};

/**
 * The summary of an unplaced request that mounts existing local volumes, or
 * undefined when it mounts none (then the usual counts are the summary).
 * Reads the final working state, so a node that filled up while replicas of
 * this request were placed reports the fit filter it fails now.
 */
export function volumeSummary(state: WorkingState, req: CompiledRequest, filters: readonly NodeFilter[]): string | undefined {
  const first = req.volumes[0];
  if (first === undefined) return undefined;
  const head = `0/${state.size} nodes: `;
  const other = req.volumes.find((v) => v.node !== first.node);
  if (other !== undefined) return `${head}volume "${first.name}" is on node "${first.node}" but volume "${other.name}" is on node "${other.node}"`;
  const lead = `${head}volume "${first.name}" is on node "${first.node}"`;
  let i = -1;
  for (let k = 0; k < state.size; k++) {
    if ((state.nodes[k] as NodeSnapshot).name === first.node) {
      i = k;
      break;
    }
  }
  if (i < 0) return `${lead} which is not registered`;
  const reason = firstRejection(filters, state, i, req);
  return reason === undefined ? `${lead} which cannot take more` : `${lead} ${WHY[reason]}`;
}
