/**
 * Views of a workload's rollout, pure like decide(): what `berth rollout
 * status` follows (rolloutProgress) and what `berth apply --dry-run` shows
 * (previewApply, which runs decide() itself on the current cluster with the
 * applied specs, so it predicts exactly what the leader's next pass would do).
 *
 * Vocabulary (as in decide.ts)
 * - updated replica: an active record (desired RUNNING, node not lost) whose
 *   container spec equals the current template and whose node is not being
 *   drained.
 * - old replica: any other active record of the workload.
 * - complete: `desired` updated replicas, all ready, no old one, none pending.
 */
import { ContainerState, type Container, type Workload, type WorkloadRevision, type WorkloadStatus } from '../../proto/gen/berth/v1/types.js';
import { containerSpecFor, decide, isReady, templateKey, type ObservedNode, type ReconcileNode } from './decide.js';

/** Cause of a revision written by an automatic rollback: `rollback to 1: revision 2 failed: "web-1-3fa1c" failed to start 3 times`. */
export function rollbackCause(toRevision: number, failedRevision: number, reason: string): string {
  return `rollback to ${toRevision}: revision ${failedRevision} failed: ${reason}`;
}

const ROLLBACK_CAUSE = /^rollback to (\d+): revision (\d+) failed: (.*)$/s;

/** The failed revision and reason of an automatic rollback's cause, or undefined for any other cause. */
export function parseRollbackCause(cause: string): { toRevision: number; failedRevision: number; reason: string } | undefined {
  const m = ROLLBACK_CAUSE.exec(cause);
  if (!m) return undefined;
  return { toRevision: Number(m[1]), failedRevision: Number(m[2]), reason: m[3] ?? '' };
}

export interface RolloutProgress {
  workload: string;
  revision: number;
  cause: string;
  desired: number;
  updated: number;
  updatedReady: number;
  available: number;
  old: number;
  pending: number;
  pendingReason: string;
  complete: boolean;
  /** Set when the current revision is an automatic rollback: the revision that failed (0 otherwise). */
  rolledBackRevision: number;
  rollbackReason: string;
  /** Updated replicas that are not ready, and why (at most MAX_NOT_READY). */
  notReady: string[];
}

/** Most not-ready replicas a progress report names. */
export const MAX_NOT_READY = 10;

export interface ProgressInput {
  workload: Workload;
  /** Container records (any workload; others are ignored). */
  records: readonly Container[];
  nodes: readonly ReconcileNode[];
  observed: readonly ObservedNode[];
  /** The reconciler's last status of the workload (pending replicas and why). */
  status?: WorkloadStatus;
  /** The workload's revision records (for the cause of the current one). */
  history: readonly WorkloadRevision[];
}

/** Why a replica is not ready, in a few words. */
function notReadyText(c: Container | undefined): string {
  const st = c?.status;
  if (!st) return 'not reported by its node yet';
  const restarts = st.restartCount > 0 ? `, restarted ${st.restartCount} time${st.restartCount === 1 ? '' : 's'}` : '';
  switch (st.state) {
    case ContainerState.CONTAINER_STATE_RUNNING:
      return `running, health ${st.health || 'unknown'}${restarts}`;
    case ContainerState.CONTAINER_STATE_EXITED:
      return `exited with code ${st.exitCode}${st.reason ? ` (${st.reason})` : ''}${restarts}`;
    case ContainerState.CONTAINER_STATE_PENDING:
    case ContainerState.CONTAINER_STATE_CREATED:
      return `starting${st.reason ? ` (${st.reason})` : ''}${st.message ? `: ${st.message}` : ''}${restarts}`;
    default:
      return `state ${st.state}${restarts}`;
  }
}

/** How far the workload's current revision has rolled out. */
export function rolloutProgress(input: ProgressInput): RolloutProgress {
  const w = input.workload;
  const name = w.metadata?.name ?? '';
  const revision = w.status?.revision ?? 0;
  const desired = w.spec?.replicas ?? 0;
  const key = templateKey(containerSpecFor(name, w.spec));
  const nodes = new Map(input.nodes.map((n) => [n.name, n]));
  const observed = new Map<string, Container>();
  for (const o of input.observed) for (const c of o.containers) observed.set(c.id, c);
  const active = input.records.filter((r) =>
    r.workload === name && r.desiredState !== ContainerState.CONTAINER_STATE_REMOVED && (nodes.get(r.node)?.condition ?? 'lost') !== 'lost');
  const updated = active.filter((r) => templateKey(r.spec) === key && nodes.get(r.node)?.draining !== true);
  const ready = (r: Container): boolean => isReady(observed.get(r.id));
  const updatedReady = updated.filter(ready).length;
  const cause = input.history.find((h) => h.revision === revision)?.cause ?? '';
  const rb = parseRollbackCause(cause);
  const pending = input.status?.pending ?? 0;
  const pendingReason = pending > 0 ? (input.status?.conditions.find((c) => c.type === 'Unschedulable')?.message ?? '') : '';
  const old = active.length - updated.length;
  return {
    workload: name,
    revision,
    cause,
    desired,
    updated: updated.length,
    updatedReady,
    available: active.filter(ready).length,
    old,
    pending,
    pendingReason,
    complete: updated.length === desired && updatedReady === desired && old === 0 && pending === 0,
    rolledBackRevision: rb?.failedRevision ?? 0,
    rollbackReason: rb?.reason ?? '',
    notReady: [...updated]
      .sort((a, b) => a.replica - b.replica || a.name.localeCompare(b.name))
      .filter((r) => !ready(r))
      .slice(0, MAX_NOT_READY)
      .map((r) => `"${r.name}" on node "${r.node}": ${notReadyText(observed.get(r.id))}`),
  };
}

export interface PlannedReplicaView {
  /** `<workload>-<replica index>` (the id suffix is chosen when the replica is created). */
  name: string;
  node: string;
}

export interface ApplyPreviewView {
  place: PlannedReplicaView[];
  remove: PlannedReplicaView[];
  pending: number;
  pendingReason: string;
  /** Active replicas whose spec differs from the new one: a rolling update replaces them all. */
  replace: number;
}

export interface PreviewInput {
  /** Every stored workload, with the applied ones as they would be stored (new spec and revision). */
  workloads: readonly Workload[];
  /** Names of the applied workloads to preview. */
  applied: readonly string[];
  records: readonly Container[];
  nodes: readonly ReconcileNode[];
  observed: readonly ObservedNode[];
  evalId: string;
  now: number;
}

/**
 * What the next reconcile pass would do for each applied workload if the
 * apply were made now: decide() on the current records, reports and nodes.
 */
export function previewApply(input: PreviewInput): Map<string, ApplyPreviewView> {
  let n = 0;
  const plan = decide({
    workloads: input.workloads, records: input.records, nodes: input.nodes, observed: input.observed,
    evalId: input.evalId, now: input.now, newId: () => (n++).toString(16).padStart(64, '0'),
  });
  const condition = new Map(input.nodes.map((x) => [x.name, x.condition]));
  const out = new Map<string, ApplyPreviewView>();
  for (const name of input.applied) {
    const w = input.workloads.find((x) => x.metadata?.name === name);
    const key = templateKey(containerSpecFor(name, w?.spec));
    const status = plan.statuses.get(name);
    const pending = status?.pending ?? 0;
    out.set(name, {
      place: plan.create.filter((c) => c.workload === name).map((c) => ({ name: `${name}-${c.replica}`, node: c.node })),
      remove: plan.markRemoved
        .filter((c) => c.workload === name && (condition.get(c.node) ?? 'lost') !== 'lost')
        .map((c) => ({ name: c.name, node: c.node })),
      pending,
      pendingReason: pending > 0 ? (status?.conditions.find((c) => c.type === 'Unschedulable')?.message ?? '') : '',
      replace: input.records.filter((r) =>
        r.workload === name && r.desiredState !== ContainerState.CONTAINER_STATE_REMOVED
        && (condition.get(r.node) ?? 'lost') !== 'lost' && templateKey(r.spec) !== key).length,
    });
  }
  return out;
}
