/**
 * chooseRemovals(): which replicas of a workload to remove when scaling
 * down. Deterministic, no seed needed. Preference, strongest first:
 *
 * 1. pending replicas (on no node): removing them stops nothing;
 * 2. replicas on nodes the snapshot no longer lists;
 * 3. replicas on NotReady nodes;
 * 4. replicas on cordoned nodes;
 * 5. then, one at a time, from the node that has the most replicas of the
 *    workload at that moment (so what stays is spread evenly);
 *
 * and among equals the newest replica (largest createdAt; no createdAt
 * counts as oldest), then the largest replica id, then the node name.
 */
import { SchedulerInputError } from './errors.js';
import type { ClusterSnapshot, ExistingReplica, NodeSnapshot, Removal, RemovalRequest, RemovalWhy } from './types.js';

const WHY_BY_CLASS: readonly RemovalWhy[] = ['pending', 'node-missing', 'node-not-ready', 'node-cordoned', 'most-on-node'];

interface Group {
  readonly node: string | undefined;
  readonly cls: number;
  /** Newest first; `next` is the index of the next one to remove. */
  readonly replicas: ExistingReplica[];
  next: number;
}

function created(r: ExistingReplica): number {
  return typeof r.createdAt === 'number' && !Number.isNaN(r.createdAt) ? r.createdAt : -Infinity;
}

/** Newest first, then the larger id. */
function newerFirst(a: ExistingReplica, b: ExistingReplica): number {
  const d = created(b) - created(a);
  if (d !== 0 && !Number.isNaN(d)) return d;
  return a.replica < b.replica ? 1 : a.replica > b.replica ? -1 : 0;
}

function cmpName(a: string | undefined, b: string | undefined): number {
  const x = a ?? '';
  const y = b ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

/** True when group a should give up a replica before group b. */
function removeFrom(a: Group, b: Group): boolean {
  if (a.cls !== b.cls) return a.cls < b.cls;
  const ra = a.replicas.length - a.next;
  const rb = b.replicas.length - b.next;
  if (ra !== rb) return ra > rb;
  const c = newerFirst(a.replicas[a.next] as ExistingReplica, b.replicas[b.next] as ExistingReplica);
  if (c !== 0) return c < 0;
  return cmpName(a.node, b.node) < 0;
}

/**
 * Picks `request.count` replicas of `request.workload` from the snapshot to
 * remove, in removal order. Throws SchedulerInputError when count is not a
 * whole number or exceeds the workload's replicas.
 */
export function chooseRemovals(snapshot: ClusterSnapshot, request: RemovalRequest): Removal[] {
  const workload = request?.workload;
  if (typeof workload !== 'string' || workload === '') {
    throw new SchedulerInputError(`failed to choose replicas to remove: request.workload: expected a non-empty string, got ${JSON.stringify(workload)}`, {
      field: 'request.workload',
    });
  }
  const mine = snapshot.replicas.filter((r) => r.workload === workload);
  const count = request.count;
  if (!Number.isSafeInteger(count) || count < 0 || count > mine.length) {
    throw new SchedulerInputError(
      `failed to choose replicas of workload "${workload}" to remove: request.count: expected a whole number from 0 to ${mine.length} (the workload's replicas), got ${String(count)}`,
      { field: 'request.count', workload },
    );
  }
  if (count === 0) return [];

  const nodes = new Map<string, NodeSnapshot>();
  for (const n of snapshot.nodes) nodes.set(n.name, n);
  const groups = new Map<string | undefined, Group>();
  for (const r of mine) {
    let g = groups.get(r.node);
    if (g === undefined) {
      const n = r.node === undefined ? undefined : nodes.get(r.node);
      const cls = r.node === undefined ? 0 : n === undefined ? 1 : !n.ready ? 2 : n.cordoned ? 3 : 4;
      g = { node: r.node, cls, replicas: [], next: 0 };
      groups.set(r.node, g);
    }
    g.replicas.push(r);
  }
  const live: Group[] = [];
  for (const g of groups.values()) {
    g.replicas.sort(newerFirst);
    live.push(g);
  }

  const out: Removal[] = [];
  while (out.length < count) {
    let best = 0;
    for (let j = 1; j < live.length; j++) {
      if (removeFrom(live[j] as Group, live[best] as Group)) best = j;
    }
    const g = live[best] as Group;
    const r = g.replicas[g.next++] as ExistingReplica;
    out.push({ replica: r.replica, node: r.node, why: WHY_BY_CLASS[g.cls] as RemovalWhy });
    if (g.next === g.replicas.length) live.splice(best, 1);
  }
  return out;
}
