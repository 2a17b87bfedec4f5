import assert from 'node:assert/strict';
import type { Workload } from '../../../proto/gen/berth/v1/types.js';
import { WorkloadSpec } from '../../../proto/gen/berth/v1/types.js';
import { decide, type ReconcileInput, type ReconcileNode, type NodeCondition } from '../../../controller/reconcile/index.js';

const VOLUMES = { mounts: [{ type: 'volume', source: 'data', destination: '/data', readOnly: false }] };

function workload(name: string, replicas: number, patch: Partial<WorkloadSpec> = {}): Workload {
  return {
    metadata: { name, labels: {}, uid: 'u', createdUnixMs: 0, updatedUnixMs: 0 },
    spec: { ...WorkloadSpec.decode(new Uint8Array()), replicas, image: 'reg/db:1', update: { maxSurge: 1, maxUnavailable: 0 }, placement: { nodeSelector: {}, spread: true, maxPerNode: 0 }, ...patch },
    status: { revision: 1, desired: replicas, running: 0, ready: 0, pending: 0, conditions: [] },
  };
}

function node(name: string, condition: NodeCondition = 'ready', cordoned = false): ReconcileNode {
  return { name, labels: {}, cordoned, capacity: { cpuMillis: 0, memoryBytes: 0, pids: 0 }, condition };
}

function input(patch: Partial<ReconcileInput>): ReconcileInput {
  let n = 1000;
  return { workloads: [], records: [], nodes: [], observed: [], evalId: 'e1', now: 5000, newId: () => (n++).toString(16).padStart(64, 'a'), ...patch };
}

describe('decide with local volumes', () => {
  const nodes3 = [node('n1'), node('n2'), node('n3')];

  it('puts every replica on the node holding the volume when it exists', () => {
    const plan = decide(input({ workloads: [workload('db', 3, { volumes: VOLUMES })], nodes: nodes3, volumes: new Map([['data', 'n2']]) }));
    assert.deepEqual(plan.create.map((c) => c.node), ['n2', 'n2', 'n2']);
    assert.deepEqual(plan.claimVolumes ?? [], []);
    assert.deepEqual(plan.create[0]?.spec?.mounts, VOLUMES.mounts);
  });

  it('claims a new volume on the node of the first replica and keeps the others with it', () => {
    const plan = decide(input({ workloads: [workload('db', 3, { volumes: VOLUMES })], nodes: nodes3 }));
    assert.equal(plan.create.length, 3);
    const where = plan.create[0]?.node;
    assert.ok(where);
    assert.deepEqual(plan.create.map((c) => c.node), [where, where, where]);
    assert.deepEqual(plan.claimVolumes, [{ name: 'data', node: where }]);
  });

  it('puts a second workload on the node where the first claimed the volume in the same pass', () => {
    const plan = decide(input({ workloads: [workload('a', 1, { volumes: VOLUMES }), workload('b', 2, { volumes: VOLUMES })], nodes: nodes3 }));
    const nodesUsed = new Set(plan.create.map((c) => c.node));
    assert.equal(nodesUsed.size, 1);
    assert.equal(plan.claimVolumes?.length, 1);
  });

  it('leaves the replicas pending with the volume node named when that node is NotReady', () => {
    const plan = decide(input({ workloads: [workload('db', 2, { volumes: VOLUMES })], nodes: [node('n1'), node('n2', 'lost'), node('n3')], volumes: new Map([['data', 'n2']]) }));
    assert.deepEqual(plan.create, []);
    const status = plan.statuses.get('db');
    assert.equal(status?.pending, 2);
    const text = JSON.stringify(status?.conditions) + JSON.stringify(plan.events);
    assert.match(text, /0\/3 nodes: volume \\"data\\" is on node \\"n2\\" which is NotReady/);
  });

  it('claims nothing when no node can take the first replica', () => {
    const plan = decide(input({ workloads: [workload('db', 1, { volumes: VOLUMES })], nodes: [node('n1', 'ready', true)] }));
    assert.deepEqual(plan.create, []);
    assert.deepEqual(plan.claimVolumes ?? [], []);
  });
});
