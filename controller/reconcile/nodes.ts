/** Node records with live state -> the reconciler's view of nodes. */
import { NodeState, type Node } from '../../proto/gen/berth/v1/types.js';
import type { ReconcileNode } from './decide.js';

/** A node must have been listened to this long before "NotReady" means lost. */
export const LOST_AFTER_LISTENING_MS = 5_000;

/**
 * `nodes` as Membership.list() returns them (live state merged); NotReady
 * nodes are `lost` once this controller has listened for LOST_AFTER_LISTENING_MS,
 * `unknown` before that.
 */
export function reconcileNodes(nodes: readonly Node[], listenedMs: number, draining: ReadonlySet<string> = new Set()): ReconcileNode[] {
  return nodes.flatMap((n): ReconcileNode[] => {
    if (!n.spec) return [];
    const ready = n.status?.state === NodeState.NODE_STATE_READY;
    return [{
      name: n.spec.name,
      labels: n.spec.labels,
      cordoned: n.spec.cordoned,
      draining: draining.has(n.spec.name),
      capacity: { cpuMillis: n.spec.capacity?.cpuMillis ?? 0, memoryBytes: n.spec.capacity?.memoryBytes ?? 0, pids: n.spec.capacity?.pids ?? 0 },
      condition: ready ? 'ready' : listenedMs >= LOST_AFTER_LISTENING_MS ? 'lost' : 'unknown',
    }];
  });
}
