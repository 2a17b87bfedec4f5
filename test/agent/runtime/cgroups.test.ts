/** cgroup managers through FakeSys (v2, which this machine lacks) and detection. */
import assert from 'node:assert/strict';
import { FakeSys } from '../../../agent/sys/fake.js';
import { CgroupV1Manager, CgroupV2Manager, cpuPercent, detectCgroups, sharesToWeight } from '../../../agent/runtime/index.js';

describe('detectCgroups', () => {
  it('picks v1 nested under this process when memory is a v1 hierarchy (hybrid layout)', async () => {
    const sys = new FakeSys({
      mounts: [
        { mountPoint: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'] },
        { mountPoint: '/sys/fs/cgroup/cpu', version: 1, controllers: ['cpu'] },
        { mountPoint: '/sys/fs/cgroup/cpuacct', version: 1, controllers: ['cpuacct'] },
        { mountPoint: '/sys/fs/cgroup/pids', version: 1, controllers: ['pids'] },
        { mountPoint: '/sys/fs/cgroup/unified', version: 2, controllers: ['hugetlb'] },
      ],
      self: new Map([['memory', '/process_api/abc'], ['cpu', '/'], ['cpuacct', '/'], ['pids', '/'], ['', '/']]),
    });
    const m = await detectCgroups(sys);
    assert.ok(m instanceof CgroupV1Manager);
    const cg = await m.create('c1', {});
    assert.deepEqual(cg.dirs, {
      memory: '/sys/fs/cgroup/memory/process_api/abc/berth/c1',
      cpu: '/sys/fs/cgroup/cpu/berth/c1',
      cpuacct: '/sys/fs/cgroup/cpuacct/berth/c1',
      pids: '/sys/fs/cgroup/pids/berth/c1',
    });
    assert.equal(cg.oomFile, '/sys/fs/cgroup/memory/process_api/abc/berth/c1/memory.oom_control');
  });

  it('picks v2 when only a unified hierarchy is mounted', async () => {
    const sys = new FakeSys({ self: new Map([['', '/agent']]) });
    const m = await detectCgroups(sys, { parentName: 'berth-test' });
    assert.ok(m instanceof CgroupV2Manager);
    const cg = await m.create('c1', {});
    assert.deepEqual(cg.dirs, { '': '/sys/fs/cgroup/agent/berth-test/c1' });
    assert.deepEqual(cg.procs, ['/sys/fs/cgroup/agent/berth-test/c1/cgroup.procs']);
  });

  it('rejects a parent name that is not a plain directory name', async () => {
    await assert.rejects(detectCgroups(new FakeSys(), { parentName: '../x' }), /cgroup parent: expected a directory name/);
  });
});

describe('CgroupV2Manager', () => {
  const setup = () => {
    const sys = new FakeSys();
    return { sys, m: new CgroupV2Manager(sys, '/sys/fs/cgroup', '/sys/fs/cgroup/berth') };
  };

  it('enables controllers and writes limits when it creates a container cgroup', async () => {
    const { sys, m } = setup();
    await m.create('c1', { memoryBytes: 64 << 20, cpuQuotaUs: 50000, cpuPeriodUs: 100000, cpuShares: 1024, pidsMax: 100 });
    assert.equal(sys.files.get('/sys/fs/cgroup/cgroup.subtree_control'), '+cpu +memory +pids');
    assert.equal(sys.files.get('/sys/fs/cgroup/berth/cgroup.subtree_control'), '+cpu +memory +pids');
    const dir = '/sys/fs/cgroup/berth/c1';
    assert.ok(sys.dirs.has(dir));
    assert.equal(sys.files.get(`${dir}/memory.max`), String(64 << 20));
    assert.equal(sys.files.get(`${dir}/cpu.max`), '50000 100000');
    assert.equal(sys.files.get(`${dir}/cpu.weight`), String(sharesToWeight(1024)));
    assert.equal(sys.files.get(`${dir}/pids.max`), '100');
  });

  it('keeps the period and removes limits with null when updated', async () => {
    const { sys, m } = setup();
    const cg = await m.create('c1', { cpuQuotaUs: 50000, cpuPeriodUs: 200000, memoryBytes: 64 << 20 });
    await m.update(cg, { cpuQuotaUs: 100000, memoryBytes: null, pidsMax: null });
    const dir = '/sys/fs/cgroup/berth/c1';
    assert.equal(sys.files.get(`${dir}/cpu.max`), '100000 200000');
    assert.equal(sys.files.get(`${dir}/memory.max`), 'max');
    assert.equal(sys.files.get(`${dir}/pids.max`), 'max');
  });

  it('reads usage, limits and OOM kills from v2 files', async () => {
    const { sys, m } = setup();
    const cg = await m.create('c1', { memoryBytes: 32 << 20 });
    const dir = '/sys/fs/cgroup/berth/c1';
    sys.files.set(`${dir}/cpu.stat`, 'usage_usec 1500\nuser_usec 1000\n');
    sys.files.set(`${dir}/memory.current`, '12345\n');
    sys.files.set(`${dir}/pids.current`, '3\n');
    sys.files.set(`${dir}/memory.events`, 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
    assert.deepEqual(await m.stats(cg), {
      cpuUsageNs: 1_500_000, memoryUsageBytes: 12345, memoryLimitBytes: 32 << 20, pidsCurrent: 3, pidsMax: undefined, oomKills: 1,
    });
  });

  it('removes the directory it made and nothing is left when a limit cannot be written', async () => {
    const { sys, m } = setup();
    sys.failNext('cgroupWrite', new Error('EINVAL'));
    await assert.rejects(m.create('c1', { memoryBytes: 64 << 20 }), /EINVAL/);
    assert.ok(!sys.dirs.has('/sys/fs/cgroup/berth/c1'));
  });

  it('rejects limits out of range naming the field', async () => {
    const { m } = setup();
    await assert.rejects(m.create('c1', { memoryBytes: 1000 }), /memory: expected at least 4194304 bytes/);
    await assert.rejects(m.create('c1', { pidsMax: 0 }), /pids: expected a whole number >= 1, got 0/);
    await assert.rejects(m.create('c1', { cpuShares: 1 }), /cpu shares: expected 2..262144/);
  });
});

describe('CgroupV1Manager', () => {
  const parents = { memory: '/m/berth', cpu: '/c/berth', cpuacct: '/a/berth', pids: '/p/berth' };

  it('keeps memsw at or above the memory limit when lowering and raising it', async () => {
    const sys = new FakeSys();
    const m = new CgroupV1Manager(sys, parents);
    const cg = await m.create('c1', {});
    sys.files.set('/m/berth/c1/memory.memsw.limit_in_bytes', '9223372036854771712');
    sys.files.set('/m/berth/c1/memory.limit_in_bytes', '9223372036854771712');
    sys.calls.length = 0;
    await m.update(cg, { memoryBytes: 64 << 20 });
    const writes = () => sys.callsOf('cgroupWrite').map((a) => (a[0] as string).split('/').pop());
    assert.deepEqual(writes(), ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes']);
    sys.calls.length = 0;
    await m.update(cg, { memoryBytes: 128 << 20 });
    assert.deepEqual(writes(), ['memory.memsw.limit_in_bytes', 'memory.limit_in_bytes']);
  });

  it('writes quota, period, shares and pids.max', async () => {
    const sys = new FakeSys();
    const m = new CgroupV1Manager(sys, parents);
    await m.create('c1', { cpuQuotaUs: 150000, cpuPeriodUs: 100000, cpuShares: 512, pidsMax: 10 });
    assert.equal(sys.files.get('/c/berth/c1/cpu.cfs_quota_us'), '150000');
    assert.equal(sys.files.get('/c/berth/c1/cpu.cfs_period_us'), '100000');
    assert.equal(sys.files.get('/c/berth/c1/cpu.shares'), '512');
    assert.equal(sys.files.get('/p/berth/c1/pids.max'), '10');
  });

  it('removes container and parent directories when destroyed', async () => {
    const sys = new FakeSys();
    const m = new CgroupV1Manager(sys, parents);
    const cg = await m.create('c1', {});
    await m.destroy(cg);
    const removed = sys.callsOf('cgroupRmdir').map((a) => a[0]);
    assert.deepEqual(removed.slice(0, 4), ['/m/berth/c1', '/c/berth/c1', '/a/berth/c1', '/p/berth/c1']);
    assert.ok(removed.includes('/m/berth'));
  });
});

describe('cpuPercent', () => {
  it('turns two cumulative samples into percent of a core', () => {
    assert.equal(cpuPercent({ cpuUsageNs: 0, readAt: 1000 }, { cpuUsageNs: 500_000_000, readAt: 2000 }), 50);
    assert.equal(cpuPercent({ cpuUsageNs: 0, readAt: 1000 }, { cpuUsageNs: 2_000_000_000, readAt: 2000 }), 200);
    assert.equal(cpuPercent({ cpuUsageNs: 5, readAt: 1000 }, { cpuUsageNs: 5, readAt: 1000 }), 0);
  });
});

describe('sharesToWeight', () => {
  it('maps the ends and the default of the shares range', () => {
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(262144), 10000);
    assert.equal(sharesToWeight(1024), 39);
  });
});
