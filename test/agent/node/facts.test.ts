import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import {
  cgroupVersionOf,
  detectNodeFacts,
  parseCpuList,
  parseCpuQuota,
  parseLimit,
  parseMeminfoTotal,
  parseMountinfo,
  parseProcCgroup,
  type FactSources,
} from '../../../agent/node/index.js';

// The layout of the machines Berth is developed on: v1 hierarchies plus a
// unified v2 mount that owns nothing, and a nested memory cgroup.
const HYBRID_MOUNTINFO = `23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const HYBRID_CGROUP = `9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`;
const MEMINFO = 'MemTotal:       24684084 kB\nMemFree:        24069456 kB\n';

function sources(files: Record<string, string>, cpus = 8): FactSources {
  return {
    readFile: (p) => files[p],
    availableParallelism: () => cpus,
    totalMemory: () => 1,
    kernel: () => '6.1.0-test',
    platform: () => 'linux',
    arch: () => 'x64',
    hostname: () => 'host-a',
  };
}

describe('agent/node facts', () => {
  it('parses cgroup mounts with their controllers and tells hybrid, v1 and v2 apart', () => {
    const mounts = parseMountinfo(HYBRID_MOUNTINFO);
    assert.equal(mounts.length, 7);
    assert.deepEqual(mounts.find((m) => m.mountPoint === '/sys/fs/cgroup/memory')?.controllers, ['memory']);
    assert.equal(mounts.find((m) => m.mountPoint === '/sys/fs/cgroup/systemd')?.controllers.length, 0);
    assert.equal(cgroupVersionOf(mounts), 'hybrid');
    assert.equal(cgroupVersionOf(mounts.filter((m) => m.version === 1)), 'v1');
    assert.equal(cgroupVersionOf(parseMountinfo('30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n')), 'v2');
  });

  it('unescapes octal escapes in mount points', () => {
    const [m] = parseMountinfo('32 31 0:29 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,cpu\n');
    assert.equal(m?.mountPoint, '/sys/fs/cgroup/with space');
  });

  it('maps each v1 controller and the v2 entry of /proc/self/cgroup to its path', () => {
    const m = parseProcCgroup('1:cpu,cpuacct:/a\n4:memory:/process_api/x\n0::/b\n');
    assert.equal(m.get('cpu'), '/a');
    assert.equal(m.get('cpuacct'), '/a');
    assert.equal(m.get('memory'), '/process_api/x');
    assert.equal(m.get(''), '/b');
  });

  it('counts cpuset lists and rejects malformed ones', () => {
    assert.equal(parseCpuList('0-3,8,10-11\n'), 7);
    assert.equal(parseCpuList('0'), 1);
    assert.equal(parseCpuList(''), undefined);
    assert.equal(parseCpuList('3-1'), undefined);
    assert.equal(parseCpuList('a'), undefined);
  });

  it('reads limits, treating "max", -1 and the v1 unlimited sentinel as no limit', () => {
    assert.equal(parseLimit('1073741824\n'), 1073741824);
    assert.equal(parseLimit('max\n'), undefined);
    assert.equal(parseLimit('-1'), undefined);
    assert.equal(parseLimit('9223372036854771712\n'), undefined);
    assert.equal(parseCpuQuota('50000', '100000'), 500);
    assert.equal(parseCpuQuota('-1', '100000'), undefined);
    assert.equal(parseCpuQuota('150000 100000\n'), 1500);
    assert.equal(parseCpuQuota('max 100000'), undefined);
    assert.equal(parseMeminfoTotal(MEMINFO), 24684084 * 1024);
  });

  it('caps memory by the smallest limit on the agent\'s cgroup path when a parent is limited (v1)', () => {
    const facts = detectNodeFacts(sources({
      '/proc/self/mountinfo': HYBRID_MOUNTINFO,
      '/proc/self/cgroup': HYBRID_CGROUP,
      '/proc/meminfo': MEMINFO,
      '/proc/sys/kernel/pid_max': '4194304\n',
      '/proc/sys/kernel/threads-max': '200000\n',
      '/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes': '4294967296\n',
      '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/cpuset/cpuset.cpus': '0-1\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
      '/sys/fs/cgroup/pids/pids.max': undefined as unknown as string,
    }));
    assert.equal(facts.memoryBytes, 4294967296);
    assert.equal(facts.cpuMillis, 2000);
    assert.equal(facts.pids, 200000);
    assert.equal(facts.cgroupVersion, 'hybrid');
    assert.equal(facts.arch, 'amd64');
    assert.equal(facts.kernel, '6.1.0-test');
  });

  it('caps cpu by cpu.max and pids by pids.max when only cgroup v2 is mounted', () => {
    const facts = detectNodeFacts(sources({
      '/proc/self/mountinfo': '30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      '/proc/self/cgroup': '0::/agent.slice/berth\n',
      '/proc/meminfo': MEMINFO,
      '/proc/sys/kernel/pid_max': '4194304\n',
      '/sys/fs/cgroup/agent.slice/berth/cpu.max': '150000 100000\n',
      '/sys/fs/cgroup/agent.slice/berth/cpuset.cpus.effective': '0-3\n',
      '/sys/fs/cgroup/agent.slice/berth/memory.max': 'max\n',
      '/sys/fs/cgroup/agent.slice/memory.max': '2147483648\n',
      '/sys/fs/cgroup/agent.slice/berth/pids.max': '1000\n',
    }));
    assert.equal(facts.cgroupVersion, 'v2');
    assert.equal(facts.cpuMillis, 1500);
    assert.equal(facts.memoryBytes, 2147483648);
    assert.equal(facts.pids, 1000);
  });

  it('reports this machine\'s facts within what /proc says when run for real', () => {
    const facts = detectNodeFacts();
    const memTotal = parseMeminfoTotal(readFileSync('/proc/meminfo', 'utf8'));
    assert.ok(memTotal !== undefined);
    assert.ok(facts.memoryBytes > 0 && facts.memoryBytes <= memTotal);
    assert.ok(facts.cpuMillis >= 1000 && facts.cpuMillis <= os.availableParallelism() * 1000);
    assert.ok(facts.pids > 0);
    assert.equal(facts.kernel, os.release());
    assert.equal(facts.os, 'linux');
    const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
    const hasV1 = /- cgroup cgroup \S*(cpu|memory|pids)/.test(mountinfo);
    const hasV2 = / - cgroup2 /.test(mountinfo);
    assert.equal(facts.cgroupVersion, hasV1 && hasV2 ? 'hybrid' : hasV1 ? 'v1' : 'v2');
  });
});
