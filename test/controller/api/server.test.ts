import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import type { WorkloadEvent } from '../../../proto/gen/berth/v1/controller.js';
import { NodeSpec } from '../../../proto/gen/berth/v1/types.js';
import type { EtcdStore } from '../../../controller/store/index.js';
import { useApiServer } from './api-fixture.js';
import { call, grpcError, manifest, type Clients } from '../helpers.js';

describe('controller API', () => {
  const f = useApiServer('ctl-test');
  let c: Clients;
  let raw: Etcd3;
  let prefix: string;
  let store: EtcdStore;
  beforeEach(() => {
    c = f.c;
    raw = f.raw;
    prefix = f.prefix;
    store = f.store;
  });

  const apply = (text: string, dryRun = false) => call(c.workloads, c.workloads.apply, { manifest: text, source: 'test.yaml', dryRun });

  describe('WorkloadService', () => {
    it('reports created, then unchanged, then configured with revision 2', async () => {
      const first = await apply(manifest('web'));
      assert.deepEqual(first.results, [{ name: 'web', action: 'created', revision: 1, preview: undefined }]);
      const second = await apply(manifest('web'));
      assert.deepEqual(second.results, [{ name: 'web', action: 'unchanged', revision: 1, preview: undefined }]);
      const third = await apply(manifest('web', { replicas: 3 }));
      assert.deepEqual(third.results, [{ name: 'web', action: 'configured', revision: 2, preview: undefined }]);
      const w = await call(c.workloads, c.workloads.get, { name: 'web' });
      assert.equal(w.spec?.replicas, 3);
      assert.equal(w.spec?.image, '127.0.0.1:5000/busybox:latest');
      assert.equal(w.status?.revision, 2);
    });

    it('applies a multi-document file whole, and a dry run writes nothing', async () => {
      const dry = await apply(`${manifest('web')}---\n${manifest('api')}`, true);
      assert.deepEqual(dry.results.map((r) => r.action), ['created', 'created']);
      assert.deepEqual(await raw.getAll().prefix(prefix).keys(), []);
      const res = await apply(`${manifest('web')}---\n${manifest('api')}`);
      assert.deepEqual(res.results.map((r) => [r.name, r.action]), [['web', 'created'], ['api', 'created']]);
    });

    it('rejects a file with one bad field whole, naming the document and field path', async () => {
      await apply(manifest('db'));
      const bad = `${manifest('web')}---\n${manifest('api', { extra: '  resources: { memory: 12 parsecs }' })}`;
      await assert.rejects(apply(bad), grpcError(grpc.status.INVALID_ARGUMENT, /test\.yaml: document 2: spec\.resources\.memory: /));
      const keys = await raw.getAll().prefix(prefix).keys();
      assert.ok(keys.every((k) => k.includes('/db')), `etcd holds ${keys.join(', ')}`);
      await assert.rejects(apply(''), grpcError(grpc.status.INVALID_ARGUMENT, /test\.yaml: \(file\): the file has no workloads/));
    });

    it('gets and lists workloads with a label selector', async () => {
      await apply(`${manifest('web', { labels: { app: 'web', tier: 'front' } })}---\n${manifest('api', { labels: { app: 'api', tier: 'back' } })}`);
      const all = await call(c.workloads, c.workloads.list, { selector: {} });
      assert.deepEqual(all.workloads.map((w) => w.metadata?.name), ['api', 'web']);
      const front = await call(c.workloads, c.workloads.list, { selector: { tier: 'front' } });
      assert.deepEqual(front.workloads.map((w) => w.metadata?.name), ['web']);
      await assert.rejects(call(c.workloads, c.workloads.list, { selector: { 'bad key!': 'x' } }), grpcError(grpc.status.INVALID_ARGUMENT, /^selector: expected a label key/));
      await assert.rejects(call(c.workloads, c.workloads.get, { name: 'nope' }), grpcError(grpc.status.NOT_FOUND, /^workload "nope" not found$/));
      await assert.rejects(call(c.workloads, c.workloads.get, { name: 'Bad_Name' }), grpcError(grpc.status.INVALID_ARGUMENT, /^name: expected a name of 1 to 63 lowercase letters/));
    });

    it('deletes workloads, failing whole on an unknown name unless told to ignore it', async () => {
      await apply(`${manifest('web')}---\n${manifest('api')}`);
      await assert.rejects(call(c.workloads, c.workloads.delete, { names: ['web', 'ghost'], ignoreNotFound: false }), grpcError(grpc.status.NOT_FOUND, /workload "ghost" not found/));
      assert.equal((await call(c.workloads, c.workloads.list, { selector: {} })).workloads.length, 2);
      const res = await call(c.workloads, c.workloads.delete, { names: ['web', 'ghost'], ignoreNotFound: true });
      assert.deepEqual(res.deleted, ['web']);
      await assert.rejects(call(c.workloads, c.workloads.delete, { names: [], ignoreNotFound: false }), grpcError(grpc.status.INVALID_ARGUMENT, /^names: expected at least one/));
      await assert.rejects(call(c.workloads, c.workloads.delete, { names: ['../x'], ignoreNotFound: false }), grpcError(grpc.status.INVALID_ARGUMENT, /^names\[0\]: expected a name/));
    });

    it('scales to a new revision and shows it in the history', async () => {
      await apply(manifest('web'));
      const w = await call(c.workloads, c.workloads.scale, { name: 'web', replicas: 4 });
      assert.equal(w.spec?.replicas, 4);
      assert.equal(w.status?.revision, 2);
      const h = await call(c.workloads, c.workloads.history, { name: 'web' });
      assert.deepEqual(h.revisions.map((r) => [r.revision, r.cause, r.spec?.replicas]), [[1, 'apply', 1], [2, 'scale', 4]]);
      await assert.rejects(call(c.workloads, c.workloads.scale, { name: 'web', replicas: 10001 }), grpcError(grpc.status.INVALID_ARGUMENT, /^replicas: expected a whole number from 0 to 10000, got "10001"$/));
      await assert.rejects(call(c.workloads, c.workloads.history, { name: 'ghost' }), grpcError(grpc.status.NOT_FOUND, /workload "ghost" not found/));
    });

    it('streams current workloads, then changes, and ends cleanly when the client cancels', async () => {
      await apply(manifest('web'));
      const stream = c.workloads.watch({});
      const events: WorkloadEvent[] = [];
      const ended = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
      stream.on('error', () => undefined);
      const got = (n: number) => new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} watch events; got ${events.length}`)), 10000);
        const check = (): void => {
          if (events.length >= n) {
            clearTimeout(t);
            stream.off('data', onData);
            resolve();
          }
        };
        const onData = (): void => check();
        stream.on('data', onData);
        check();
      });
      stream.on('data', (e: WorkloadEvent) => events.push(e));
      await got(1);
      await apply(manifest('web', { replicas: 2 }));
      await got(2);
      await call(c.workloads, c.workloads.delete, { names: ['web'], ignoreNotFound: false });
      await got(3);
      assert.deepEqual(events.map((e) => [e.type, e.workload?.metadata?.name, e.workload?.spec?.replicas]), [
        ['added', 'web', 1], ['modified', 'web', 2], ['deleted', 'web', 2],
      ]);
      stream.cancel();
      const status = await ended;
      assert.equal(status.code, grpc.status.CANCELLED);
    });
  });

  describe('SystemService and NodeService', () => {
    it('reports version, controller id and leadership', async () => {
      const v = await call(c.system, c.system.version, {});
      assert.equal(v.apiVersion, 'berth/v1');
      assert.equal(v.controllerId, 'ctl-test');
      assert.equal(v.leader, true);
      assert.equal(v.leaderId, 'ctl-test');
    });

    it('registers a node with the heartbeat interval and default registry, and rejects bad node specs', async () => {
      const spec: NodeSpec = { ...NodeSpec.decode(new Uint8Array()), name: 'n1', address: '127.0.0.1:7071', labels: { zone: 'a' }, capacity: { cpuMillis: 2000, memoryBytes: 1 << 30, pids: 4096 } };
      const res = await call(c.nodes, c.nodes.register, { node: spec });
      assert.equal(res.heartbeatIntervalMs, 1000);
      assert.equal(res.defaultRegistry, '127.0.0.1:5000');
      assert.equal(res.clusterId, await store.clusterId());
      assert.equal(res.node?.spec?.name, 'n1');
      assert.equal(res.clusterCidr, '10.244.0.0/16');
      assert.match(res.node?.network?.subnet ?? '', /^10\.244\.\d+\.0\/24$/);
      const list = await call(c.nodes, c.nodes.list, {});
      assert.deepEqual(list.nodes.map((n) => [n.spec?.name, n.status?.state]), [['n1', 2]]);
      assert.equal(list.nodes[0]?.network?.subnet, res.node?.network?.subnet, 'the list shows the subnet');
      const withIp = await call(c.nodes, c.nodes.register, { node: { ...spec, name: 'n2', internalIp: '10.0.0.2' } });
      assert.equal(withIp.node?.spec?.internalIp, '10.0.0.2');
      await assert.rejects(call(c.nodes, c.nodes.register, { node: { ...spec, internalIp: '127.0.0.1' } }), grpcError(grpc.status.INVALID_ARGUMENT, /^node\.internal_ip: expected an IPv4 address other nodes can reach/));
      await assert.rejects(call(c.nodes, c.nodes.register, { node: { ...spec, name: 'N 1' } }), grpcError(grpc.status.INVALID_ARGUMENT, /^node\.name: /));
      await assert.rejects(call(c.nodes, c.nodes.register, { node: { ...spec, address: 'nowhere' } }), grpcError(grpc.status.INVALID_ARGUMENT, /^node\.address: expected HOST:PORT/));
      await assert.rejects(call(c.nodes, c.nodes.register, { node: { ...spec, capacity: { cpuMillis: -1, memoryBytes: 0, pids: 0 } } }), grpcError(grpc.status.INVALID_ARGUMENT, /^node\.capacity\.cpu_millis: expected a whole number of 0 or more/));
      await assert.rejects(call(c.nodes, c.nodes.register, {}), grpcError(grpc.status.INVALID_ARGUMENT, /^node: expected the node to register/));
    });

    it('answers UNIMPLEMENTED for the container service when the server has no container records', async () => {
      await assert.rejects(call(c.containers, c.containers.list, { all: false, selector: {}, node: '', workload: '' }), grpcError(grpc.status.UNIMPLEMENTED, /.*/));
    });
  });
});
