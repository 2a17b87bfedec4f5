import assert from 'node:assert/strict';
import { silentLogger } from '../../../lib/logging.js';
import { Autoscaler, LoadWindow, type AutoscaledWorkload, type AutoscalePolicy, type ReplicaSample } from '../../../controller/autoscale/index.js';

const T0 = 1_800_000_000_000;

const POLICY: AutoscalePolicy = {
  min: 0,
  max: 6,
  metric: 'requests',
  target: 100,
  tolerance: 0.1,
  scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
  scaleDown: { stabilizationSeconds: 10, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 5 },
  scaleToZero: { idleSeconds: 30 },
};

function sample(replica: string, atMs: number, rps: number, ready = true): ReplicaSample {
  return { workload: 'web', replica, atMs, ready, cpuPercent: 0, requestsPerSecond: rps, connections: 0 };
}

/** An in-memory stand-in for the store, with the same compare-and-set rule. */
class Workloads {
  readonly events: string[] = [];
  constructor(public readonly all: AutoscaledWorkload[]) {}
  target = {
    listAutoscaled: async (): Promise<AutoscaledWorkload[]> => this.all.map((w) => ({ ...w })),
    setReplicas: async (name: string, from: number, to: number): Promise<boolean> => {
      const w = this.all.find((x) => x.name === name);
      if (!w || w.replicas !== from) return false;
      w.replicas = to;
      return true;
    },
  };
  sink = {
    scaled: async (_w: string, _from: number, _to: number, reason: string): Promise<void> => {
      this.events.push(reason);
    },
  };
}

describe('LoadWindow', () => {
  it('averages each ready replica over the window and sums over replicas', () => {
    const w = new LoadWindow({ sinceMs: T0, windowMs: 5000 });
    w.add(sample('a', T0 + 1000, 100));
    w.add(sample('a', T0 + 2000, 300));
    w.add(sample('b', T0 + 2000, 50));
    w.add(sample('c', T0 + 2000, 999, false));
    const o = w.observe('web', 'requests', 4, T0 + 3000);
    assert.deepEqual({ ready: o.ready, starting: o.starting, total: o.total }, { ready: 2, starting: 2, total: 250 });
  });

  it('forgets samples older than the window', () => {
    const w = new LoadWindow({ sinceMs: T0, windowMs: 5000 });
    w.add(sample('a', T0, 500));
    w.add(sample('b', T0 + 4000, 100));
    const o = w.observe('web', 'requests', 2, T0 + 6000);
    assert.equal(o.ready, 1);
    assert.equal(o.total, 100);
  });

  it('keeps only the workloads it is told to, with fresh samples', () => {
    const w = new LoadWindow({ sinceMs: T0, windowMs: 5000 });
    w.add(sample('a', T0 + 1000, 100));
    w.add({ ...sample('b', T0 + 1000, 100), workload: 'not-autoscaled' });
    w.retain(new Set(['web']), T0 + 2000);
    assert.equal(w.observe('web', 'requests', 1, T0 + 2000).ready, 1);
    assert.equal(w.observe('not-autoscaled', 'requests', 1, T0 + 2000).ready, 0);
    assert.equal(w.observe('not-autoscaled', 'requests', 1, T0 + 2000).lastActiveMs, T0, 'its activity is forgotten too');
  });

  it('claims no earlier activity than the time it started watching', () => {
    const w = new LoadWindow({ sinceMs: T0 });
    assert.equal(w.observe('web', 'requests', 1, T0 + 60_000).lastActiveMs, T0);
    w.add(sample('a', T0 + 50_000, 3));
    assert.equal(w.observe('web', 'requests', 1, T0 + 52_000).lastActiveMs, T0 + 50_000);
  });
});

describe('Autoscaler', () => {
  it('scales up on load, records why, and comes back down after the window', async () => {
    let now = T0;
    const window = new LoadWindow({ sinceMs: T0 });
    const store = new Workloads([{ name: 'web', replicas: 1, policy: POLICY }]);
    const a = new Autoscaler({ target: store.target, events: store.sink, window, logger: silentLogger(), clock: () => now });

    now += 1000;
    window.add(sample('a', now, 350));
    const [r1] = await a.tick();
    assert.equal(r1?.applied, true);
    assert.equal(store.all[0]?.replicas, 4);
    assert.deepEqual(store.events, ['scaled web 1 -> 4: requests 350/s over 1 ready replica, target 100/s']);

    // Load stops: the scale-down window (10 s) holds the count, then it steps down by half per period.
    const counts: number[] = [];
    for (let i = 0; i < 30; i++) {
      now += 1000;
      for (const id of ['a', 'b', 'c', 'd'].slice(0, store.all[0]?.replicas ?? 0)) window.add(sample(id, now, 0));
      await a.tick();
      counts.push(store.all[0]?.replicas ?? -1);
    }
    assert.equal(counts[5], 4, `held during the window: ${counts.join(',')}`);
    assert.ok(counts.includes(2) && counts.includes(1), `stepped down: ${counts.join(',')}`);
    assert.equal(counts[counts.length - 1], 1, 'idle for less than scaleToZero.idleSeconds since the last request');
  });

  it('goes to zero when idle and starts one replica at once for a held connection', async () => {
    let now = T0;
    const window = new LoadWindow({ sinceMs: T0 });
    const store = new Workloads([{ name: 'web', replicas: 1, policy: { ...POLICY, scaleDown: { ...POLICY.scaleDown, stabilizationSeconds: 0 } } }]);
    const a = new Autoscaler({ target: store.target, events: store.sink, window, logger: silentLogger(), clock: () => now });
    for (let i = 0; i < 35 && (store.all[0]?.replicas ?? 0) > 0; i++) {
      now += 1000;
      window.add(sample('a', now, 0));
      await a.tick();
    }
    assert.equal(store.all[0]?.replicas, 0);
    assert.match(store.events.at(-1) ?? '', /^scaled web 1 -> 0: no requests for 3\ds/);
    now += 5000;
    await a.tick();
    assert.equal(store.all[0]?.replicas, 0, 'stays at zero with nobody waiting');
    await a.activate('web');
    assert.equal(store.all[0]?.replicas, 1);
    assert.equal(store.events.at(-1), 'scaled web 0 -> 1: connection held at the service address');
  });

  it('counts repeated activations at one replica as activity (no scale back to zero under held connections) without a pass each', async () => {
    let now = T0;
    const window = new LoadWindow({ sinceMs: T0 });
    const store = new Workloads([{ name: 'web', replicas: 0, policy: { ...POLICY, scaleDown: { ...POLICY.scaleDown, stabilizationSeconds: 0 } } }]);
    let lists = 0;
    const list = store.target.listAutoscaled;
    store.target.listAutoscaled = async () => {
      lists++;
      return list();
    };
    const a = new Autoscaler({ target: store.target, events: store.sink, window, logger: silentLogger(), clock: () => now });
    await a.activate('web');
    assert.equal(store.all[0]?.replicas, 1);
    const afterFirst = lists;
    // 60 s of a forwarded connection: the node repeats the activation every second; the replica reports no requests.
    for (let i = 0; i < 60; i++) {
      now += 1000;
      window.add(sample('a', now, 0));
      assert.deepEqual(await a.activate('web'), [], 'a workload with replicas is only touched');
      await a.tick();
    }
    assert.equal(lists - afterFirst, 60, 'one store read per loop pass, none per activation');
    assert.equal(store.all[0]?.replicas, 1, 'still active: not scaled to zero');
    for (let i = 0; i < 35 && (store.all[0]?.replicas ?? 0) > 0; i++) {
      now += 1000;
      window.add(sample('a', now, 0));
      await a.tick();
    }
    assert.equal(store.all[0]?.replicas, 0, 'idle once the activations stop');
    assert.match(store.events.at(-1) ?? '', /^scaled web 1 -> 0: no requests for 30s/);
  });

  it('runs passes one after the other when an activation comes during a pass', async () => {
    const window = new LoadWindow({ sinceMs: T0 });
    const store = new Workloads([{ name: 'web', replicas: 0, policy: POLICY }]);
    let inside = 0;
    let overlapped = false;
    const list = store.target.listAutoscaled;
    store.target.listAutoscaled = async () => {
      inside++;
      if (inside > 1) overlapped = true;
      await new Promise((r) => setTimeout(r, 20));
      inside--;
      return list();
    };
    const a = new Autoscaler({ target: store.target, events: store.sink, window, logger: silentLogger(), clock: () => T0 + 1000 });
    await Promise.all([a.tick(), a.activate('web'), a.activate('web')]);
    assert.equal(overlapped, false);
    assert.equal(store.all[0]?.replicas, 1);
    assert.equal(store.events.filter((e) => e.startsWith('scaled web 0 -> 1')).length, 1, 'one scale-up for two activations');
  });

  it('leaves a count that a user changed meanwhile alone', async () => {
    const now = T0 + 1000;
    const window = new LoadWindow({ sinceMs: T0 });
    const store = new Workloads([{ name: 'web', replicas: 1, policy: POLICY }]);
    store.target.setReplicas = async () => false;
    const a = new Autoscaler({ target: store.target, events: store.sink, window, logger: silentLogger(), clock: () => now });
    window.add(sample('a', now, 350));
    const [r] = await a.tick();
    assert.equal(r?.decision.changed, true);
    assert.equal(r?.applied, false);
    assert.deepEqual(store.events, []);
  });
});
