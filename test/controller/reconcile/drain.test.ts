/**
 * Connection draining on the controller's side: the workload's drainSeconds
 * reaches the replicas' container spec only when set (an unset value is the
 * agent's default), so specs without it keep their template and a change of
 * it alone is a new template (replicas are replaced with the new delay).
 * With real etcd and NATS and fake agents whose StopContainer drains: a
 * replica being removed stays listed as draining and is removed only after
 * its stop has ended, and a rolling update starts the next replacement while
 * a replaced replica drains.
 */
import assert from 'node:assert/strict';
import { validateWorkloadFile } from '../../../lib/index.js';
import { containerSpecFor, templateKey } from '../../../controller/reconcile/index.js';
import { ContainerState, type Container } from '../../../proto/gen/berth/v1/types.js';
import { waitFor } from '../../harness/index.js';
import { call, manifest, useEtcdAndNats } from '../helpers.js';
import { startFakeCluster, type FakeCluster } from './fake-cluster.js';

function spec(...specLines: string[]) {
  const text = ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  image: busybox', ...specLines.map((l) => `  ${l}`)].join('\n') + '\n';
  const [w] = validateWorkloadFile(text, { defaultRegistry: '127.0.0.1:5000' });
  assert.ok(w);
  return w.spec;
}

describe('containerSpecFor drainSeconds', () => {
  it('leaves drain_seconds unset when the workload does not set it, and copies it when set', () => {
    const implicit = containerSpecFor('web', spec('ports: [{ container: 80 }]'));
    assert.equal(implicit.drainSeconds, undefined);
    assert.equal(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 9')).drainSeconds, 9);
    assert.equal(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 0')).drainSeconds, 0);
  });

  it('keeps the template of a spec without it and makes a new template when it changes', () => {
    const implicit = templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]')));
    assert.equal(templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 3'))), implicit);
    assert.notEqual(templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 5'))), implicit);
  });
});

describe('reconciler with draining agents', function () {
  this.timeout(120_000);
  const svc = useEtcdAndNats();
  let fc: FakeCluster | undefined;

  beforeEach(async () => {
    fc = await startFakeCluster(svc.etcd, svc.nats, svc.raw);
    for (const a of fc.agents) a.drainMs = 3000;
  });
  afterEach(async () => {
    await fc?.stop();
    fc = undefined;
  });

  const cluster = (): FakeCluster => fc as FakeCluster;
  const web = (replicas: number, image: string): string => manifest('web', { replicas, image, extra: '  ports:\n    - { container: 80 }' });
  const apply = (text: string) => call(cluster().clients.workloads, cluster().clients.workloads.apply, { manifest: text, source: 'test.yaml', dryRun: false });
  const list = async (): Promise<Container[]> => (await call(cluster().clients.containers, cluster().clients.containers.list, { all: true, selector: {}, node: '', workload: 'web' })).containers;
  const running = (c: Container): boolean => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING;
  const callsOf = (id: string): string[] => cluster().agents.flatMap((a) => a.calls.filter((x) => x.id === id).map((x) => x.method));

  it('keeps a replica being scaled down listed as draining and removes it only after its stop has ended', async () => {
    await apply(web(2, '127.0.0.1:5000/web:1'));
    await waitFor('two running replicas', async () => (await list()).filter(running).length === 2, 20_000);
    await apply(web(1, '127.0.0.1:5000/web:1'));
    let draining: Container | undefined;
    await waitFor('a draining replica', async () => {
      draining = (await list()).find((c) => c.status?.draining);
      return draining !== undefined;
    }, 20_000);
    const id = draining?.id ?? '';
    assert.equal(draining?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.deepEqual(callsOf(id).filter((m) => m !== 'RunContainer'), ['StopContainer'], 'not removed while it drains');
    await waitFor('the drained replica to be gone', async () => !(await list()).some((c) => c.id === id), 20_000);
    assert.deepEqual(callsOf(id).filter((m) => m !== 'RunContainer'), ['StopContainer', 'StopContainerDone', 'RemoveContainer']);
    assert.equal((await list()).filter(running).length, 1);
  });

  it('starts the next replacement while a replica replaced by a rolling update drains', async () => {
    await apply(web(2, '127.0.0.1:5000/web:1'));
    await waitFor('two running replicas', async () => (await list()).filter(running).length === 2, 20_000);
    await apply(web(2, '127.0.0.1:5000/web:2'));
    let seen: Container[] = [];
    // Surge 1: web:2 #1 ready -> web:1 #1 drains; meanwhile web:2 #2 starts (the draining one no longer counts).
    await waitFor('a draining web:1 replica next to two running web:2 replicas', async () => {
      seen = await list();
      const v2 = seen.filter((c) => running(c) && !c.status?.draining && c.spec?.image.endsWith('web:2'));
      return v2.length === 2 && seen.some((c) => c.status?.draining && c.spec?.image.endsWith('web:1'));
    }, 20_000).catch((err: Error) => assert.fail(`${err.message}\n${JSON.stringify(seen.map((c) => [c.spec?.image, c.status?.state, c.status?.draining]))}`));
    await waitFor('only web:2 left', async () => {
      const now = await list();
      return now.length === 2 && now.every((c) => running(c) && c.spec?.image.endsWith('web:2'));
    }, 30_000);
  });
});
