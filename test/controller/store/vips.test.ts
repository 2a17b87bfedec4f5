/**
 * Service virtual IPs (controller/store/vips.ts) against a real etcd:
 * distinct addresses of the service range, stable across store instances
 * (a controller restart), never two for one workload under concurrent
 * allocation, released on sync when the workload is gone, and a clear error
 * when the range is full.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startEtcd, type Service } from '../../harness/index.js';
import { EtcdStore, EtcdVipStore, checkRangesApart, chooseVip, parseServiceCidr } from '../../../controller/store/index.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../lib/index.js';

describe('chooseVip', () => {
  it('picks a free address inside the range, never the first or last, the same one for the same name', () => {
    const r = parseServiceCidr('10.96.0.0/16');
    const a = chooseVip(r, 'web', new Set());
    assert.match(a, /^10\.96\.\d+\.\d+$/);
    assert.notEqual(a, '10.96.0.0');
    assert.notEqual(a, '10.96.255.255');
    assert.equal(chooseVip(r, 'web', new Set()), a);
    assert.notEqual(chooseVip(r, 'web', new Set([a])), a);
    const tiny = { base: parseServiceCidr('10.96.0.0/28').base, bits: 30 };
    assert.deepEqual(new Set([chooseVip(tiny, 'x', new Set(['10.96.0.1'])), chooseVip(tiny, 'x', new Set(['10.96.0.2']))]), new Set(['10.96.0.2', '10.96.0.1']));
  });

  it('fails naming the range when every address is taken', () => {
    const tiny = parseServiceCidr('10.96.0.0/28');
    const all = new Set(Array.from({ length: 14 }, (_, i) => `10.96.0.${i + 1}`));
    assert.throws(() => chooseVip(tiny, 'x', all), (err: unknown) => err instanceof FailedPreconditionError && /all 14 addresses of the service range 10\.96\.0\.0\/28 are taken/.test(err.message));
  });

  it('refuses a range with host bits or a bad prefix length, naming the field', () => {
    assert.throws(() => parseServiceCidr('10.96.0.1/16'), (err: unknown) => err instanceof InvalidArgumentError && /service-cidr: "10\.96\.0\.1\/16" has host bits set/.test(err.message));
    assert.throws(() => parseServiceCidr('0.0.0.0/4'), (err: unknown) => err instanceof InvalidArgumentError && /expected a prefix length from \/8 to \/28/.test(err.message));
    assert.throws(() => parseServiceCidr('nope'), InvalidArgumentError);
  });

  it('refuses a service range that overlaps the cluster range', () => {
    checkRangesApart('10.96.0.0/16', '10.244.0.0/16');
    assert.throws(() => checkRangesApart('10.244.128.0/20', '10.244.0.0/16'), (err: unknown) => err instanceof InvalidArgumentError && /service-cidr: 10\.244\.128\.0\/20 overlaps the cluster range 10\.244\.0\.0\/16/.test(err.message));
    assert.throws(() => checkRangesApart('10.0.0.0/8', '10.244.0.0/16'), /overlaps/);
  });
});

describe('EtcdVipStore', function () {
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

  function store(prefix: string): EtcdStore {
    const s = new EtcdStore({ endpoints: [etcd.url], prefix });
    stores.push(s);
    return s;
  }
  const newPrefix = () => `/test-${randomBytes(4).toString('hex')}/`;

  it('gives every workload its own address and keeps it for a new store instance (controller restart)', async () => {
    const prefix = newPrefix();
    const v = new EtcdVipStore(store(prefix));
    const a = await v.allocate('a');
    const b = await v.allocate('b');
    assert.match(a, /^10\.96\.\d+\.\d+$/);
    assert.notEqual(a, b);
    assert.equal(await v.allocate('a'), a);
    const restarted = new EtcdVipStore(store(prefix));
    assert.deepEqual(await restarted.list(), new Map([['a', a], ['b', b]]));
    assert.equal(await restarted.allocate('b'), b);
  });

  it('never gives two workloads one address, nor one workload two, under concurrent allocation from two stores', async () => {
    const prefix = newPrefix();
    // A /28 has 14 addresses: 14 workloads fill it while two "controllers" race for each.
    const v1 = new EtcdVipStore(store(prefix), '10.96.0.0/28');
    const v2 = new EtcdVipStore(store(prefix), '10.96.0.0/28');
    const names = Array.from({ length: 14 }, (_, i) => `w${i}`);
    const got = await Promise.all(names.flatMap((n) => [v1.allocate(n).then((ip) => [n, ip] as const), v2.allocate(n).then((ip) => [n, ip] as const)]));
    const byName = new Map<string, string>();
    for (const [n, ip] of got) {
      assert.equal(byName.get(n) ?? ip, ip, `workload ${n} got one address`);
      byName.set(n, ip);
    }
    assert.equal(new Set(byName.values()).size, 14, 'fourteen distinct addresses');
    assert.deepEqual(await v1.list(), byName);
    await assert.rejects(v2.allocate('one-too-many'), /all 14 addresses of the service range 10\.96\.0\.0\/28 are taken/);
  });

  it('releases the address of a workload that is gone and allocates for new ones on sync', async () => {
    const prefix = newPrefix();
    const v = new EtcdVipStore(store(prefix));
    const a = await v.allocate('a');
    const b = await v.allocate('b');
    const next = await v.sync(await v.list(), new Set(['b', 'c']));
    assert.equal(next.get('b'), b);
    assert.ok(next.get('c'));
    assert.equal(next.has('a'), false);
    assert.deepEqual(await v.list(), next);
    // The released address is free again: a workload whose hash starts there can take it.
    assert.equal(await v.release('a', a), false, 'a second release changes nothing');
    assert.equal(await v.release('b', a), false, 'a release by a non-owner changes nothing');
    assert.equal((await v.list()).get('b'), b);
    const raw = await stores[0]!.client.getAll().prefix(`${prefix}vips/`).strings();
    assert.deepEqual(Object.keys(raw).sort(), [`${prefix}vips/${b}`, `${prefix}vips/${next.get('c')}`].sort());
  });
});
