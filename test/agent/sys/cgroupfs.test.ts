/**
 * One suite for the CgroupFs role, run against the real cgroup filesystem
 * (LinuxSys, a pids cgroup named berth-test-*) and FakeSys, so the fake
 * behaves like the kernel where agent/runtime relies on it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { LinuxSys } from '../../../agent/sys/linux.js';
import { FakeSys } from '../../../agent/sys/fake.js';
import type { CgroupFs } from '../../../agent/sys/index.js';

interface Subject {
  name: string;
  make(): Promise<{ fs: CgroupFs; base: string; cleanup(): Promise<void> }>;
}

const subjects: Subject[] = [
  {
    name: 'LinuxSys',
    make: async () => {
      const fs = new LinuxSys();
      const pids = (await fs.cgroupMounts()).find((m) => m.version === 1 && m.controllers.includes('pids'));
      if (!pids) throw new Error('no v1 pids hierarchy on this machine');
      const base = `${pids.mountPoint}/berth-test-${randomBytes(4).toString('hex')}`;
      return {
        fs, base,
        cleanup: async () => {
          for (const d of [`${base}/a/b`, `${base}/a`, base]) await fs.cgroupRmdir(d).catch(() => undefined);
          assert.ok(!existsSync(base), `${base} left behind`);
        },
      };
    },
  },
  {
    name: 'FakeSys',
    make: async () => ({ fs: new FakeSys(), base: '/sys/fs/cgroup/pids/berth-test', cleanup: async () => undefined }),
  },
];

for (const subject of subjects) {
  describe(`CgroupFs (${subject.name})`, () => {
    let ctx: Awaited<ReturnType<Subject['make']>>;
    beforeEach(async () => {
      ctx = await subject.make();
    });
    afterEach(async () => {
      await ctx.cleanup();
    });

    it('creates parents as needed and refuses an existing directory when exclusive', async () => {
      await ctx.fs.cgroupMkdir(`${ctx.base}/a/b`, { exclusive: true });
      await ctx.fs.cgroupMkdir(`${ctx.base}/a/b`);
      await assert.rejects(ctx.fs.cgroupMkdir(`${ctx.base}/a/b`, { exclusive: true }), { name: 'AlreadyExistsError' });
    });

    it('writes and reads a limit and reports a missing file as undefined', async () => {
      await ctx.fs.cgroupMkdir(`${ctx.base}/a`, { exclusive: true });
      await ctx.fs.cgroupWrite(`${ctx.base}/a/pids.max`, '42');
      assert.equal((await ctx.fs.cgroupRead(`${ctx.base}/a/pids.max`))?.trim(), '42');
      assert.equal(await ctx.fs.cgroupRead(`${ctx.base}/a/no-such-file`), undefined);
    });

    it('removes a directory, and removing a missing one is fine', async () => {
      await ctx.fs.cgroupMkdir(`${ctx.base}/a`, { exclusive: true });
      await ctx.fs.cgroupRmdir(`${ctx.base}/a`);
      await ctx.fs.cgroupRmdir(`${ctx.base}/a`);
      await ctx.fs.cgroupMkdir(`${ctx.base}/a`, { exclusive: true });
    });
  });
}
