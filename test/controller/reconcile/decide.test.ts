import assert from 'node:assert/strict';
import type { Workload} from '../../../proto/gen/berth/v1/types.js';
import { Container, ContainerState, WorkloadSpec } from '../../../proto/gen/berth/v1/types.js';
import {
  ONE_OFF_SETTLE_MS, containerSpecFor, decide, type ObservedNode, type ReconcileInput, type ReconcileNode, type NodeCondition,
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

function node(name: string, condition: NodeCondition = 'ready', memoryBytes = 0): ReconcileNode {
  return { name, labels: {}, cordoned: false, capacity: { cpuMillis: 0, memoryBytes, pids: 0 }, condition };
}

function id(n: number): string {
  return n.toString(16).padStart(64, 'a');
}

function rec(n: number, w: Workload, nodeName: string, patch: Partial<Container> = {}): Container {
  const name = w.metadata?.name ?? '';
  return {
    ...Container.decode(new Uint8Array()), id: id(n), name: `${name}-${n}-x`, node: nodeName, workload: name, revision: w.status?.revision ?? 1,
    replica: n, spec: containerSpecFor(name, w.spec), createdUnixMs: n, desiredState: RUNNING, ...patch,
  };
}

function seen(c: Container, health = ''): Container {
  return { ...c, status: { state: RUNNING, exitCode: 0, reason: '', message: '', startedUnixMs: 1, finishedUnixMs: 0, restartCount: 0, health, pid: 1, ipAddress: '', draining: false } };
}

function observed(nodeName: string, containers: Container[], synced = true): ObservedNode {
  return { node: nodeName, synced, containers };
}

function input(patch: Partial<ReconcileInput>): ReconcileInput {
  let n = 1000;
  return { workloads: [], records: [], nodes: [], observed: [], evalId: 'e1', now: 5000, newId: () => id(n++), ...patch };
}

function perNode(cs: readonly Container[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of cs) out[c.node] = (out[c.node] ?? 0) + 1;
  return out;
}

describe('decide', () => {
  const nodes3 = [node('n1'), node('n2'), node('n3')];

  it('creates every missing replica spread 2/2/2 when a workload is new', () => {
    const plan = decide(input({ workloads: [workload('web', 6)], nodes: nodes3 }));
    assert.equal(plan.create.length, 6);
    assert.deepEqual(perNode(plan.create), { n1: 2, n2: 2, n3: 2 });
    assert.deepEqual(plan.run.map((c) => c.id), plan.create.map((c) => c.id));
    assert.deepEqual(plan.create.map((c) => c.replica).sort(), [0, 1, 2, 3, 4, 5]);
    assert.ok(plan.create.every((c) => c.desiredState === RUNNING && /^web-\d-[0-9a-f]{5}$/.test(c.name) && c.spec?.image === 'reg/web:1'));
    assert.equal(plan.statuses.get('web')?.pending, 0);
    assert.deepEqual(plan.markRemoved, []);
  });

  it('creates only the difference when scaling up and marks the surplus when scaling down', () => {
    const w = workload('web', 5, {}, 2);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2')];
    const up = decide(input({ workloads: [w], nodes: nodes3, records, observed: [observed('n1', [seen(records[0] as Container)]), observed('n2', [seen(records[1] as Container)])] }));
    assert.equal(up.create.length, 3);
    assert.deepEqual(perNode([...records, ...up.create]), { n1: 2, n2: 2, n3: 1 });
    assert.deepEqual(up.create.map((c) => c.replica).sort(), [2, 3, 4]);

    const w2 = workload('web', 2, {}, 3);
    const five = [...records, ...up.create];
    const down = decide(input({ workloads: [w2], nodes: nodes3, records: five, observed: nodes3.map((n) => observed(n.name, five.filter((c) => c.node === n.name).map((c) => seen(c)))) }));
    assert.equal(down.create.length, 0);
    assert.equal(down.markRemoved.length, 3);
    assert.ok(down.markRemoved.every((c) => c.desiredState === REMOVED));
    assert.deepEqual(down.remove.map((r) => r.id).sort(), down.markRemoved.map((c) => c.id).sort());
    assert.ok(down.remove.every((r) => r.deleteRecord));
    const left = five.filter((c) => !down.markRemoved.some((m) => m.id === c.id));
    assert.equal(new Set(left.map((c) => c.node)).size, 2, 'the two that stay are on different nodes');
  });

  it('re-places the replicas of a lost node and marks their records removed without calling the lost agent', () => {
    const w = workload('web', 6);
    const records = [0, 1, 2, 3, 4, 5].map((i) => rec(i, w, `n${(i % 3) + 1}`));
    const plan = decide(input({ workloads: [w], nodes: [node('n1'), node('n2'), node('n3', 'lost')], records }));
    const lost = records.filter((r) => r.node === 'n3').map((r) => r.id).sort();
    assert.deepEqual(plan.markRemoved.map((c) => c.id).sort(), lost);
    assert.deepEqual(plan.remove, []);
    assert.equal(plan.create.length, 2);
    assert.ok(plan.create.every((c) => c.node !== 'n3'));
    assert.deepEqual(plan.create.map((c) => c.replica).sort(), records.filter((r) => r.node === 'n3').map((r) => r.replica).sort());
    assert.ok(plan.events.some((e) => e.reason === 'Rescheduled' && e.node === 'n3'));
  });

  it('removes moved-away replicas and orphans when a lost node comes back, and deletes the records after', () => {
    const w = workload('web', 2);
    const stale = rec(7, w, 'n3', { desiredState: REMOVED });
    const live = [rec(0, w, 'n1'), rec(1, w, 'n2')];
    const orphan = { ...rec(9, w, 'n3'), id: id(9) };
    const obs = [observed('n1', [seen(live[0] as Container)]), observed('n2', [seen(live[1] as Container)]), observed('n3', [seen(stale), seen(orphan)])];
    const plan = decide(input({ workloads: [w], nodes: nodes3, records: [...live, stale], observed: obs }));
    assert.deepEqual(plan.create, []);
    assert.deepEqual(plan.remove.map((r) => [r.id, r.node, r.deleteRecord]).sort(), [[stale.id, 'n3', true], [orphan.id, 'n3', false]].sort());
    // Once the agent reports them gone, the record is deleted without another call.
    const after = decide(input({ workloads: [w], nodes: nodes3, records: [...live, stale], observed: [...obs.slice(0, 2), observed('n3', [])] }));
    assert.deepEqual(after.remove, []);
    assert.deepEqual(after.deleteRecords, [stale.id]);
  });

  it('re-runs records without creating new ones when a leader restarts after writing them', () => {
    const w = workload('web', 3);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2'), rec(2, w, 'n3')];
    // Written, but RunContainer never reached n2 and n3 before the crash.
    const obs = [observed('n1', [seen(records[0] as Container)]), observed('n2', []), observed('n3', [], false)];
    const once = decide(input({ workloads: [w], nodes: nodes3, records, observed: obs }));
    assert.deepEqual(once.create, []);
    assert.deepEqual(once.markRemoved, []);
    assert.deepEqual(once.run.map((c) => c.id).sort(), [records[1]?.id, records[2]?.id].sort());
    assert.deepEqual(decide(input({ workloads: [w], nodes: nodes3, records, observed: obs })).run.map((c) => c.id), once.run.map((c) => c.id));
  });

  it('leaves replicas on nodes it has not heard from yet alone instead of re-placing them', () => {
    const w = workload('web', 2);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2')];
    const plan = decide(input({ workloads: [w], nodes: [node('n1', 'unknown'), node('n2', 'unknown')], records }));
    assert.deepEqual([plan.create, plan.markRemoved, plan.run, plan.remove], [[], [], [], []]);
  });

  it('keeps replicas that fit nowhere pending with the scheduler reason summary in the status', () => {
    const w = workload('web', 3, { resources: { cpuMillis: 0, memoryBytes: 512 * 1024 * 1024, pids: 0 } });
    const nodes = [node('n1', 'ready', 1024 * 1024 * 1024), node('n2', 'ready', 100 * 1024 * 1024), { ...node('n3'), cordoned: true }];
    const plan = decide(input({ workloads: [w], nodes }));
    assert.equal(plan.create.length, 2);
    assert.deepEqual(perNode(plan.create), { n1: 2 });
    const status = plan.statuses.get('web');
    assert.equal(status?.pending, 1);
    assert.equal(status?.desired, 3);
    const cond = status?.conditions.find((c) => c.type === 'Unschedulable');
    assert.equal(cond?.message, '1 pending: 0/3 nodes: 2 insufficient memory, 1 cordoned');
    assert.ok(plan.events.some((e) => e.reason === 'Unschedulable' && /0\/3 nodes: 2 insufficient memory, 1 cordoned/.test(e.message)));
  });

  it('replaces old replicas one at a time when the image changes, waiting for new ones to be ready', () => {
    const v1 = workload('web', 3);
    const v2 = workload('web', 3, { image: 'reg/web:2' }, 2);
    const old = [rec(0, v1, 'n1'), rec(1, v1, 'n2'), rec(2, v1, 'n3')];
    const obsOld = nodes3.map((n) => observed(n.name, old.filter((c) => c.node === n.name).map((c) => seen(c))));
    const step1 = decide(input({ workloads: [v2], nodes: nodes3, records: old, observed: obsOld }));
    assert.equal(step1.create.length, 1, 'maxSurge 1');
    assert.equal(step1.create[0]?.spec?.image, 'reg/web:2');
    assert.deepEqual(step1.markRemoved, [], 'maxUnavailable 0: nothing goes before a new replica is ready');
    assert.equal(step1.statuses.get('web')?.conditions.find((c) => c.type === 'Progressing')?.reason, 'RollingUpdate');
    const fresh = step1.create[0] as Container;
    // Not ready yet: still nothing removed, nothing more created.
    const step2 = decide(input({ workloads: [v2], nodes: nodes3, records: [...old, fresh], observed: obsOld }));
    assert.deepEqual([step2.create.length, step2.markRemoved.length], [0, 0]);
    // Ready: one old replica goes.
    const obs3 = obsOld.map((o) => (o.node === fresh.node ? observed(o.node, [...o.containers, seen(fresh)]) : o));
    const step3 = decide(input({ workloads: [v2], nodes: nodes3, records: [...old, fresh], observed: obs3 }));
    assert.equal(step3.markRemoved.length, 1);
    assert.equal(step3.markRemoved[0]?.revision, 1);
  });

  it('removes the replicas of a deleted workload', () => {
    const w = workload('web', 2);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2')];
    const plan = decide(input({ workloads: [], nodes: nodes3, records }));
    assert.deepEqual(plan.markRemoved.map((c) => c.id).sort(), records.map((c) => c.id).sort());
    assert.equal(plan.remove.length, 2);
    assert.equal(plan.statuses.size, 0);
  });

  it('does not double-count: applying the plan and deciding again asks for nothing new', () => {
    const w = workload('web', 4);
    const first = decide(input({ workloads: [w], nodes: nodes3 }));
    const obs = nodes3.map((n) => observed(n.name, first.create.filter((c) => c.node === n.name).map((c) => seen(c))));
    const second = decide(input({ workloads: [w], nodes: nodes3, records: first.create, observed: obs }));
    assert.deepEqual([second.create, second.markRemoved, second.run, second.remove, second.deleteRecords], [[], [], [], [], []]);
    const s = second.statuses.get('web');
    assert.deepEqual([s?.desired, s?.running, s?.ready, s?.pending], [4, 4, 4, 0]);
    assert.equal(s?.conditions.find((c) => c.type === 'Progressing')?.reason, 'Complete');
    assert.equal(s?.conditions.find((c) => c.type === 'Available')?.status, true);
  });

  it('drops the record of a one-off container its node stopped reporting, once it has settled', () => {
    const oneOff: Container = { ...Container.decode(new Uint8Array()), id: id(5), name: 'brave-turing', node: 'n1', workload: '', desiredState: RUNNING, updatedUnixMs: 1000 };
    const young = decide(input({ nodes: nodes3, records: [oneOff], observed: [observed('n1', [])], now: 1000 + ONE_OFF_SETTLE_MS - 1 }));
    assert.deepEqual([young.deleteRecords, young.run, young.remove], [[], [], []]);
    const settled = decide(input({ nodes: nodes3, records: [oneOff], observed: [observed('n1', [])], now: 1000 + ONE_OFF_SETTLE_MS }));
    assert.deepEqual(settled.deleteRecords, [oneOff.id]);
    const stillThere = decide(input({ nodes: nodes3, records: [oneOff], observed: [observed('n1', [seen(oneOff)])], now: 1000 + ONE_OFF_SETTLE_MS }));
    assert.deepEqual(stillThere.deleteRecords, []);
    const notSynced = decide(input({ nodes: nodes3, records: [oneOff], observed: [observed('n1', [], false)], now: 1000 + ONE_OFF_SETTLE_MS }));
    assert.deepEqual(notSynced.deleteRecords, []);
  });

  it('asks to roll back a rollout whose new replica keeps failing, naming why', () => {
    const v1 = workload('web', 3);
    const v2 = workload('web', 3, { image: 'reg/web:broken' }, 2);
    const old = [rec(0, v1, 'n1'), rec(1, v1, 'n2'), rec(2, v1, 'n3')];
    const fresh = rec(3, v2, 'n1', { replica: 3 });
    const obs = nodes3.map((n) => observed(n.name, old.filter((c) => c.node === n.name).map((c) => seen(c))));
    const calm = decide(input({ workloads: [v2], nodes: nodes3, records: [...old, fresh], observed: obs, startFailures: new Map([[fresh.id, 2]]) }));
    assert.deepEqual(calm.rollbacks, []);
    const plan = decide(input({ workloads: [v2], nodes: nodes3, records: [...old, fresh], observed: obs, startFailures: new Map([[fresh.id, 3]]) }));
    assert.equal(plan.rollbacks.length, 1);
    assert.equal(plan.rollbacks[0]?.revision, 2);
    assert.match(plan.rollbacks[0]?.reason ?? '', /"web-3-x" failed to start 3 times/);
    const crashing = { ...seen(fresh), status: { ...(seen(fresh).status as NonNullable<Container['status']>), restartCount: 4, reason: 'Error' } };
    const obs2 = obs.map((o) => (o.node === 'n1' ? observed('n1', [...o.containers, crashing]) : o));
    assert.match(decide(input({ workloads: [v2], nodes: nodes3, records: [...old, fresh], observed: obs2 })).rollbacks[0]?.reason ?? '', /restarted 4 times \(Error\)/);
  });

  it('moves the replicas of a draining node like a rolling update', () => {
    const w = workload('web', 3);
    const records = [rec(0, w, 'n1'), rec(1, w, 'n2'), rec(2, w, 'n3')];
    const nodes = [{ ...node('n1'), cordoned: true, draining: true }, node('n2'), node('n3')];
    const obs = nodes3.map((n) => observed(n.name, records.filter((c) => c.node === n.name).map((c) => seen(c))));
    const plan = decide(input({ workloads: [w], nodes, records, observed: obs }));
    assert.equal(plan.create.length, 1);
    assert.notEqual(plan.create[0]?.node, 'n1');
    assert.deepEqual(plan.markRemoved, [], 'the drained replica stays until its replacement is ready');
    assert.deepEqual(plan.rollbacks, []);
    const fresh = plan.create[0] as Container;
    const obs2 = obs.map((o) => (o.node === fresh.node ? observed(o.node, [...o.containers, seen(fresh)]) : o));
    const next = decide(input({ workloads: [w], nodes, records: [...records, fresh], observed: obs2 }));
    assert.deepEqual(next.markRemoved.map((r) => r.node), ['n1']);
    assert.equal(next.events.find((e) => e.reason === 'Drained')?.node, 'n1');
  });
});
