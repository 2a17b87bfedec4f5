/**
 * Rejection reasons: one named constant per filter, so `berth describe` can
 * say why a replica is pending ("0/3 nodes: 2 insufficient memory, 1
 * cordoned"). The constant is the stable, machine-readable code; reasonText
 * gives the words people read. The order of REASON_ORDER is the order the
 * filters run in, and the order of reasons with equal counts in a summary.
 */
import type { ReasonCount } from './types.js';

export const RejectReason = {
  NodeNotReady: 'node_not_ready',
  NodeCordoned: 'node_cordoned',
  NodeSelectorMismatch: 'node_selector_mismatch',
  NodeNotAllowed: 'node_not_allowed',
  VolumeOnOtherNode: 'volume_on_other_node',
  InsufficientCpu: 'insufficient_cpu',
  InsufficientMemory: 'insufficient_memory',
  InsufficientPids: 'insufficient_pids',
  MaxPerNodeReached: 'max_per_node_reached',
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

const TEXT: Readonly<Record<RejectReason, string>> = {
  node_not_ready: 'node not ready',
  node_cordoned: 'cordoned',
  node_selector_mismatch: 'node selector mismatch',
  node_not_allowed: 'not a required node',
  volume_on_other_node: 'volume on another node',
  insufficient_cpu: 'insufficient cpu',
  insufficient_memory: 'insufficient memory',
  insufficient_pids: 'insufficient pids',
  max_per_node_reached: 'max per node reached',
};

/** Every reason, in the order the filters run. */
export const REASON_ORDER: readonly RejectReason[] = [
  RejectReason.NodeNotReady,
  RejectReason.NodeCordoned,
  RejectReason.NodeSelectorMismatch,
  RejectReason.NodeNotAllowed,
  RejectReason.VolumeOnOtherNode,
  RejectReason.InsufficientCpu,
  RejectReason.InsufficientMemory,
  RejectReason.InsufficientPids,
  RejectReason.MaxPerNodeReached,
];

/** The words for a reason ("insufficient memory"). */
export function reasonText(reason: RejectReason): string {
  return TEXT[reason];
}

/**
 * Turns per-reason node counts into ReasonCounts: most frequent first, equal
 * counts in filter order; reasons with no nodes are left out.
 */
export function countReasons(counts: ReadonlyMap<RejectReason, number>): ReasonCount[] {
  const out: ReasonCount[] = [];
  for (const reason of REASON_ORDER) {
    const nodes = counts.get(reason) ?? 0;
    if (nodes > 0) out.push({ reason, text: TEXT[reason], nodes });
  }
  // Array.prototype.sort is stable, so equal counts keep filter order.
  out.sort((a, b) => b.nodes - a.nodes);
  return out;
}

/**
 * The one-line summary: "0/3 nodes: 2 insufficient memory, 1 cordoned".
 * `available` is how many nodes could take the replica, `total` how many
 * nodes the snapshot has.
 */
export function formatSummary(available: number, total: number, reasons: readonly ReasonCount[]): string {
  if (total === 0) return '0/0 nodes: no nodes registered';
  const parts = reasons.map((r) => `${r.nodes} ${r.text}`);
  return parts.length === 0 ? `${available}/${total} nodes` : `${available}/${total} nodes: ${parts.join(', ')}`;
}
