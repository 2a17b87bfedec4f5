/**
 * Hostile images: symlinks in the rootfs that point a mount destination,
 * /proc or the working directory at the host (CVE-2021-30465, CVE-2024-21626
 * and relatives) must be rejected or resolved inside the rootfs. Each case
 * runs with openat2(RESOLVE_IN_ROOT) and with the helper's fallback walk.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeFixture } from './busybox.js';

for (const mode of ['openat2', 'fallback walk'] as const) {
  describe(`Runtime symlink escapes (${mode})`, function () {
    this.timeout(60_000);
    let f: RuntimeFixture;
    let host: string; // a host directory an attacker would like to reach

    beforeEach(async () => {
      if (mode === 'fallback walk') process.env['BERTH_HELPER_NO_OPENAT2'] = '1';
      f = await new RuntimeFixture().setup();
      host = await mkdtemp(join(tmpdir(), 'berth-rt-host-'));
      await writeFile(join(host, 'marker'), 'HOST\n');
    });
    afterEach(async () => {
      delete process.env['BERTH_HELPER_NO_OPENAT2'];
      try {
        await f.cleanup();
      } finally {
        await rm(host, { recursive: true, force: true });
      }
    });

    /** Adds a bind mount to a bundle's config.json. */
    async function addBind(bundle: string, source: string, destination: string): Promise<void> {
      const cfg = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { mounts: unknown[] };
      cfg.mounts.push({ destination, type: 'bind', source, options: ['bind', 'ro'] });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(cfg));
    }

    it('rejects the image when /proc is a symlink to a host directory', async () => {
      const bundle = await f.bundle(['true'], {}, async (rootfs) => {
        await symlink(host, join(rootfs, 'proc'));
      });
      await assert.rejects(f.runtime.create('c1', bundle), /mount \/proc: the proc mount destination contains a symlink/);
      assert.deepEqual(await f.runtime.list(), []);
    });

    it('rejects the image when /sys is a relative symlink climbing out of the rootfs', async () => {
      const bundle = await f.bundle(['true'], {}, async (rootfs) => {
        await symlink(`../../../../../../../..${host}`, join(rootfs, 'sys'));
      });
      await assert.rejects(f.runtime.create('c1', bundle), /mount \/sys: the sysfs mount destination contains a symlink/);
    });

    it('rejects the image when /dev is a symlink (it would put the /dev tmpfs over /proc)', async () => {
      const bundle = await f.bundle(['true'], {}, async (rootfs) => {
        await symlink('proc', join(rootfs, 'dev'));
      });
      await assert.rejects(f.runtime.create('c1', bundle), /mount \/dev: the tmpfs mount destination contains a symlink/);
    });

    it('creates a missing mount destination inside the rootfs when its parent is an absolute symlink to the host', async () => {
      const src = join(f.dir, 'bind-src');
      await mkdir(src);
      await writeFile(join(src, 'marker'), 'BIND\n');
      let rootfs = '';
      const bundle = await f.bundle(['sh', '-c', 'cat /data/sub/marker; ls /data'], {}, async (r) => {
        rootfs = r;
        await symlink(host, join(r, 'data'));
      });
      await addBind(bundle, src, '/data/sub');
      await f.runtime.create('c1', bundle, { start: true });
      const exit = await f.runtime.wait('c1', { timeoutMs: 10_000 });
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      assert.deepEqual(await f.output('c1'), ['BIND', 'sub']);
      assert.ok(!existsSync(join(host, 'sub')), 'the mount point was created on the host');
      assert.ok(existsSync(join(rootfs, host, 'sub')), 'the mount point is inside the rootfs');
    });

    it('keeps /etc/hosts inside the rootfs when the image links it to a host file', async () => {
      let rootfs = '';
      const bundle = await f.bundle(['cat', '/etc/hosts'], { hostname: 'safe' }, async (r) => {
        rootfs = r;
        await symlink(join(host, 'marker'), join(r, 'etc', 'hosts'));
      });
      await f.runtime.create('c1', bundle, { start: true });
      const exit = await f.runtime.wait('c1', { timeoutMs: 10_000 });
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      assert.ok((await f.output('c1')).includes('127.0.1.1\tsafe'));
      assert.equal(await readFile(join(host, 'marker'), 'utf8'), 'HOST\n');
      assert.ok(existsSync(join(rootfs, host, 'marker')), 'the bind target was made inside the rootfs');
    });

    it('resolves a working directory that is a symlink to the host inside the rootfs', async () => {
      const bundle = await f.bundle(['sh', '-c', 'cat marker; pwd -P'], { workdir: '/work' }, async (rootfs) => {
        await symlink(host, join(rootfs, 'work'));
        await mkdir(join(rootfs, host), { recursive: true });
        await writeFile(join(rootfs, host, 'marker'), 'INSIDE\n');
      });
      await f.runtime.create('c1', bundle, { start: true });
      await f.runtime.wait('c1', { timeoutMs: 10_000 });
      assert.deepEqual(await f.output('c1'), ['INSIDE', host]);
    });

    it('rejects a working directory that climbs out through a relative symlink to a missing place', async () => {
      const bundle = await f.bundle(['true'], { workdir: '/work' }, async (rootfs) => {
        await symlink('../../../../../../../../../etc/nonexistent-berth', join(rootfs, 'work'));
      });
      await assert.rejects(f.runtime.create('c1', bundle), /working directory "\/work" inside the container: No such file or directory/);
    });

    it('rejects a working directory under /proc/self/fd (CVE-2024-21626)', async () => {
      for (const fd of [3, 4, 5, 6, 7, 8]) {
        const bundle = await f.bundle(['true'], { workdir: `/proc/self/fd/${fd}` });
        await assert.rejects(f.runtime.create(`fd${fd}`, bundle), /working directory "\/proc\/self\/fd\/\d+"/);
      }
      assert.deepEqual(await f.runtime.list(), []);
    });
  });
}
