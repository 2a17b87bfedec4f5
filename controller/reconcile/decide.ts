/**
 * decide(): the reconciler's brain. Pure: desired state (workloads), the
 * controller's container records, what agents report (observed) and node
 * states in; the actions that bring the cluster closer to the desired state
 * out. No I/O, no clock (`now` is given), no randomness except the injected
 * `newId`. The executor (reconciler.ts) carries the actions out and calls
 * decide() again whenever anything changes; running it twice on the same
 * input gives actions that are safe to repeat (every action is idempotent).
 *
 * Vocabulary
 * - record: a Container the controller decided on (etcd `containers/<id>`),
 *   with `desiredState` RUNNING or REMOVED.
 * - active record: desired RUNNING on a node that is Ready or not yet known to
 *   this controller (`unknown`: it just started and has not heard from it).
 * - lost node: NotReady (no heartbeat for 5 s after this controller had
 *   listened long enough), or no longer registered. Its records are marked
 *   REMOVED and their replicas placed elsewhere; when it comes back, its agent
 *   is told to remove them, then the records are deleted.
 * - template: the ContainerSpec a workload's spec makes. Records whose spec
 *   equals the current template are *current*; others are *old* and are
 *   replaced by a rolling update (a scale changes the revision but not the
 *   template, so it replaces nothing).
 * - ready: observed RUNNING and healthy (or without a health check).
 * - orphan: a container an agent reports with a workload but no record; it
 *   is removed (records are always written before RunContainer, so an orphan
 *   is left over from a lost node or an old leader).
 *
 * Rolling update (old records present): create new replicas while
 * current < desired and current + old < desired + maxSurge; remove old
 * replicas that are known not ready, then ready old replicas only while
 * ready (current + old) stays >= desired - maxUnavailable. With maxSurge and
 * maxUnavailable both 0, maxSurge counts as 1 so the update can progress.
 */
import { ContainerSpec, ContainerState, type Container, type Workload, type WorkloadSpec, type WorkloadStatus, type Condition } from '../../proto/gen/berth/v1/types.js';
import { ONE_OFF_SETTLE_MS } from './oneoff.js';
import { volumePlacement, type VolumeClaim } from './volumes.js';
import {
  chooseRemovals, schedule, withPlacements,
  type ClusterSnapshot, type ExistingReplica, type NodeSnapshot, type ResourceAmounts,
} from '../scheduler/index.js';

/** A node's state as the reconciler sees it. */
export type NodeCondition = 'ready' | 'lost' | 'unknown';

export interface ReconcileNode {
  name: string;
  labels: Record<string, string>;
  cordoned: boolean;
  /** Its replicas move elsewhere like a rolling update (NodeService.Drain). */
  draining?: boolean;
  /** Capacity as registered; 0 in a dimension means the agent did not report it (not limited). */
  capacity: ResourceAmounts;
  condition: NodeCondition;
}

export interface ObservedNode {
  node: string;
  /** A full report arrived since this controller started. */
  synced: boolean;
  containers: readonly Container[];
}

export interface ReconcileInput {
  workloads: readonly Workload[];
  records: readonly Container[];
  nodes: readonly ReconcileNode[];
  observed: readonly ObservedNode[];
  /** Seeds the scheduler's tie-breaks. */
  evalId: string;
  now: number;
  /** Makes a new container id (64 hex). */
  newId: () => string;
  /** Consecutive failed RunContainer calls per record id (the executor's count). */
  startFailures?: ReadonlyMap<string, number>;
  /** Existing local volumes: name -> the node holding it (replicas that mount one go there). */
  volumes?: ReadonlyMap<string, string>;
}

/** A replica of a new revision failing this many times (failed starts or restarts) makes the rollout roll back. */
export const ROLLBACK_AFTER_FAILURES = 3;

/** A rollout to undo: the workload goes back to the spec its old replicas run. */
export interface Rollback {
  workload: string;
  /** The revision being rolled back. */
  revision: number;
  /** The container template of the replicas that worked (templateKey), to find the revision to return to. */
  toTemplate: string;
  reason: string;
}

export type EventReason = 'Drained' | 'Scheduled' | 'Rescheduled' | 'ScalingDown' | 'Replaced' | 'Unschedulable' | 'OrphanRemoved' | 'WorkloadDeleted';

export interface PlannedEvent {
  kind: 'workload' | 'container';
  name: string;
  workload: string;
  reason: EventReason;
  message: string;
  node: string;
  severity: 'normal' | 'warning';
}

export interface RemoveAction {
  /** The container to stop and remove. */
  id: string;
  name: string;
  workload: string;
  node: string;
  /** Delete this record once the agent confirms (false for orphans, which have none). */
  deleteRecord: boolean;
}

export interface ReconcilePlan {
  /** New records (desired RUNNING) to write before running them. */
  create: Container[];
  /** Records to rewrite with desiredState REMOVED before removing their containers. */
  markRemoved: Container[];
  /** Records to (re)run on their node: RunContainer is idempotent by id. Includes `create`. */
  run: Container[];
  /** Containers to stop and remove on a Ready node. */
  remove: RemoveAction[];
  /** Records that can be deleted without calling an agent. */
  deleteRecords: string[];
  /** Status of every workload. */
  statuses: Map<string, WorkloadStatus>;
  events: PlannedEvent[];
  /** Rollouts whose new replicas keep failing. */
  rollbacks: Rollback[];
  /** Volumes used for the first time by replicas in `create`: record each as living on its node before running them. */
  claimVolumes?: VolumeClaim[];
}

const RUNNING = ContainerState.CONTAINER_STATE_RUNNING;
const REMOVED = ContainerState.CONTAINER_STATE_REMOVED;

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/** Container label carrying a workload's `restarted_unix_ms`, set by `berth rollout restart`. */
export const RESTARTED_AT_LABEL = 'io.berth.restarted-at';

/** A restart time as a label value: ISO 8601 basic format ("20260102T030405.000Z"), since label values allow no ":". */
export function restartedAtLabelValue(unixMs: number): string {
  return new Date(unixMs).toISOString().replace(/[-:]/g, '');
}

/** The container a workload's spec makes (the template). */
export function containerSpecFor(workload: string, spec: WorkloadSpec | undefined): ContainerSpec {
  const s = spec;
  return ContainerSpec.fromJSON(ContainerSpec.toJSON({
    ...ContainerSpec.decode(new Uint8Array()),
    image: s?.image ?? '',
    // A workload's `command` replaces the image's Entrypoint and `args` its Cmd.
    entrypoint: [...(s?.command ?? [])],
    command: [...(s?.args ?? [])],
    env: { ...(s?.env ?? {}) },
    ...(s?.resources ? { resources: s.resources } : {}),
    ...(s?.restart ? { restart: s.restart } : {}),
    ...(s?.health ? { health: s.health } : {}),
    ports: [...(s?.ports ?? [])],
    ...(s?.network !== undefined && s.network !== '' ? { network: s.network } : {}),
    ...(s?.volumes && s.volumes.mounts.length > 0 ? { mounts: [...s.volumes.mounts] } : {}),
    // Only when set (unset: the agent's default for replicas with ports), so templates of specs without it stay the same.
    ...(s?.drainSeconds !== undefined ? { drainSeconds: s.drainSeconds } : {}),
    // A restart (`berth rollout restart`) changes the template, so a rolling update replaces every replica.
    labels: { 'io.berth.workload': workload, ...(s?.restartedUnixMs ? { [RESTARTED_AT_LABEL]: restartedAtLabelValue(s.restartedUnixMs) } : {}) },
  }));
}

/** templateKey() per spec object: records keep their spec objects across passes, and specs are never changed in place. */
const templateKeys = new WeakMap<ContainerSpec, string>();

/** A string equal for two container specs exactly when they run the same thing. */
export function templateKey(spec: ContainerSpec | undefined): string {
  if (!spec) return JSON.stringify(sortKeys(ContainerSpec.toJSON(ContainerSpec.decode(new Uint8Array()))));
  let key = templateKeys.get(spec);
  if (key === undefined) {
    key = JSON.stringify(sortKeys(ContainerSpec.toJSON(spec)));
    templateKeys.set(spec, key);
  }
  return key;
}

function amounts(r: { cpuMillis: number; memoryBytes: number; pids: number } | undefined): ResourceAmounts {
  return { cpuMillis: r?.cpuMillis ?? 0, memoryBytes: r?.memoryBytes ?? 0, pids: r?.pids ?? 0 };
}

function unlimitedIfZero(c: ResourceAmounts): ResourceAmounts {
  return {
    cpuMillis: c.cpuMillis > 0 ? c.cpuMillis : Infinity,
    memoryBytes: c.memoryBytes > 0 ? c.memoryBytes : Infinity,
    pids: c.pids > 0 ? c.pids : Infinity,
  };
}

export function isReady(c: Container | undefined): boolean {
  if (!c || c.status?.state !== RUNNING) return false;
  const h = c.status.health;
  return h === '' || h === 'healthy';
}

/** The name of a replica: `<workload>-<replica>-<first 5 hex of the id>`. */
export function replicaName(workload: string, replica: number, id: string): string {
  return `${workload}-${replica}-${id.slice(0, 5)}`;
}

function lowestFreeIndices(used: Set<number>, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; out.length < count; i++) if (!used.has(i)) out.push(i);
  return out;
}

/** Computes the actions for one evaluation. */
export function decide(input: ReconcileInput): ReconcilePlan {
  const plan: ReconcilePlan = { create: [], markRemoved: [], run: [], remove: [], deleteRecords: [], statuses: new Map(), events: [], rollbacks: [] };
  const nodes = new Map(input.nodes.map((n) => [n.name, n]));
  const observedByNode = new Map(input.observed.map((o) => [o.node, o]));
  const observedById = new Map<string, Container>();
  for (const o of input.observed) for (const c of o.containers) observedById.set(c.id, c.node === o.node ? c : { ...c, node: o.node });
  const condition = (node: string): NodeCondition => nodes.get(node)?.condition ?? 'lost';
  const workloads = new Map(input.workloads.map((w) => [w.metadata?.name ?? '', w]));
  const recordIds = new Set(input.records.map((r) => r.id));

  // Records being removed: remove on a Ready node, delete when gone or the node is gone for good.
  for (const r of input.records) {
    if (r.desiredState !== REMOVED) continue;
    if (r.node === '' || !nodes.has(r.node)) {
      plan.deleteRecords.push(r.id);
      continue;
    }
    if (condition(r.node) !== 'ready') continue;
    const obs = observedByNode.get(r.node);
    if (obs?.synced && observedById.get(r.id)?.node !== r.node) plan.deleteRecords.push(r.id);
    else plan.remove.push({ id: r.id, name: r.name, workload: r.workload, node: r.node, deleteRecord: true });
  }

  // One-off containers its node no longer reports (auto-removed, or removed there) lose their record.
  for (const r of input.records) {
    if (r.workload !== '' || r.desiredState === REMOVED || condition(r.node) !== 'ready') continue;
    if (!observedByNode.get(r.node)?.synced || observedById.get(r.id)?.node === r.node) continue;
    if (input.now - r.updatedUnixMs >= ONE_OFF_SETTLE_MS) plan.deleteRecords.push(r.id);
  }

  // Orphans: reported by a Ready node, belonging to a workload, without a record.
  for (const o of input.observed) {
    if (condition(o.node) !== 'ready') continue;
    for (const c of o.containers) {
      if (c.workload === '' || recordIds.has(c.id) || c.status?.state === REMOVED) continue;
      plan.remove.push({ id: c.id, name: c.name, workload: c.workload, node: o.node, deleteRecord: false });
      plan.events.push({ kind: 'container', name: c.name, workload: c.workload, reason: 'OrphanRemoved', message: `removing "${c.name}" on node "${o.node}": no record (moved away while the node was lost, or left by an earlier leader)`, node: o.node, severity: 'normal' });
    }
  }

  const markRemoved = (r: Container, event?: Omit<PlannedEvent, 'kind' | 'name' | 'node' | 'workload'>): void => {
    plan.markRemoved.push({ ...r, desiredState: REMOVED, updatedUnixMs: input.now });
    if (condition(r.node) === 'ready') plan.remove.push({ id: r.id, name: r.name, workload: r.workload, node: r.node, deleteRecord: true });
    if (event) plan.events.push({ kind: 'container', name: r.name, workload: r.workload, node: r.node, ...event });
  };

  // Records of deleted workloads go.
  const running = input.records.filter((r) => r.desiredState !== REMOVED);
  for (const r of running) {
    if (r.workload !== '' && !workloads.has(r.workload)) {
      markRemoved(r, { reason: 'WorkloadDeleted', message: `removing "${r.name}": workload "${r.workload}" was deleted`, severity: 'normal' });
    }
  }

  // The scheduler's view: every node, and every active record as an allocation.
  let snapshot: ClusterSnapshot = {
    nodes: input.nodes.map((n): NodeSnapshot => ({
      name: n.name, labels: n.labels, ready: n.condition === 'ready', cordoned: n.cordoned, capacity: unlimitedIfZero(n.capacity),
    })),
    replicas: running
      .filter((r) => workloads.has(r.workload) && condition(r.node) !== 'lost')
      .map((r): ExistingReplica => ({ workload: r.workload, replica: r.id, node: r.node, resources: amounts(r.spec?.resources), createdAt: r.createdUnixMs })),
  };

  const byWorkload = new Map<string, Container[]>();
  for (const r of running) {
    const list = byWorkload.get(r.workload);
    if (list) list.push(r);
    else byWorkload.set(r.workload, [r]);
  }
  const names = [...workloads.keys()].sort();
  for (const name of names) {
    const w = workloads.get(name) as Workload;
    const spec = w.spec;
    const desired = spec?.replicas ?? 0;
    const revision = w.status?.revision ?? 0;
    const template = containerSpecFor(name, spec);
    const key = templateKey(template);
    const mine = byWorkload.get(name) ?? [];
    const active: Container[] = [];
    for (const r of mine) {
      if (condition(r.node) === 'lost') {
        markRemoved(r, { reason: 'Rescheduled', message: `replacing "${r.name}": node "${r.node}" is lost`, severity: 'warning' });
      } else {
        active.push(r);
      }
    }
    for (const r of active) {
      if (condition(r.node) === 'ready' && !observedById.has(r.id)) plan.run.push(r);
    }
    // Replicas on a draining node are replaced like those of an earlier revision.
    const draining = (r: Container): boolean => nodes.get(r.node)?.draining === true;
    const current = active.filter((r) => templateKey(r.spec) === key && !draining(r));
    const old = active.filter((r) => templateKey(r.spec) !== key || draining(r));
    if (old.some((r) => templateKey(r.spec) !== key)) {
      const failing = current.find((r) => {
        const o = observedById.get(r.id);
        return (input.startFailures?.get(r.id) ?? 0) >= ROLLBACK_AFTER_FAILURES || (o?.status?.restartCount ?? 0) >= ROLLBACK_AFTER_FAILURES;
      });
      if (failing) {
        const o = observedById.get(failing.id);
        const why = (input.startFailures?.get(failing.id) ?? 0) >= ROLLBACK_AFTER_FAILURES
          ? `"${failing.name}" failed to start ${input.startFailures?.get(failing.id)} times`
          : `"${failing.name}" restarted ${o?.status?.restartCount} times${o?.status?.reason ? ` (${o.status.reason})` : ''}`;
        const counts = new Map<string, number>();
        for (const r of old) if (templateKey(r.spec) !== key) counts.set(templateKey(r.spec), (counts.get(templateKey(r.spec)) ?? 0) + 1);
        const toTemplate = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
        plan.rollbacks.push({ workload: name, revision, toTemplate, reason: why });
      }
    }
    let surge = spec?.update?.maxSurge ?? 1;
    const maxUnavailable = spec?.update?.maxUnavailable ?? 0;
    if (surge === 0 && maxUnavailable === 0) surge = 1;

    let toCreate = desired - current.length;
    if (old.length > 0) toCreate = Math.min(toCreate, desired + surge - (current.length + old.length));
    let pending = 0;
    let pendingSummary = '';
    if (toCreate > 0) {
      const used = new Set(active.map((r) => r.replica));
      const indices = lowestFreeIndices(used, toCreate);
      const ids = indices.map(() => input.newId());
      const request = {
        workload: name,
        replicas: ids,
        resources: amounts(spec?.resources),
        placement: { nodeSelector: spec?.placement?.nodeSelector ?? {}, spread: spec?.placement?.spread ?? true, maxPerNode: spec?.placement?.maxPerNode ?? 0 },
      };
      const vp = volumePlacement(template.mounts, input.volumes, plan.claimVolumes ?? [], (volumes) =>
        schedule(snapshot, { ...request, replicas: ids.slice(0, 1), ...(volumes.length > 0 ? { volumes } : {}) }, { evalId: `${input.evalId}/${name}` }).placements[0]?.node);
      const result = schedule(snapshot, vp.volumes.length > 0 ? { ...request, volumes: vp.volumes } : request, { evalId: `${input.evalId}/${name}` });
      if (result.placements.length > 0) for (const c of vp.claims) (plan.claimVolumes ??= []).push(c);
      snapshot = withPlacements(snapshot, request, result);
      const nodeOf = new Map(result.placements.map((p) => [p.replica, p.node]));
      ids.forEach((id, i) => {
        const node = nodeOf.get(id);
        if (node === undefined) return;
        const replica = indices[i] as number;
        const c: Container = {
          id, name: replicaName(name, replica, id), node, workload: name, revision, replica,
          spec: template, createdUnixMs: input.now, desiredState: RUNNING, updatedUnixMs: input.now,
        };
        plan.create.push(c);
        plan.run.push(c);
        plan.events.push({ kind: 'container', name: c.name, workload: name, reason: 'Scheduled', message: `placed "${c.name}" (revision ${revision}) on node "${node}"`, node, severity: 'normal' });
      });
      if (result.unplaced) {
        pending = result.unplaced.replicas.length;
        pendingSummary = result.unplaced.summary;
        plan.events.push({ kind: 'workload', name, workload: name, reason: 'Unschedulable', message: `${pending} replica${pending === 1 ? '' : 's'} of "${name}" pending: ${pendingSummary}`, node: '', severity: 'warning' });
      }
    }

    // Scaling down: too many current replicas.
    const removed = new Set<string>();
    if (current.length > desired) {
      const byId = new Map(current.map((r) => [r.id, r]));
      const candidates: ClusterSnapshot = { nodes: snapshot.nodes, replicas: snapshot.replicas.filter((x) => x.workload !== name || byId.has(x.replica)) };
      for (const rm of chooseRemovals(candidates, { workload: name, count: current.length - desired })) {
        const r = byId.get(rm.replica);
        if (!r) continue;
        removed.add(r.id);
        markRemoved(r, { reason: 'ScalingDown', message: `removing "${r.name}" from node "${r.node}" (${rm.why})`, severity: 'normal' });
      }
    }

    // Rolling update: old replicas go as availability allows.
    if (old.length > 0) {
      const synced = (r: Container): boolean => observedByNode.get(r.node)?.synced ?? false;
      const readyCount = [...current, ...old].filter((r) => !removed.has(r.id) && isReady(observedById.get(r.id))).length;
      let budget = readyCount - (desired - maxUnavailable);
      const byAge = [...old].sort((a, b) => a.revision - b.revision || a.createdUnixMs - b.createdUnixMs || (a.id < b.id ? -1 : 1));
      // Old replicas known not to be ready cost no availability.
      for (const r of byAge) {
        if (synced(r) && !isReady(observedById.get(r.id))) {
          removed.add(r.id);
          markRemoved(r, { reason: 'Replaced', message: `removing "${r.name}" (revision ${r.revision}, not ready) for revision ${revision}`, severity: 'normal' });
        }
      }
      for (const r of byAge) {
        if (budget <= 0) break;
        if (removed.has(r.id) || !isReady(observedById.get(r.id))) continue;
        removed.add(r.id);
        budget--;
        markRemoved(r, draining(r)
          ? { reason: 'Drained', message: `removing "${r.name}" from draining node "${r.node}"`, severity: 'normal' }
          : { reason: 'Replaced', message: `removing "${r.name}" (revision ${r.revision}) for revision ${revision}`, severity: 'normal' });
      }
    }

    // Status.
    const live = active.filter((r) => !removed.has(r.id));
    const runningCount = live.filter((r) => observedById.get(r.id)?.status?.state === RUNNING).length;
    const readyCount = live.filter((r) => isReady(observedById.get(r.id))).length;
    const oldLeft = old.filter((r) => !removed.has(r.id)).length;
    const available = readyCount >= desired - maxUnavailable;
    const done = oldLeft === 0 && pending === 0 && live.length === desired && readyCount === desired;
    const conditions: Condition[] = [
      {
        type: 'Available', status: available,
        reason: available ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
        message: `${readyCount}/${desired} replicas ready`, sinceUnixMs: input.now,
      },
      {
        type: 'Progressing', status: !done,
        reason: done ? 'Complete' : oldLeft > 0 ? 'RollingUpdate' : pending > 0 ? 'Unschedulable' : 'ReplicasStarting',
        message: done ? `revision ${revision} complete` : oldLeft > 0 ? `${oldLeft} replica${oldLeft === 1 ? '' : 's'} of an earlier revision left to replace` : `${readyCount}/${desired} replicas ready`,
        sinceUnixMs: input.now,
      },
    ];
    if (pending > 0) {
      conditions.push({ type: 'Unschedulable', status: true, reason: 'Unschedulable', message: `${pending} pending: ${pendingSummary}`, sinceUnixMs: input.now });
    }
    plan.statuses.set(name, { revision, desired, running: runningCount, ready: readyCount, pending, conditions });
  }
  // Nothing is started that this same plan removes.
  const going = new Set(plan.markRemoved.map((r) => r.id));
  plan.run = plan.run.filter((r) => !going.has(r.id));
  return plan;
}
