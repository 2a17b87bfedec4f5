import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MS, resolveConfig, writeBundle } from '../../../agent/runtime/index.js';

describe('writeBundle mounts (volumes and bind mounts)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-rt-mounts-'));
    await mkdir(join(dir, 'rootfs'), { recursive: true });
    await mkdir(join(dir, 'vol'), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('adds each mount as a recursive nosuid, nodev bind after the default mounts, read-only when asked', async () => {
    await writeBundle(dir, 'rootfs', { Cmd: ['sh'] }, {
      dns: [], hostNofileHard: 20000,
      mounts: [
        { source: join(dir, 'vol'), destination: '/data', readOnly: false },
        { source: join(dir, 'vol'), destination: '/ro', readOnly: true },
      ],
    });
    const cfg = resolveConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')), dir, { RLIMIT_NOFILE: 20000 });
    const last = cfg.mounts.slice(-2);
    assert.deepEqual(last.map((m) => [m.destination, m.type, m.source]), [['/data', 'bind', join(dir, 'vol')], ['/ro', 'bind', join(dir, 'vol')]]);
    for (const m of last) {
      assert.equal(m.flags & (MS.BIND | MS.REC | MS.NOSUID | MS.NODEV), MS.BIND | MS.REC | MS.NOSUID | MS.NODEV);
    }
    assert.equal((last[0]?.flags ?? 0) & MS.RDONLY, 0);
    assert.equal((last[1]?.flags ?? 0) & MS.RDONLY, MS.RDONLY);
    // The defaults come first, so /proc, /dev and the /etc files cannot be covered by a mount listed before them.
    assert.ok(cfg.mounts.findIndex((m) => m.destination === '/etc/resolv.conf') < cfg.mounts.findIndex((m) => m.destination === '/data'));
  });

  it('writes no extra mounts when none are given', async () => {
    const spec = await writeBundle(dir, 'rootfs', { Cmd: ['sh'] }, { dns: [], hostNofileHard: 20000 });
    assert.ok(!(spec.mounts ?? []).some((m) => m.destination === '/data'));
    assert.equal(spec.mounts?.at(-1)?.destination, '/etc/resolv.conf');
  });
});
