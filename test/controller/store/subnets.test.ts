/**
 * Node subnet allocation (controller/store/subnets.ts) in the etcd store and
 * the memory store: distinct /24s of the cluster range, stable across
 * re-registration, released on node deletion, atomic under concurrent
 * registration, and a clear error when the range is full.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startEtcd, type Service } from '../../harness/index.js';
import { EtcdStore, MemoryStore } from '../../../controller/store/index.js';
import { chooseSubnet } from '../../../controller/store/subnets.js';
import { FailedPreconditionError, parseClusterCidr } from '../../../lib/index.js';
import { NodeSpec } from '../../../proto/gen/berth/v1/types.js';

function spec(name: string): NodeSpec {
  return NodeSpec.fromJSON({ name, address: '10.0.0.1:7071' });
}

describe('chooseSubnet', () => {
  const cluster = parseClusterCidr('10.244.0.0/16');

  it('picks a free /24 when the node has none, the same one for the same name', () => {
    const owners = new Map([[0, 'x'], [2, 'y']]);
    const got = chooseSubnet(cluster, 'a', undefined, owners);
    assert.ok(!owners.has(got.index) && got.index < 256);
    assert.equal(got.subnet, `10.244.${got.index}.0/24`);
    assert.deepEqual(chooseSubnet(cluster, 'a', undefined, owners), got);
    const small = parseClusterCidr('10.244.0.0/23');
    assert.deepEqual(chooseSubnet(small, 'a', undefined, new Map([[0, 'x']])), { index: 1, subnet: '10.244.1.0/24' });
    assert.deepEqual(chooseSubnet(small, 'a', undefined, new Map([[1, 'x']])), { index: 0, subnet: '10.244.0.0/24' });
  });

  it('keeps the node current subnet when it still owns it', () => {
    assert.deepEqual(chooseSubnet(cluster, 'a', '10.244.7.0/24', new Map([[7, 'a']])), { index: 7, subnet: '10.244.7.0/24' });
  });

  it('does not take a subnet another node owns when the record says otherwise', () => {
    const got = chooseSubnet(cluster, 'a', '10.244.0.0/24', new Map([[0, 'b']]));
    assert.notEqual(got.index, 0);
  });

  it('fails with the range in the message when every subnet is taken', () => {
    const small = parseClusterCidr('10.244.0.0/23');
    assert.throws(() => chooseSubnet(small, 'c', undefined, new Map([[0, 'a'], [1, 'b']])),
      (err: unknown) => err instanceof FailedPreconditionError && /all 2 \/24 subnets of the cluster range 10\.244\.0\.0\/23 are taken/.test(err.message));
  });
});

describe('EtcdStore node subnets', function () {
  this.timeout(60_000);
  let etcd: Service;
  const stores: EtcdStore[] = [];

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  function store(clusterCidr?: string, prefix = `/test-${randomBytes(4).toString('hex')}/`): EtcdStore {
    const s = new EtcdStore({ endpoints: [etcd.url], prefix, ...(clusterCidr ? { clusterCidr } : {}) });
    stores.push(s);
    return s;
  }

  it('gives every node its own /24 and keeps it when the node registers again', async () => {
    const s = store();
    const a = await s.registerNode(spec('a'));
    const b = await s.registerNode(spec('b'));
    assert.match(a.network?.subnet ?? '', /^10\.244\.\d+\.0\/24$/);
    assert.match(b.network?.subnet ?? '', /^10\.244\.\d+\.0\/24$/);
    assert.notEqual(a.network?.subnet, b.network?.subnet);
    const again = await s.registerNode(spec('a'));
    assert.equal(again.network?.subnet, a.network?.subnet);
    // A status write (what the leader does) keeps the subnet too.
    const withStatus = await s.setNodeStatus('a', again.status!);
    assert.equal(withStatus.network?.subnet, a.network?.subnet);
    assert.deepEqual((await s.listNodes()).map((n) => [n.spec?.name, n.network?.subnet]), [['a', a.network?.subnet], ['b', b.network?.subnet]]);
  });

  it('never gives two nodes the same subnet when they register at the same time', async () => {
    const prefix = `/test-${randomBytes(4).toString('hex')}/`;
    const names = Array.from({ length: 12 }, (_, i) => `n${i}`);
    // Separate clients, like separate controller processes.
    const nodes = await Promise.all(names.map((n) => store(undefined, prefix).registerNode(spec(n))));
    const subnets = nodes.map((n) => n.network?.subnet);
    assert.equal(new Set(subnets).size, names.length, `duplicates in ${subnets.join(', ')}`);
  });

  it('releases the subnet when the node is deleted', async () => {
    const s = store('10.244.0.0/23');
    const a = await s.registerNode(spec('a'));
    await s.registerNode(spec('b'));
    await assert.rejects(s.registerNode(spec('c')), /all 2 \/24 subnets/);
    await s.deleteNode('a');
    await assert.rejects(s.getNode('a'), /not found/);
    const c = await s.registerNode(spec('c'));
    assert.equal(c.network?.subnet, a.network?.subnet);
    await assert.rejects(s.deleteNode('a'), /not found/);
  });

  it('uses the configured cluster range and refuses a node when it is full', async () => {
    const s = store('10.99.0.0/23');
    const got = [(await s.registerNode(spec('a'))).network?.subnet, (await s.registerNode(spec('b'))).network?.subnet].sort();
    assert.deepEqual(got, ['10.99.0.0/24', '10.99.1.0/24']);
    await assert.rejects(s.registerNode(spec('c')), /failed to allocate a container subnet for node "c": all 2 \/24 subnets/);
    assert.throws(() => store('10.99.0.0/25'), /cluster-cidr: expected a prefix length from 8 to 24/);
  });
});

describe('MemoryStore node subnets', () => {
  it('allocates, keeps and releases subnets like the etcd store', async () => {
    const s = new MemoryStore();
    const a = (await s.registerNode(spec('a'))).network?.subnet;
    const b = (await s.registerNode(spec('b'))).network?.subnet;
    assert.match(a ?? '', /^10\.244\.\d+\.0\/24$/);
    assert.notEqual(a, b);
    assert.equal((await s.registerNode(spec('a'))).network?.subnet, a);
    await s.deleteNode('a');
    await assert.rejects(s.getNode('a'), /not found/);
  });
});
