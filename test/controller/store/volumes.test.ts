import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { isCode } from '../../../lib/index.js';
import type { Volume } from '../../../proto/gen/berth/v1/volumes.js';
import { EtcdStore, MemoryStore, type VolumeStore } from '../../../controller/store/index.js';
import { startEtcd, type Service } from '../../harness/index.js';

function volume(name: string, node = 'n1', patch: Partial<Volume> = {}): Volume {
  return { name, node, mountpoint: '', createdUnixMs: 1000, labels: { app: name }, inUseBy: [], ...patch };
}

/** The behaviour every VolumeStore shares (memory and etcd). */
function volumeSuite(make: () => Promise<{ a: VolumeStore; b: VolumeStore }>): void {
  let a: VolumeStore;
  let b: VolumeStore;
  beforeEach(async () => {
    ({ a, b } = await make());
  });

  it('creates, gets, lists in name order and deletes volume records', async () => {
    await a.createVolume(volume('zeta', 'n2'));
    await a.createVolume(volume('alpha'));
    assert.deepEqual((await b.listVolumes()).map((v) => [v.name, v.node]), [['alpha', 'n1'], ['zeta', 'n2']]);
    assert.deepEqual(await b.getVolume('alpha'), volume('alpha'));
    assert.equal(await b.getVolume('missing'), undefined);
    await b.deleteVolumes(['alpha', 'missing']);
    assert.deepEqual((await a.listVolumes()).map((v) => v.name), ['zeta']);
  });

  it('refuses a second create of one name with already_exists, even from another store', async () => {
    await a.createVolume(volume('data', 'n1'));
    await assert.rejects(b.createVolume(volume('data', 'n2')), (err: unknown) => {
      assert.ok(isCode(err, 'already_exists'));
      assert.match((err as Error).message, /volume "data" already exists/);
      return true;
    });
    assert.equal((await a.getVolume('data'))?.node, 'n1');
  });

  it('lets exactly one of many concurrent creates of a name win', async () => {
    const results = await Promise.allSettled(['n1', 'n2', 'n3', 'n4'].map((n, i) => (i % 2 === 0 ? a : b).createVolume(volume('race', n))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  it('never stores in_use_by and replaces a record with putVolume', async () => {
    await a.createVolume(volume('data', 'n1', { inUseBy: ['web-1'] }));
    assert.deepEqual((await b.getVolume('data'))?.inUseBy, []);
    await b.putVolume(volume('data', 'n1', { mountpoint: '/var/lib/berth/volumes/data/_data', inUseBy: ['x'] }));
    const v = await a.getVolume('data');
    assert.equal(v?.mountpoint, '/var/lib/berth/volumes/data/_data');
    assert.deepEqual(v?.inUseBy, []);
  });
}

describe('VolumeStore', () => {
  describe('MemoryStore', () => {
    volumeSuite(async () => {
      const s = new MemoryStore();
      return { a: s, b: s };
    });
  });

  describe('EtcdStore', () => {
    let etcd: Service;
    let raw: Etcd3;
    const open: EtcdStore[] = [];
    const prefixes: string[] = [];
    before(async () => {
      etcd = await startEtcd();
      raw = new Etcd3({ hosts: etcd.url });
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
      for (const p of prefixes.splice(0)) await raw.delete().prefix(p);
    });
    after(async () => {
      raw?.close();
      await etcd?.stop();
    });
    volumeSuite(async () => {
      const prefix = `/test-${randomBytes(4).toString('hex')}/berth/v1/`;
      prefixes.push(prefix);
      const a = new EtcdStore({ endpoints: [etcd.url], prefix });
      const b = new EtcdStore({ endpoints: [etcd.url], prefix });
      open.push(a, b);
      return { a, b };
    });

    it('keeps volume records under <prefix>volumes/<name> as protobuf', async () => {
      const prefix = `/test-${randomBytes(4).toString('hex')}/berth/v1/`;
      prefixes.push(prefix);
      const s = new EtcdStore({ endpoints: [etcd.url], prefix });
      open.push(s);
      await s.createVolume(volume('data'));
      const keys = await raw.getAll().prefix(prefix).keys();
      assert.deepEqual(keys, [`${prefix}volumes/data`]);
    });
  });
});
