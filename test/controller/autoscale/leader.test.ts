import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../../lib/logging.js';
import { validateWorkloadFile } from '../../../lib/index.js';
import { LeaderAutoscaler, policyOf } from '../../../controller/autoscale/leader.js';
import { MemoryStore, SoloElection } from '../../../controller/store/memory.js';
import type { Event } from '../../../proto/gen/berth/v1/types.js';

const FILE = `apiVersion: berth/v1
kind: Workload
metadata: { name: busy }
spec:
  image: busybox
  resources: { cpu: 500m }
  autoscale: { min: 1, max: 5, metric: cpu, target: 50 }
`;

const id = (): string => randomBytes(32).toString('hex');

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('LeaderAutoscaler', () => {
  it('scales an autoscaled workload on its replicas\' cpu while leading, with a Scaled event saying why', async () => {
    const store = new MemoryStore();
    const [w] = validateWorkloadFile(FILE, { defaultRegistry: '127.0.0.1:5000' });
    await store.applyWorkloads([{ name: 'busy', labels: {}, spec: w!.spec }]);
    const election = new SoloElection('c1');
    const events: Omit<Event, 'unixMs'>[] = [];
    const a = new LeaderAutoscaler({ election, store, events: { emit: (e) => events.push(e) }, logger: silentLogger(), intervalMs: 20 });
    a.ingest({ version: 1, node: 'n1', unixMs: Date.now(), replicas: [] }, Date.now()); // not leading yet: ignored
    a.attach();
    election.start();
    try {
      const replica = id();
      const timer = setInterval(() => {
        a.ingest({ version: 1, node: 'n1', unixMs: Date.now(), replicas: [{ workload: 'busy', containerId: replica, ready: true, cpuPercent: 180, memoryBytes: 1, requestsPerSecond: 0, connections: 0 }] }, Date.now());
      }, 10);
      try {
        const scaled = await until('a scale-up', async () => ((await store.getWorkload('busy')).spec?.replicas ?? 0) > 1 || undefined);
        assert.equal(scaled, true);
      } finally {
        clearInterval(timer);
      }
      assert.equal((await store.getWorkload('busy')).spec?.replicas, 4, 'ceil(180 / 50) = 4 from one ready replica');
      assert.equal(events[0]?.reason, 'Scaled');
      assert.equal(events[0]?.workload, 'busy');
      assert.equal(events[0]?.message, 'scaled busy 1 -> 4: cpu 180% of the requested cpu on average over 1 ready replica, target 50%');
    } finally {
      await election.stop();
      a.detach();
    }
    // After the term: metrics are ignored and nothing else changes.
    const before = (await store.getWorkload('busy')).spec?.replicas;
    a.ingest({ version: 1, node: 'n1', unixMs: Date.now(), replicas: [{ workload: 'busy', containerId: id(), ready: true, cpuPercent: 900, memoryBytes: 1, requestsPerSecond: 0, connections: 0 }] }, Date.now());
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await store.getWorkload('busy')).spec?.replicas, before);
  });

  it('scales a workload at zero to one on an activation while leading, and ignores activations when not leading', async () => {
    const store = new MemoryStore();
    const file = `apiVersion: berth/v1
kind: Workload
metadata: { name: sleepy }
spec:
  image: busybox
  replicas: 0
  ports: [{ container: 80 }]
  autoscale: { min: 0, max: 2, metric: requests, target: 10, scaleToZero: { idleSeconds: 60 } }
`;
    const [w] = validateWorkloadFile(file, { defaultRegistry: '127.0.0.1:5000' });
    await store.applyWorkloads([{ name: 'sleepy', labels: {}, spec: w!.spec }]);
    const election = new SoloElection('c1');
    const events: Omit<Event, 'unixMs'>[] = [];
    // A long interval: only the activation can act within this test.
    const a = new LeaderAutoscaler({ election, store, events: { emit: (e) => events.push(e) }, logger: silentLogger(), intervalMs: 60_000 });
    assert.equal(await a.activate('sleepy'), false, 'not leading: ignored');
    a.attach();
    election.start();
    try {
      const applied = await until('an activation to be applied', async () => ((await a.activate('sleepy')) ? true : (await store.getWorkload('sleepy')).spec?.replicas === 1 ? true : undefined));
      assert.equal(applied, true);
      assert.equal((await store.getWorkload('sleepy')).spec?.replicas, 1);
      assert.deepEqual(events.map((e) => e.message), ['scaled sleepy 0 -> 1: connection held at the service address']);
      assert.equal(await a.activate('sleepy'), false, 'at one replica an activation only counts as activity');
      assert.equal((await store.getWorkload('sleepy')).spec?.replicas, 1);
    } finally {
      await election.stop();
      a.detach();
    }
  });

  it('maps the contract\'s AutoscaleSpec to a policy and refuses one it cannot use', () => {
    const [w] = validateWorkloadFile(FILE, { defaultRegistry: '127.0.0.1:5000' });
    const p = policyOf(w!.spec.autoscale!);
    assert.equal(p?.metric, 'cpu');
    assert.equal(p?.scaleToZero, undefined);
    assert.equal(policyOf({ ...w!.spec.autoscale!, metric: 'bogus' }), undefined);
    assert.equal(policyOf({ ...w!.spec.autoscale!, max: 0 }), undefined);
  });
});
