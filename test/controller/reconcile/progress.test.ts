import assert from 'node:assert/strict';
import type { Workload, WorkloadRevision } from '../../../proto/gen/berth/v1/types.js';
import { Container, ContainerState, WorkloadSpec } from '../../../proto/gen/berth/v1/types.js';
import {
  RESTARTED_AT_LABEL, containerSpecFor, parseRollbackCause, previewApply, rollbackCause, rolloutProgress, templateKey,
  type NodeCondition, type ObservedNode, type ReconcileNode,
} from '../../../controller/reconcile/index.js';

const RUNNING = ContainerState.CONTAINER_STATE_RUNNING;
const REMOVED = ContainerState.CONTAINER_STATE_REMOVED;

function workload(name: string, replicas: number, patch: Partial<WorkloadSpec> = {}, revision = 1): Workload {
  return {
    metadata: { name, labels: {}, uid: 'u', createdUnixMs: 0, updatedUnixMs: 0 },
    spec: { ...WorkloadSpec.decode(new Uint8Array()), replicas, image: 'reg/web:1', update: { maxSurge: 1, maxUnavailable: 0 }, placement: { nodeSelector: {}, spread: true, maxPerNode: 0 }, ...patch },
    status: { revision, desired: replicas, running: 0, ready: 0, pending: 0, conditions: [] },
  };
}

function node(name: string, condition: NodeCondition = 'ready', memoryBytes = 0, draining = false): ReconcileNode {
  return { name, labels: {}, cordoned: false, draining, capacity: { cpuMillis: 0, memoryBytes, pids: 0 }, condition };
}

function rec(n: number, w: Workload, nodeName: string, patch: Partial<Container> = {}): Container {
  const name = w.metadata?.name ?? '';
  return {
    ...Container.decode(new Uint8Array()), id: n.toString(16).padStart(64, 'a'), name: `${name}-${n}-x`, node: nodeName, workload: name,
    revision: w.status?.revision ?? 1, replica: n, spec: containerSpecFor(name, w.spec), createdUnixMs: n, desiredState: RUNNING, ...patch,
  };
}

function seen(c: Container, patch: Partial<NonNullable<Container['status']>> = {}): Container {
  return { ...c, status: { state: RUNNING, exitCode: 0, reason: '', message: '', startedUnixMs: 1, finishedUnixMs: 0, restartCount: 0, health: '', pid: 1, ipAddress: '', draining: false, ...patch } };
}

function observedOf(nodes: readonly ReconcileNode[], containers: readonly Container[]): ObservedNode[] {
  return nodes.map((n) => ({ node: n.name, synced: true, containers: containers.filter((c) => c.node === n.name) }));
}

function history(...causes: string[]): WorkloadRevision[] {
  return causes.map((cause, i) => ({ workload: 'web', revision: i + 1, cause, createdUnixMs: 0 }));
}

describe('rolloutProgress', () => {
  const nodes = [node('n1'), node('n2'), node('n3')];

  it('is complete when every replica runs the current spec and is ready', () => {
    const w = workload('web', 3, {}, 2);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2'), rec(2, w, 'n3')];
    const p = rolloutProgress({ workload: w, records, nodes, observed: observedOf(nodes, records.map((r) => seen(r))), history: history('apply', 'scale') });
    assert.deepEqual(
      { ...p, notReady: p.notReady },
      { workload: 'web', revision: 2, cause: 'scale', desired: 3, updated: 3, updatedReady: 3, available: 3, old: 0, pending: 0, pendingReason: '', complete: true, rolledBackRevision: 0, rollbackReason: '', notReady: [] },
    );
  });

  it('counts old replicas, not-ready updated ones and says why they are not ready while a rollout is under way', () => {
    const v1 = workload('web', 3, {}, 1);
    const v2 = workload('web', 3, { image: 'reg/web:2' }, 2);
    const old = [rec(0, v1, 'n1'), rec(1, v1, 'n2')];
    const fresh = [rec(2, v2, 'n3'), rec(3, v2, 'n1')];
    const obs = observedOf(nodes, [...old.map((r) => seen(r)), seen(fresh[0] as Container, { health: 'starting', restartCount: 2 })]);
    const p = rolloutProgress({ workload: v2, records: [...old, ...fresh], nodes, observed: obs, history: history('apply', 'apply') });
    assert.equal(p.complete, false);
    assert.deepEqual([p.updated, p.updatedReady, p.available, p.old], [2, 0, 2, 2]);
    assert.deepEqual(p.notReady, [
      '"web-2-x" on node "n3": running, health starting, restarted 2 times',
      '"web-3-x" on node "n1": not reported by its node yet',
    ]);
  });

  it('leaves out replicas on lost nodes and records being removed, and counts draining nodes as old', () => {
    const w = workload('web', 2);
    const ns = [node('n1'), node('n2', 'lost'), node('n3', 'ready', 0, true)];
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2'), rec(2, w, 'n3'), rec(3, w, 'n1', { desiredState: REMOVED })];
    const p = rolloutProgress({ workload: w, records, nodes: ns, observed: observedOf(ns, records.map((r) => seen(r))), history: history('apply') });
    assert.deepEqual([p.updated, p.old, p.available, p.complete], [1, 1, 2, false]);
  });

  it('reports pending replicas with the scheduler summary from the stored status', () => {
    const w = workload('web', 2);
    const status = {
      revision: 1, desired: 2, running: 0, ready: 0, pending: 2,
      conditions: [{ type: 'Unschedulable', status: true, reason: 'Unschedulable', message: '2 pending: 0/3 nodes: 3 insufficient memory', sinceUnixMs: 0 }],
    };
    const p = rolloutProgress({ workload: w, records: [], nodes, observed: observedOf(nodes, []), status, history: history('apply') });
    assert.deepEqual([p.pending, p.pendingReason, p.complete], [2, '2 pending: 0/3 nodes: 3 insufficient memory', false]);
  });

  it('names the failed revision and why when the current revision is an automatic rollback', () => {
    const w = workload('web', 1, {}, 3);
    const records = [rec(0, w, 'n1')];
    const cause = rollbackCause(1, 2, '"web-1-abcde" failed to start 3 times');
    assert.equal(cause, 'rollback to 1: revision 2 failed: "web-1-abcde" failed to start 3 times');
    const p = rolloutProgress({ workload: w, records, nodes, observed: observedOf(nodes, records.map((r) => seen(r))), history: history('apply', 'apply', cause) });
    assert.deepEqual([p.rolledBackRevision, p.rollbackReason, p.complete], [2, '"web-1-abcde" failed to start 3 times', true]);
    assert.equal(parseRollbackCause('undo to 1'), undefined);
    assert.equal(parseRollbackCause('rollback to 1'), undefined);
  });
});

describe('containerSpecFor with a restart time', () => {
  it('adds the restarted-at label, so a restart changes the template and nothing else', () => {
    const w = workload('web', 2);
    const restarted = containerSpecFor('web', { ...(w.spec as WorkloadSpec), restartedUnixMs: Date.UTC(2026, 0, 2, 3, 4, 5) });
    assert.equal(restarted.labels[RESTARTED_AT_LABEL], '20260102T030405.000Z');
    assert.notEqual(templateKey(restarted), templateKey(containerSpecFor('web', w.spec)));
    assert.deepEqual({ ...restarted, labels: {} }, { ...containerSpecFor('web', w.spec), labels: {} });
  });
});

describe('previewApply', () => {
  const nodes = [node('n1', 'ready', 1024), node('n2', 'ready', 1024), node('n3', 'ready', 1024)];
  const preview = (stored: Workload[], next: Workload, records: Container[], ns = nodes) => previewApply({
    workloads: [...stored.filter((w) => w.metadata?.name !== next.metadata?.name), next], applied: [next.metadata?.name ?? ''],
    records, nodes: ns, observed: observedOf(ns, records.map((r) => seen(r))), evalId: 'dry', now: 1000,
  }).get(next.metadata?.name ?? '');

  it('places every replica of a new workload, spread, named workload-index', () => {
    const p = preview([], workload('web', 3), []);
    assert.deepEqual(p?.place.map((x) => x.name).sort(), ['web-0', 'web-1', 'web-2']);
    assert.deepEqual(p?.place.map((x) => x.node).sort(), ['n1', 'n2', 'n3']);
    assert.deepEqual([p?.remove, p?.pending, p?.replace], [[], 0, 0]);
  });

  it('places only the new replicas of a scale up and names the ones a scale down removes', () => {
    const w = workload('web', 2);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2')];
    const up = preview([w], workload('web', 3, {}, 2), records);
    assert.deepEqual(up?.place, [{ name: 'web-2', node: 'n3' }]);
    const down = preview([w], workload('web', 1, {}, 2), records);
    assert.deepEqual([down?.place.length, down?.remove.length, down?.replace], [0, 1, 0]);
  });

  it('shows the first step of a rolling update and how many replicas it replaces', () => {
    const w = workload('web', 3);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2'), rec(2, w, 'n3')];
    const p = preview([w], workload('web', 3, { image: 'reg/web:2' }, 2), records);
    assert.equal(p?.replace, 3);
    assert.equal(p?.place.length, 1, 'maxSurge 1: one new replica first');
    assert.equal(p?.remove.length, 0, 'maxUnavailable 0: no ready replica goes before its replacement is ready');
  });

  it('reports replicas no node can take with the scheduler summary', () => {
    const p = preview([], workload('big', 2, { resources: { cpuMillis: 0, memoryBytes: 4096, pids: 0 } }), []);
    assert.deepEqual(p?.place, []);
    assert.equal(p?.pending, 2);
    assert.match(p?.pendingReason ?? '', /^2 pending: 0\/3 nodes: 3 insufficient memory/);
  });
});
