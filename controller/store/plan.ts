/**
 * The store's decisions, shared by every implementation: what an apply, a scale
 * or a delete changes, computed from what is stored now. No I/O here; etcd.ts and
 * memory.ts read the current values, call these, and write the result atomically.
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, NotFoundError, canonicalWorkloadSpec } from '../../lib/index.js';
import { Container, Node, NodeSpec, NodeState, NodeStatus, Workload, WorkloadSpec } from '../../proto/gen/berth/v1/types.js';
import type { WorkloadRevision } from '../../proto/gen/berth/v1/types.js';
import { MAX_REPLICAS, REVISIONS_KEPT, type ApplyOutcome, type LabelSelector, type WorkloadDocument } from './types.js';

/** One workload to store, with the revision record to add (when the spec changed). */
export interface WorkloadWrite {
  workload: Workload;
  revision?: WorkloadRevision;
  /** Revision records numbered at or below this are deleted (0: none). */
  pruneThrough: number;
}

export interface ApplyPlan {
  outcomes: ApplyOutcome[];
  /** Only the workloads that change; empty when everything is unchanged. */
  writes: WorkloadWrite[];
}

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** A deep copy through the wire format: fills defaults and drops anything the schema does not know. */
export function copyMessage<T>(codec: Codec<T>, value: T): T {
  return codec.decode(codec.encode(value).finish());
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/** A string that is equal for two specs exactly when they are the same revision (lib/workload's canonical form). */
export function canonicalSpec(spec: WorkloadSpec | undefined): string {
  return canonicalWorkloadSpec(spec ?? WorkloadSpec.decode(new Uint8Array()));
}

export function canonicalLabels(labels: Record<string, string> | undefined): string {
  return JSON.stringify(sortKeys(labels ?? {}));
}

/** A deep copy, so callers never share objects with a store. */
export function cloneWorkload(w: Workload): Workload {
  return Workload.decode(Workload.encode(w).finish());
}

export function matchesSelector(labels: Record<string, string> | undefined, selector: LabelSelector | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) {
    if (!labels || labels[k] !== v) return false;
  }
  return true;
}

export function checkReplicas(replicas: number, field = 'replicas'): void {
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) {
    throw new InvalidArgumentError(`${field}: expected a whole number from 0 to ${MAX_REPLICAS}, got "${replicas}"`, { field });
  }
}

function pruneThrough(revision: number): number {
  return Math.max(0, revision - REVISIONS_KEPT);
}

function newRevision(name: string, revision: number, spec: WorkloadSpec, now: number, cause: string): WorkloadRevision {
  return { workload: name, revision, spec: copyMessage(WorkloadSpec, spec), createdUnixMs: now, cause };
}

/**
 * Decides the outcome of applying `docs` given the stored workloads (`current`,
 * by name; undefined for names not stored).
 */
export function planApply(
  docs: readonly WorkloadDocument[],
  current: ReadonlyMap<string, Workload | undefined>,
  now: number,
  cause = 'apply',
): ApplyPlan {
  const seen = new Map<string, number>();
  docs.forEach((d, i) => {
    const first = seen.get(d.name);
    if (first !== undefined) {
      throw new InvalidArgumentError(
        `document ${i + 1}: metadata.name: workload "${d.name}" is already defined by document ${first + 1}; expected each name once per file`,
        { field: 'metadata.name' },
      );
    }
    seen.set(d.name, i);
    checkReplicas(d.spec.replicas, `document ${i + 1}: spec.replicas`);
  });
  const outcomes: ApplyOutcome[] = [];
  const writes: WorkloadWrite[] = [];
  for (const doc of docs) {
    const old = current.get(doc.name);
    if (!old) {
      const workload: Workload = {
        metadata: { name: doc.name, labels: { ...doc.labels }, uid: randomUUID(), createdUnixMs: now, updatedUnixMs: now },
        spec: copyMessage(WorkloadSpec, doc.spec),
        status: { revision: 1, desired: doc.spec.replicas, running: 0, ready: 0, pending: 0, conditions: [] },
      };
      writes.push({ workload, revision: newRevision(doc.name, 1, doc.spec, now, cause), pruneThrough: 0 });
      outcomes.push({ name: doc.name, action: 'created', revision: 1, workload: cloneWorkload(workload) });
      continue;
    }
    // The autoscaler owns the count of an autoscaled workload: re-applying its file keeps the current count (within the new min..max).
    const docSpec = keepAutoscaledReplicas(doc.spec, old.spec);
    const specChanged = canonicalSpec(old.spec) !== canonicalSpec(docSpec);
    const labelsChanged = canonicalLabels(old.metadata?.labels) !== canonicalLabels(doc.labels);
    const oldRevision = old.status?.revision ?? 0;
    if (!specChanged && !labelsChanged) {
      outcomes.push({ name: doc.name, action: 'unchanged', revision: oldRevision, workload: cloneWorkload(old) });
      continue;
    }
    const workload = cloneWorkload(old);
    workload.metadata = { ...(workload.metadata ?? { name: doc.name, uid: '', createdUnixMs: now, labels: {} }), labels: { ...doc.labels }, updatedUnixMs: now };
    let write: WorkloadWrite;
    if (specChanged) {
      const revision = oldRevision + 1;
      workload.spec = copyMessage(WorkloadSpec, docSpec);
      workload.status = { ...(workload.status ?? { running: 0, ready: 0, pending: 0, conditions: [] }), revision, desired: docSpec.replicas };
      write = { workload, revision: newRevision(doc.name, revision, docSpec, now, cause), pruneThrough: pruneThrough(revision) };
    } else {
      write = { workload, pruneThrough: 0 };
    }
    writes.push(write);
    outcomes.push({ name: doc.name, action: 'configured', revision: workload.status?.revision ?? oldRevision, workload: cloneWorkload(workload) });
  }
  return { outcomes, writes };
}

/** With autoscale in both the stored and the new spec, the new spec keeps the stored count, clamped to the new min..max. */
export function keepAutoscaledReplicas(spec: WorkloadSpec, stored: WorkloadSpec | undefined): WorkloadSpec {
  if (!spec.autoscale || !stored?.autoscale) return spec;
  const replicas = Math.min(Math.max(stored.replicas, spec.autoscale.min), spec.autoscale.max);
  return replicas === spec.replicas ? spec : { ...spec, replicas };
}

/** Decides a scale; undefined when the workload already has that many replicas. */
export function planScale(name: string, old: Workload | undefined, replicas: number, now: number): WorkloadWrite | undefined {
  checkReplicas(replicas);
  if (!old) throw new NotFoundError('workload', name);
  if ((old.spec?.replicas ?? 0) === replicas) return undefined;
  const workload = cloneWorkload(old);
  const spec = copyMessage(WorkloadSpec, { ...(workload.spec ?? WorkloadSpec.decode(new Uint8Array())), replicas });
  const revision = (old.status?.revision ?? 0) + 1;
  workload.spec = spec;
  workload.status = { ...(workload.status ?? { running: 0, ready: 0, pending: 0, conditions: [] }), revision, desired: replicas };
  if (workload.metadata) workload.metadata.updatedUnixMs = now;
  return { workload, revision: newRevision(name, revision, spec, now, 'scale'), pruneThrough: pruneThrough(revision) };
}

/** The names to delete, in request order without repeats; throws NotFound for unknown ones unless ignored. */
export function planDelete(names: readonly string[], exists: (name: string) => boolean, ignoreNotFound: boolean): string[] {
  const unique = [...new Set(names)];
  const missing = unique.filter((n) => !exists(n));
  if (missing.length > 0 && !ignoreNotFound) {
    throw new NotFoundError('workload', missing[0] as string, {
      message: missing.length === 1
        ? `workload "${missing[0]}" not found`
        : `workloads ${missing.map((m) => `"${m}"`).join(', ')} not found`,
    });
  }
  return unique.filter(exists);
}

/** The node record after a registration: the agent's facts, the stored cordon flag and status. */
export function planRegister(old: Node | undefined, spec: NodeSpec, now: number): Node {
  const next = copyMessage(NodeSpec, { ...spec, cordoned: old?.spec?.cordoned ?? false });
  const base = old?.status ?? { ...NodeStatus.decode(new Uint8Array()), state: NodeState.NODE_STATE_NOT_READY, reason: 'registered; waiting for the first heartbeat' };
  const status = copyMessage(NodeStatus, { ...base, registeredUnixMs: now });
  return { spec: next, status };
}

export function cloneNode(n: Node): Node {
  return Node.decode(Node.encode(n).finish());
}

const CONTAINER_ID = /^[0-9a-f]{64}$/;

/** Throws InvalidArgumentError unless `id` is a container id (64 lowercase hex characters). */
export function checkContainerId(id: string, field = 'id'): string {
  if (!CONTAINER_ID.test(id)) {
    throw new InvalidArgumentError(`${field}: expected a container id of 64 lowercase hex characters, got ${JSON.stringify(id.length > 80 ? `${id.slice(0, 77)}...` : id)}`, { field });
  }
  return id;
}

export function cloneContainer(c: Container): Container {
  return Container.decode(Container.encode(c).finish());
}

/** Checks a record change before anything is written; returns the ids to delete without repeats. */
export function checkRecordChange(put: readonly Container[], del: readonly string[]): string[] {
  put.forEach((c, i) => checkContainerId(c.id, `put[${i}].id`));
  del.forEach((id, i) => checkContainerId(id, `delete[${i}]`));
  return [...new Set(del)];
}

/** Events matching a filter, oldest first, the newest `limit` of them. */
export function filterEvents<T extends { unixMs: number; workload: string; kind: string }>(events: readonly T[], filter: { sinceUnixMs?: number; limit?: number; workload?: string; kind?: string }): T[] {
  const out = events.filter((e) =>
    (filter.sinceUnixMs === undefined || e.unixMs >= filter.sinceUnixMs) &&
    (filter.workload === undefined || filter.workload === '' || e.workload === filter.workload) &&
    (filter.kind === undefined || filter.kind === '' || e.kind === filter.kind));
  return filter.limit ? out.slice(Math.max(0, out.length - filter.limit)) : out;
}
