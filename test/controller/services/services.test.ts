/**
 * controller/services: which replicas are ready endpoints, which ports a
 * service has, and ServiceDirectory over a real etcd (addresses allocated
 * for workloads with ports, released for deleted ones).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startEtcd, waitFor, type Service } from '../../harness/index.js';
import { ServiceDirectory, serviceEndpoints, servicePorts } from '../../../controller/services/index.js';
import { EtcdStore, EtcdVipStore } from '../../../controller/store/index.js';
import { NotFoundError, silentLogger } from '../../../lib/index.js';
import { Container, ContainerState, ContainerStatus, NodeState, Workload } from '../../../proto/gen/berth/v1/types.js';

function container(name: string, node: string, extra: { state?: ContainerState; health?: string; ip?: string; workload?: string; draining?: boolean } = {}): Container {
  return {
    ...Container.fromJSON({ id: `${name}-id`, name, node, workload: extra.workload ?? 'web' }),
    status: { ...ContainerStatus.fromJSON({}), state: extra.state ?? ContainerState.CONTAINER_STATE_RUNNING, health: extra.health ?? '', ipAddress: extra.ip ?? `10.244.0.${name.length}`, draining: extra.draining ?? false },
  };
}

function workload(name: string, ports: { container: number; protocol?: string; name?: string }[]): Workload {
  return Workload.fromJSON({ metadata: { name }, spec: { replicas: 1, image: 'busybox', ports } });
}

describe('serviceEndpoints', () => {
  const ready = (n: string) => (n === 'down' ? NodeState.NODE_STATE_NOT_READY : NodeState.NODE_STATE_READY);

  it('marks ready only running replicas that are healthy or unchecked, have an address and sit on a Ready node', () => {
    const eps = serviceEndpoints('web', [
      container('ok', 'n1'),
      container('healthy', 'n1', { health: 'healthy' }),
      container('sick', 'n1', { health: 'unhealthy' }),
      container('starting', 'n1', { health: 'starting' }),
      container('exited', 'n2', { state: ContainerState.CONTAINER_STATE_EXITED }),
      container('noaddr', 'n2', { ip: '' }),
      container('lost', 'down'),
      container('other', 'n1', { workload: 'db' }),
      container('leaving', 'n1', { draining: true }),
    ], ready);
    assert.deepEqual(eps.map((e) => [e.containerName, e.ready]), [
      ['lost', false], ['healthy', true], ['leaving', false], ['ok', true], ['sick', false], ['starting', false], ['exited', false], ['noaddr', false],
    ]);
    assert.equal(eps.find((e) => e.containerName === 'sick')?.health, 'unhealthy');
    assert.equal(eps.find((e) => e.containerName === 'leaving')?.draining, true);
    assert.equal(eps.find((e) => e.containerName === 'exited')?.state, 'CONTAINER_STATE_EXITED');
  });
});

describe('servicePorts', () => {
  it('lists the container ports with protocol, sorted, tcp by default', () => {
    assert.deepEqual(servicePorts(workload('w', [{ container: 8080, name: 'http' }, { container: 53, protocol: 'udp' }])), [
      { name: '', port: 53, protocol: 'udp', targetPort: 53, published: 0 },
      { name: 'http', port: 8080, protocol: 'tcp', targetPort: 8080, published: 0 },
    ]);
    assert.deepEqual(servicePorts(workload('w', [])), []);
  });
});

describe('ServiceDirectory (real etcd)', function () {
  this.timeout(60_000);
  let etcd: Service;
  let store: EtcdStore | undefined;

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await store?.close();
    await etcd?.stop();
  });

  it('allocates addresses for workloads with ports only, keeps them, and releases a deleted workload\'s', async () => {
    store = new EtcdStore({ endpoints: [etcd.url], prefix: `/test-${randomBytes(4).toString('hex')}/` });
    let workloads = [workload('web', [{ container: 80 }]), workload('batch', []), workload('dns', [{ container: 53, protocol: 'udp' }])];
    const directory = new ServiceDirectory({
      vips: new EtcdVipStore(store),
      workloads: { listWorkloads: async () => workloads },
      observed: { nodeNames: () => ['n1'], containers: () => [container('web-1', 'n1')] },
      nodeState: () => NodeState.NODE_STATE_READY,
      logger: silentLogger(),
    });
    const first = await directory.list();
    assert.deepEqual(first.map((s) => s.name), ['dns', 'web']);
    const web = first.find((s) => s.name === 'web')!;
    assert.match(web.virtualIp, /^10\.96\.\d+\.\d+$/);
    assert.deepEqual(web.endpoints.map((e) => [e.containerName, e.ready]), [['web-1', true]]);
    assert.notEqual(first[0]!.virtualIp, web.virtualIp);
    assert.equal((await directory.get('web')).virtualIp, web.virtualIp);
    assert.equal((await directory.list()).find((s) => s.name === 'web')?.virtualIp, web.virtualIp, 'kept');
    await assert.rejects(directory.get('batch'), NotFoundError);
    workloads = workloads.filter((w) => w.metadata?.name !== 'web');
    assert.deepEqual((await directory.list()).map((s) => s.name), ['dns']);
    assert.equal((await new EtcdVipStore(store).list()).has('web'), false, 'web\'s address is released');
  });
  it('releases a deleted workload\'s address in the background without anyone listing services', async () => {
    store ??= new EtcdStore({ endpoints: [etcd.url], prefix: `/test-${randomBytes(4).toString('hex')}/` });
    const vips = new EtcdVipStore(store);
    let workloads = [workload('bg', [{ container: 80 }])];
    const directory = new ServiceDirectory({
      vips, workloads: { listWorkloads: async () => workloads }, observed: { nodeNames: () => [], containers: () => [] }, nodeState: () => NodeState.NODE_STATE_READY, logger: silentLogger(),
    });
    const stop = new AbortController();
    const done = directory.run(stop.signal, 50);
    try {
      await waitFor('bg to get an address', async () => (await vips.list()).has('bg'), 10_000, 50);
      workloads = [];
      await waitFor('bg\'s address to be released', async () => !(await vips.list()).has('bg'), 10_000, 50);
    } finally {
      stop.abort();
      await done;
    }
  });
});
