/**
 * Leader failover with two `berth controller` processes on one etcd and NATS
 * and three fake agents: the leader is killed with -9 mid-rollout and the
 * other controller adopts the records, finishes the rollout and serves the
 * next change, with no container started twice.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { freePort, startEtcd, startNats, startProcess, tailLog, waitFor, type ManagedProcess, type Service } from '../../harness/index.js';
import { call, connectClients, manifest, type Clients } from '../helpers.js';
import { FakeAgent } from './fake-agent.js';

const berth = fileURLToPath(new URL('../../../cmd/berth.cjs', import.meta.url));

describe('reconciler leader failover (two controller processes)', function () {
  this.timeout(120_000);
  let etcd: Service;
  let nats: Service;
  const procs: ManagedProcess[] = [];
  const clients: Clients[] = [];
  let agents: FakeAgent[] = [];

  before(async () => {
    [etcd, nats] = await Promise.all([startEtcd(), startNats()]);
  });
  after(async () => {
    await Promise.all([etcd?.stop(), nats?.stop()]);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(agents.map((a) => a.stop()));
    agents = [];
    for (const p of procs.splice(0)) await p.stop();
  });

  async function startController(id: string): Promise<{ proc: ManagedProcess; address: string; c: Clients }> {
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startProcess({
      name: `controller-${id}`, command: process.execPath,
      args: () => [berth, 'controller', '--etcd', etcd.url, '--nats', nats.url, '--listen', address, '--id', id],
    });
    procs.push(proc);
    await waitFor(`controller ${id} to listen`, () => {
      if (proc.exited()) throw new Error(`controller exited:\n${tailLog(proc)}`);
      return tailLog(proc, 200).includes(`listening on ${address}`);
    }, 20_000);
    const c = connectClients(address);
    clients.push(c);
    return { proc, address, c };
  }

  it('lets the other controller finish a rollout after the leader is killed with -9', async () => {
    const a = await startController('ctl-a');
    await waitFor('ctl-a leads', async () => (await call(a.c.system, a.c.system.version, {})).leader, 10_000);
    const b = await startController('ctl-b');
    agents = ['n1', 'n2', 'n3'].map((node) => new FakeAgent({ node, natsUrl: nats.url, controller: a.address }));
    await Promise.all(agents.map((x) => x.start()));
    const total = (): number => agents.reduce((n, x) => n + x.runningCount(), 0);
    const images = (): string[] => agents.flatMap((x) => [...x.containers.values()].map((y) => y.spec?.image ?? ''));

    await call(a.c.workloads, a.c.workloads.apply, { manifest: manifest('web', { replicas: 6, image: '127.0.0.1:5000/web:1' }), source: 'w.yaml', dryRun: false });
    await waitFor('6 running', () => total() === 6, 20_000);
    assert.deepEqual(agents.map((x) => x.runningCount()), [2, 2, 2]);

    // Start a rollout through ctl-b (either controller writes), then kill the leader while it runs.
    // New replicas take 1 s each to run, so the rollout (maxSurge 1) takes several seconds.
    await call(b.c.workloads, b.c.workloads.apply, { manifest: manifest('web', { replicas: 6, image: '127.0.0.1:5000/web-slow:2' }), source: 'w.yaml', dryRun: false });
    await waitFor('the rollout half-way', () => images().filter((i) => i.endsWith('web-slow:2')).length >= 2, 20_000);
    await a.proc.kill9();
    assert.ok(images().some((i) => i.endsWith('web:1')), 'the leader died before the rollout finished');
    await waitFor('ctl-b leads', async () => (await call(b.c.system, b.c.system.version, {})).leader, 15_000);
    await waitFor('every replica on web-slow:2', () => images().length === 6 && images().every((i) => i.endsWith('web-slow:2')) && total() === 6, 40_000);

    await call(b.c.workloads, b.c.workloads.scale, { name: 'web', replicas: 9 });
    await waitFor('9 running', () => total() === 9, 20_000);
    assert.ok(agents.every((x) => x.containers.size === 3), 'nothing left over');
    assert.deepEqual(agents.map((x) => x.runningCount()), [3, 3, 3]);
    // No container was started twice: every RunContainer id is a distinct container that exists or was removed.
    const list = await call(b.c.containers, b.c.containers.list, { all: false, selector: {}, node: '', workload: 'web' });
    assert.equal(list.containers.length, 9);
    assert.ok(list.containers.every((x) => x.status?.state === ContainerState.CONTAINER_STATE_RUNNING && x.spec?.image.endsWith('web-slow:2')));
    assert.equal(new Set(list.containers.map((x) => x.id)).size, 9);
  });
});
