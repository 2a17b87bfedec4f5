import assert from 'node:assert/strict';
import { startRegistryWithImages, waitFor, type RegistryWithImages } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';

interface WorkloadJson { metadata?: { name?: string }; spec?: { replicas?: number } }
interface EventJson { reason?: string; message?: string; workload?: string }

describe('autoscaling on cpu end to end (real controller, agent, etcd, NATS, registry and containers)', function () {
  this.timeout(240_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1');
  });

  after(async () => {
    await cluster?.stop();
    await reg?.stop();
  });

  async function replicas(): Promise<number> {
    const r = await cluster!.cli(['get', 'workloads', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const all = JSON.parse(r.stdout) as WorkloadJson[];
    return all.find((w) => w.metadata?.name === 'busy')?.spec?.replicas ?? -1;
  }

  it('adds replicas while they are busy and removes them after the scale-down window, with events saying why', async () => {
    const image = reg?.images['busybox']?.reference ?? '';
    // Each replica spins for 20 s from its start (held to its 200m request by the cpu quota: about 100 % of its request), then idles.
    const manifest = [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: busy }', 'spec:',
      `  image: ${image}`,
      '  command: ["sh", "-c", "end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do :; done; exec sleep 3600"]',
      '  resources: { cpu: 200m }',
      '  autoscale:',
      '    min: 1',
      '    max: 3',
      '    metric: cpu',
      '    target: 40',
      '    scaleDown: { stabilizationSeconds: 5, periodSeconds: 5 }',
      '',
    ].join('\n');
    const applied = await cluster!.cli(['apply', '-f', '-'], { stdin: manifest });
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(await replicas(), 1);

    await waitFor('the autoscaler to reach max (3)', async () => (await replicas()) === 3, 90_000, 500);
    const events = await cluster!.cli(['events', '--limit', '100', '-o', 'json']);
    const scaled = (JSON.parse(events.stdout) as EventJson[]).filter((e) => e.reason === 'Scaled');
    assert.ok(scaled.length >= 1, events.stdout);
    assert.match(scaled[0]?.message ?? '', /^scaled busy 1 -> [23]: cpu \d+% of the requested cpu on average over 1 ready replica, target 40%/);

    // Once every replica idles, the count comes back to min after the 5 s window.
    await waitFor('the autoscaler to come back to min (1)', async () => (await replicas()) === 1, 120_000, 500);
    const later = await cluster!.cli(['events', '--limit', '200', '-o', 'json']);
    assert.ok((JSON.parse(later.stdout) as EventJson[]).some((e) => e.reason === 'Scaled' && /^scaled busy [23] -> [12]: cpu/.test(e.message ?? '')), later.stdout);
    const describe = await cluster!.cli(['describe', 'workload', 'busy']);
    assert.match(describe.stdout, /Scaled\s+workload\/busy/);

    // Re-applying the same file keeps the autoscaler's count and makes no new revision.
    const again = await cluster!.cli(['apply', '-f', '-'], { stdin: manifest });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /unchanged/);
    assert.equal((await cluster!.cli(['delete', 'workload', 'busy'])).code, 0);
  });

  it('sets, checks and turns off a policy with berth autoscale, without replacing replicas', async () => {
    const image = reg?.images['busybox']?.reference ?? '';
    const manifest = ['apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: idle }', 'spec:', `  image: ${image}`, '  command: ["sleep", "3600"]', ''].join('\n');
    assert.equal((await cluster!.cli(['apply', '-f', '-'], { stdin: manifest })).code, 0);
    await waitFor('the replica to run', async () => (await cluster!.cli(['get', 'replicas'])).stdout.includes('running'), 60_000, 500);

    const noCpu = await cluster!.cli(['autoscale', 'idle', '--max', '3', '--cpu-percent', '50']);
    assert.equal(noCpu.code, 1);
    assert.match(noCpu.stderr, /autoscale\.metric: expected the workload to request cpu/);
    const noPorts = await cluster!.cli(['autoscale', 'idle', '--max', '3', '--requests-per-second', '50']);
    assert.match(noPorts.stderr, /expected the workload to have ports with metric "requests"/);
    const usage = await cluster!.cli(['autoscale', 'idle', '--max', 'three', '--cpu-percent', '50']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--max: expected a whole number/);
    const missing = await cluster!.cli(['autoscale', 'nope', '--max', '3', '--cpu-percent', '50']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope/);

    const withCpu = manifest.replace('  command:', '  resources: { cpu: 100m }\n  command:');
    assert.equal((await cluster!.cli(['apply', '-f', '-'], { stdin: withCpu })).code, 0);
    // The new cpu request is a new template: wait until its one replica is the only one left.
    const only = async (): Promise<string | undefined> => {
      const all = JSON.parse((await cluster!.cli(['get', 'replicas', '-o', 'json'])).stdout) as { id?: string; workload?: string; spec?: { resources?: { cpuMillis?: number } }; status?: { state?: string } }[];
      const mine = all.filter((c) => c.workload === 'idle');
      return mine.length === 1 && mine[0]?.status?.state === 'CONTAINER_STATE_RUNNING' && mine[0]?.spec?.resources?.cpuMillis === 100 ? mine[0]?.id : undefined;
    };
    let replicaId: string | undefined;
    await waitFor('the replica with the cpu request to be the only one', async () => (replicaId = await only()) !== undefined, 90_000, 500);
    const set = await cluster!.cli(['autoscale', 'idle', '--min', '1', '--max', '3', '--cpu-percent', '50']);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, 'workload/idle autoscaled: 1 to 3 replicas, target 50% of the requested cpu per replica (now 1)\n');
    const json = JSON.parse((await cluster!.cli(['get', 'workloads', '-o', 'json'])).stdout) as { metadata?: { name?: string }; spec?: { autoscale?: { max?: number } } }[];
    assert.equal(json.find((w) => w.metadata?.name === 'idle')?.spec?.autoscale?.max, 3);
    const off = await cluster!.cli(['autoscale', 'idle', '--off']);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /autoscaling off/);
    const offAgain = await cluster!.cli(['autoscale', 'idle', '--off']);
    assert.equal(offAgain.code, 1);
    assert.match(offAgain.stderr, /has no autoscale policy/);
    // Setting and removing a policy changes no container template: the same replica still runs, alone.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await only(), replicaId);
    assert.equal((await cluster!.cli(['delete', 'workload', 'idle'])).code, 0);
  });
});
