import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OverlaySnapshotter, diskUsage } from '../../../agent/snapshots/index.js';
import { LinuxSys } from '../../../agent/sys/linux.js';
import { LinuxOverlayMounter, overlayOptions } from '../../../agent/sys/overlay.js';
import { sha256 } from '../images/fixtures.js';
import { FakeOverlayMounter } from './fakes.js';

for (const via of ['mount(8)', 'the helper spawner'] as const) describe(`OverlaySnapshotter (mounts by ${via})`, () => {
  let root: string;
  const sys = via === 'mount(8)' ? undefined : new LinuxSys();
  const mounter = new LinuxOverlayMounter(sys);
  let snaps: OverlaySnapshotter;
  after(() => sys?.close());

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'berth-snap-'));
    snaps = new OverlaySnapshotter({ root, mounter });
  });
  afterEach(async () => {
    for (const c of await snaps.listContainers()) await snaps.removeContainer(c.id);
    rmSync(root, { recursive: true, force: true });
  });

  async function layer(chainId: string, parent: string | undefined, files: Record<string, string>): Promise<void> {
    const p = await snaps.prepareLayer(chainId, parent);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(p.dir, name), text);
    await p.commit();
  }

  it('mounts a container root with copy-on-write and removes it: unmounted, upper deleted, lowers untouched', async () => {
    const base = sha256(Buffer.from('base'));
    const top = sha256(Buffer.from('top'));
    await layer(base, undefined, { a: 'base-a', b: 'base-b' });
    await layer(top, base, { b: 'top-b' });
    const c = await snaps.mountContainer('ctr', top);
    assert.equal(readFileSync(join(c.rootfs, 'a'), 'utf8'), 'base-a');
    assert.equal(readFileSync(join(c.rootfs, 'b'), 'utf8'), 'top-b');
    writeFileSync(join(c.rootfs, 'a'), 'changed');
    assert.equal(readFileSync(join(c.upperdir, 'a'), 'utf8'), 'changed');
    assert.equal(readFileSync(join((await snaps.stat(base))!.dir, 'a'), 'utf8'), 'base-a');
    assert.ok(await mounter.isMounted(c.rootfs));
    await assert.rejects(snaps.mountContainer('ctr', top), /container snapshot "ctr" already exists/);
    await snaps.removeContainer('ctr');
    assert.ok(!(await mounter.isMounted(c.rootfs)));
    assert.ok(!existsSync(c.upperdir));
    assert.deepEqual(await snaps.listContainers(), []);
  });

  it('reports a failed mount with its target and the reason, and leaves nothing mounted', async () => {
    const target = join(root, 'target');
    mkdirSync(target);
    await assert.rejects(mounter.mount({ cwd: root, lowerdirs: ['missing-a', 'missing-b'], target }),
      (err: Error) => err.message.includes(target));
    assert.ok(!(await mounter.isMounted(target)));
    await assert.rejects(mounter.unmount(target), /not mounted|Invalid argument/);
  });

  it('aborting a prepared layer leaves nothing; a failed mount leaves no container dir', async () => {
    const id = sha256(Buffer.from('x'));
    const p = await snaps.prepareLayer(id, undefined);
    writeFileSync(join(p.dir, 'f'), 'x');
    await p.abort();
    assert.equal(await snaps.stat(id), undefined);
    await assert.rejects(snaps.mountContainer('c2', id), /snapshot "sha256:[a-f0-9]{64}" not found/);
    assert.ok(!existsSync(join(root, 'snapshots', 'containers', 'c2')));
    await assert.rejects(snaps.mountContainer('../evil', id), /invalid container ID "..\/evil"/);
  });

  it('keeps a removed layer from being half visible and reports the bytes freed', async () => {
    const id = sha256(Buffer.from('y'));
    const p = await snaps.prepareLayer(id, undefined);
    writeFileSync(join(p.dir, 'f'), Buffer.alloc(64 * 1024, 1));
    await p.commit();
    const before = await diskUsage(join(root, 'snapshots', 'layers'));
    const freed = await snaps.removeLayer(id);
    assert.ok(freed >= 64 * 1024 && freed <= before, `freed ${freed}`);
    assert.equal(await snaps.stat(id), undefined);
  });

  it('passes lower dirs topmost first as short paths relative to the snapshots dir, and cleans up a failed mount', async () => {
    const fake = new FakeOverlayMounter();
    const fs = new OverlaySnapshotter({ root, mounter: fake });
    const ids = ['a', 'b', 'c'].map((x) => sha256(Buffer.from(x)));
    for (const [i, id] of ids.entries()) {
      const p = await fs.prepareLayer(id, i > 0 ? ids[i - 1] : undefined);
      await p.commit();
    }
    const c = await fs.mountContainer('fake1', ids[2]!);
    const m = fake.mounts[0]!;
    assert.equal(m.cwd, join(root, 'snapshots'));
    assert.deepEqual(m.lowerdirs, [...ids].reverse().map((id) => `layers/${id.slice(7, 19)}/fs`));
    assert.equal(m.data, `lowerdir=${m.lowerdirs.join(':')},upperdir=containers/fake1/upper,workdir=containers/fake1/work`);
    assert.equal(m.target, c.rootfs);
    await fs.removeContainer('fake1');
    assert.deepEqual(fake.unmounts, [c.rootfs]);
    assert.ok(!existsSync(join(root, 'snapshots', 'containers', 'fake1')));
    fake.failNext = new Error('mount: permission denied');
    await assert.rejects(fs.mountContainer('fake2', ids[2]!), /failed to mount the root filesystem of container "fake2": mount: permission denied/);
    assert.ok(!existsSync(join(root, 'snapshots', 'containers', 'fake2')));
  });

  it('builds mount options within one page for 60 short relative lower dirs and refuses longer ones clearly', () => {
    const lowers = Array.from({ length: 60 }, (_, i) => `layers/${i.toString(16).padStart(12, '0')}/fs`);
    const data = overlayOptions({ cwd: '/x', lowerdirs: lowers, upperdir: 'containers/c/upper', workdir: 'containers/c/work', target: '/x/r' });
    assert.ok(data.length < 4096);
    const long = lowers.map((l) => `/var/lib/berth/some/rather/long/root/directory/snapshots/${l}`);
    assert.throws(() => overlayOptions({ cwd: '/', lowerdirs: long, target: '/r' }), /overlay mount options are \d+ bytes for 60 layers \(the kernel accepts at most 4095\)/);
    assert.throws(() => overlayOptions({ cwd: '/', lowerdirs: ['a:b'], target: '/r' }), /contains ","/);
  });
});
