/**
 * Node facts: what an agent tells the controller about its machine when it
 * registers (capacity, kernel, os/arch, cgroup layout).
 *
 * Vocabulary:
 * - capacity: what the agent may hand out to containers: CPU in millicores,
 *   memory in bytes, process ids. Each is the machine's figure capped by the
 *   limits of the cgroups the agent itself runs in (a container cannot get
 *   more than its parent), so an agent inside a limited cgroup reports the
 *   limit, not the host's total.
 * - cgroup version: "v1" (only v1 hierarchies), "v2" (only the unified
 *   hierarchy) or "hybrid" (v1 hierarchies plus a unified one, as here).
 *
 * Everything is read through `FactSources` so the parsing can be checked
 * against sample files; `hostSources()` reads the real /proc and /sys.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { posix } from 'node:path';

export type CgroupVersion = 'v1' | 'v2' | 'hybrid';

export interface NodeFacts {
  cpuMillis: number;
  memoryBytes: number;
  pids: number;
  kernel: string;
  /** process.platform, e.g. "linux". */
  os: string;
  /** OCI architecture name: "amd64", "arm64", ... */
  arch: string;
  cgroupVersion: CgroupVersion;
  hostname: string;
}

/** Where facts come from; `readFile` returns undefined when a file is missing or unreadable. */
export interface FactSources {
  readFile(path: string): string | undefined;
  availableParallelism(): number;
  totalMemory(): number;
  kernel(): string;
  platform(): string;
  arch(): string;
  hostname(): string;
}

export function hostSources(): FactSources {
  return {
    readFile(path) {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return undefined;
      }
    },
    availableParallelism: () => os.availableParallelism(),
    totalMemory: () => os.totalmem(),
    kernel: () => os.release(),
    platform: () => process.platform,
    arch: () => process.arch,
    hostname: () => os.hostname(),
  };
}

/** One cgroup filesystem from /proc/self/mountinfo. */
export interface CgroupMount {
  /** Where it is mounted, e.g. /sys/fs/cgroup/memory. */
  mountPoint: string;
  /** The cgroup path that appears at mountPoint (field 4 of mountinfo), usually "/". */
  root: string;
  version: 1 | 2;
  /** v1 controllers of this hierarchy (from the super options), e.g. ["cpu", "cpuacct"]; empty for v2. */
  controllers: string[];
}

/** mountinfo escapes spaces and a few other bytes as \ooo. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

const V1_CONTROLLERS = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'net_cls', 'net_prio', 'perf_event', 'hugetlb', 'rdma', 'misc']);

/** The cgroup and cgroup2 mounts of a /proc/self/mountinfo text. */
export function parseMountinfo(text: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fsType = right[0];
    const root = left[3];
    const mountPoint = left[4];
    if (root === undefined || mountPoint === undefined) continue;
    if (fsType === 'cgroup2') {
      out.push({ mountPoint: unescapeMountField(mountPoint), root: unescapeMountField(root), version: 2, controllers: [] });
    } else if (fsType === 'cgroup') {
      const superOptions = (right[2] ?? '').split(',');
      const controllers = superOptions.filter((o) => V1_CONTROLLERS.has(o));
      out.push({ mountPoint: unescapeMountField(mountPoint), root: unescapeMountField(root), version: 1, controllers });
    }
  }
  return out;
}

/** "v1", "v2" or "hybrid" from the cgroup mounts; "v1" when none is mounted is not possible, so "v2" is assumed then. */
export function cgroupVersionOf(mounts: readonly CgroupMount[]): CgroupVersion {
  const hasV1 = mounts.some((m) => m.version === 1 && m.controllers.length > 0);
  const hasV2 = mounts.some((m) => m.version === 2);
  if (hasV1 && hasV2) return 'hybrid';
  if (hasV1) return 'v1';
  return 'v2';
}

/**
 * /proc/self/cgroup as a map from controller to cgroup path. v1 lines
 * ("4:memory:/a/b", "1:cpu,cpuacct:/") give one entry per controller; the v2
 * line ("0::/a") is stored under the key "".
 */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const controllers = m[2] ?? '';
    const path = m[3] ?? '/';
    if (controllers === '') {
      out.set('', path);
      continue;
    }
    for (const c of controllers.split(',')) out.set(c, path);
  }
  return out;
}

/** Number of CPUs in a cpuset list such as "0-3,8,10-11"; undefined when it does not parse. */
export function parseCpuList(text: string): number | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  let n = 0;
  for (const part of t.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) return undefined;
    n += hi - lo + 1;
  }
  return n;
}

/** MemTotal of /proc/meminfo in bytes; undefined when missing. */
export function parseMeminfoTotal(text: string): number | undefined {
  const m = /^MemTotal:\s+(\d+)\s*kB$/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * A limit file's value: a number, or undefined for "max", for v1's "no limit"
 * sentinel (anything at or above 2^62) and for unreadable text.
 */
export function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === '' || t === 'max' || t === '-1') return undefined;
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  if (!Number.isFinite(n) || n >= 2 ** 62) return undefined;
  return n;
}

/**
 * CPU millicores allowed by a CFS quota: v1 `cpu.cfs_quota_us` + `cpu.cfs_period_us`
 * or v2 `cpu.max` ("max 100000" or "50000 100000"); undefined when unlimited.
 */
export function parseCpuQuota(quota: string | undefined, period?: string): number | undefined {
  if (quota === undefined) return undefined;
  const parts = quota.trim().split(/\s+/);
  let q: number | undefined;
  let p: number | undefined;
  if (parts.length === 2) {
    q = parseLimit(parts[0]);
    p = parseLimit(parts[1]);
  } else {
    q = parseLimit(parts[0]);
    p = parseLimit(period);
  }
  if (q === undefined || p === undefined || p === 0) return undefined;
  return Math.floor((q * 1000) / p);
}

/** The directories of cgroup `path` and its ancestors inside `mount`, innermost first. */
function cgroupDirs(mount: CgroupMount, path: string): string[] {
  let rel = path;
  if (mount.root !== '/' && (rel === mount.root || rel.startsWith(mount.root + '/'))) {
    rel = rel.slice(mount.root.length) || '/';
  }
  const dirs: string[] = [];
  let cur = posix.normalize('/' + rel);
  for (;;) {
    dirs.push(posix.join(mount.mountPoint, cur));
    if (cur === '/') break;
    cur = posix.dirname(cur);
  }
  return dirs;
}

interface ControllerView {
  mount: CgroupMount;
  dirs: string[];
}

/** Where a controller's files are: the v1 hierarchy that has it, else the unified one. */
function controllerView(name: string, mounts: readonly CgroupMount[], cgroups: Map<string, string>): ControllerView | undefined {
  const v1 = mounts.find((m) => m.version === 1 && m.controllers.includes(name));
  if (v1) {
    const path = cgroups.get(name);
    return path === undefined ? undefined : { mount: v1, dirs: cgroupDirs(v1, path) };
  }
  const v2 = mounts.find((m) => m.version === 2);
  const path = cgroups.get('');
  if (!v2 || path === undefined) return undefined;
  return { mount: v2, dirs: cgroupDirs(v2, path) };
}

/** The smallest limit along the cgroup path (a child never gets more than its parents). */
function smallestLimit(view: ControllerView | undefined, read: (dir: string) => number | undefined): number | undefined {
  if (!view) return undefined;
  let best: number | undefined;
  for (const dir of view.dirs) {
    const v = read(dir);
    if (v !== undefined && (best === undefined || v < best)) best = v;
  }
  return best;
}

/** Node.js arch names to the OCI/Go names that image indexes use. */
export function ociArch(nodeArch: string): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  return map[nodeArch] ?? nodeArch;
}

/** Reads the node's facts. Never throws: a missing file only loses its cap. */
export function detectNodeFacts(src: FactSources = hostSources()): NodeFacts {
  const mounts = parseMountinfo(src.readFile('/proc/self/mountinfo') ?? '');
  const cgroups = parseProcCgroup(src.readFile('/proc/self/cgroup') ?? '');

  // CPU: usable CPUs (availableParallelism honours the affinity mask), then the cpuset and the CFS quota.
  let cpuMillis = Math.max(1, src.availableParallelism()) * 1000;
  const cpuset = controllerView('cpuset', mounts, cgroups);
  if (cpuset) {
    const file = cpuset.mount.version === 1 ? 'cpuset.cpus' : 'cpuset.cpus.effective';
    const first = cpuset.dirs[0];
    const n = first === undefined ? undefined : parseCpuList(src.readFile(posix.join(first, file)) ?? '');
    if (n !== undefined && n > 0) cpuMillis = Math.min(cpuMillis, n * 1000);
  }
  const cpu = controllerView('cpu', mounts, cgroups);
  const quota = smallestLimit(cpu, (dir) =>
    cpu?.mount.version === 1
      ? parseCpuQuota(src.readFile(posix.join(dir, 'cpu.cfs_quota_us')), src.readFile(posix.join(dir, 'cpu.cfs_period_us')))
      : parseCpuQuota(src.readFile(posix.join(dir, 'cpu.max'))),
  );
  if (quota !== undefined && quota > 0) cpuMillis = Math.min(cpuMillis, quota);

  // Memory: MemTotal, capped by the memory cgroup limits along our path.
  let memoryBytes = parseMeminfoTotal(src.readFile('/proc/meminfo') ?? '') ?? src.totalMemory();
  const memory = controllerView('memory', mounts, cgroups);
  const memLimit = smallestLimit(memory, (dir) =>
    parseLimit(src.readFile(posix.join(dir, memory?.mount.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'))),
  );
  if (memLimit !== undefined && memLimit > 0) memoryBytes = Math.min(memoryBytes, memLimit);

  // Pids: the kernel's pid_max, capped by pids.max along our path.
  let pids = parseLimit(src.readFile('/proc/sys/kernel/pid_max')) ?? 32768;
  const threadsMax = parseLimit(src.readFile('/proc/sys/kernel/threads-max'));
  if (threadsMax !== undefined && threadsMax > 0) pids = Math.min(pids, threadsMax);
  const pidsView = controllerView('pids', mounts, cgroups);
  const pidsLimit = smallestLimit(pidsView, (dir) => parseLimit(src.readFile(posix.join(dir, 'pids.max'))));
  if (pidsLimit !== undefined && pidsLimit > 0) pids = Math.min(pids, pidsLimit);

  return {
    cpuMillis,
    memoryBytes,
    pids,
    kernel: src.kernel(),
    os: src.platform(),
    arch: ociArch(src.arch()),
    cgroupVersion: cgroupVersionOf(mounts),
    hostname: src.hostname(),
  };
}
