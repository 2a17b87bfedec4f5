/**
 * cgroups for containers, v1 and v2 behind one interface.
 *
 * Layout: a container's cgroup is `<parent>/<name>` where parent is
 * `<this process's cgroup>/berth` in each hierarchy the runtime uses (read
 * from /proc/self/cgroup, so a runtime that itself sits in a nested cgroup,
 * as on these machines, nests its containers beneath it). The chosen
 * directories are recorded in the container's state so a later process (an
 * agent restart) finds them again without recomputing.
 *
 * v1 controllers used: memory (memory.limit_in_bytes, memory.memsw.limit_in_bytes
 * when present, oom_kill in memory.oom_control), cpu (cpu.cfs_quota_us,
 * cpu.cfs_period_us, cpu.shares), cpuacct (cpuacct.usage), pids (pids.max).
 * v2: memory.max, memory.swap.max, cpu.max, cpu.weight, pids.max; usage from
 * memory.current, cpu.stat and pids.current; oom_kill in memory.events.
 *
 * Lifecycle: create (mkdir + limits) before the container exists; the
 * container's init joins the cgroups itself (the procs files); update at any
 * time; destroy (rmdir) after the container exited.
 */
import type { CgroupFs } from '../sys/index.js';
import { InvalidArgumentError } from '../../lib/errors.js';

/** Limits. On update, undefined leaves a limit as it is; null removes it. */
export interface Resources {
  memoryBytes?: number | null;
  /** CPU time per period in microseconds (cores = quota / period). */
  cpuQuotaUs?: number | null;
  cpuPeriodUs?: number;
  /** Relative weight, v1 shares units (2..262144, default 1024). */
  cpuShares?: number;
  pidsMax?: number | null;
}

/** A container's cgroup directories, persisted in its state. */
export interface ContainerCgroup {
  version: 1 | 2;
  /** controller -> directory (v1); "" -> directory (v2). */
  dirs: Record<string, string>;
  /** cgroup.procs files the init writes itself into. */
  procs: string[];
  /** File with the "oom_kill N" counter. */
  oomFile: string;
}

export interface CgroupStats {
  cpuUsageNs: number;
  memoryUsageBytes: number;
  /** undefined = no limit */
  memoryLimitBytes: number | undefined;
  pidsCurrent: number;
  pidsMax: number | undefined;
  oomKills: number;
}

export interface CgroupManager {
  readonly version: 1 | 2;
  /** Makes the cgroup `<parent>/<name>`; AlreadyExists when it is there already. */
  create(name: string, resources: Resources): Promise<ContainerCgroup>;
  update(cg: ContainerCgroup, resources: Resources): Promise<void>;
  stats(cg: ContainerCgroup): Promise<CgroupStats>;
  /** Removes the directories (waiting briefly for exiting processes). */
  destroy(cg: ContainerCgroup): Promise<void>;
}

export interface CgroupOptions {
  /** Name of the parent directory below this process's cgroup; default "berth". */
  parentName?: string;
}

const UNLIMITED_V1 = 9223372036854771712;

/**
 * CPU use between two samples, in percent of one core (200 = two cores busy),
 * from cumulative usage and the times the samples were read (ms).
 */
export function cpuPercent(before: { cpuUsageNs: number; readAt: number }, after: { cpuUsageNs: number; readAt: number }): number {
  const wallNs = (after.readAt - before.readAt) * 1e6;
  if (wallNs <= 0) return 0;
  return Math.max(0, ((after.cpuUsageNs - before.cpuUsageNs) / wallNs) * 100);
}

/** Converts v1 cpu shares to a v2 weight (the mapping runc and crun use). */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

function checkResources(r: Resources): void {
  if (r.memoryBytes != null && (!Number.isSafeInteger(r.memoryBytes) || r.memoryBytes < 4 * 1024 * 1024)) {
    throw new InvalidArgumentError(`memory: expected at least 4194304 bytes (4 MiB), got ${r.memoryBytes}`, { field: 'memory' });
  }
  if (r.cpuQuotaUs != null && (!Number.isSafeInteger(r.cpuQuotaUs) || r.cpuQuotaUs < 1000)) {
    throw new InvalidArgumentError(`cpus: expected a quota of at least 1000 microseconds, got ${r.cpuQuotaUs}`, { field: 'cpus' });
  }
  if (r.cpuPeriodUs !== undefined && (!Number.isSafeInteger(r.cpuPeriodUs) || r.cpuPeriodUs < 1000 || r.cpuPeriodUs > 1000000)) {
    throw new InvalidArgumentError(`cpu period: expected 1000..1000000 microseconds, got ${r.cpuPeriodUs}`, { field: 'cpuPeriod' });
  }
  if (r.cpuShares !== undefined && (!Number.isSafeInteger(r.cpuShares) || r.cpuShares < 2 || r.cpuShares > 262144)) {
    throw new InvalidArgumentError(`cpu shares: expected 2..262144, got ${r.cpuShares}`, { field: 'cpuShares' });
  }
  if (r.pidsMax != null && (!Number.isSafeInteger(r.pidsMax) || r.pidsMax < 1)) {
    throw new InvalidArgumentError(`pids: expected a whole number >= 1, got ${r.pidsMax}`, { field: 'pids' });
  }
}

const num = (text: string | undefined): number => {
  const n = Number((text ?? '').trim());
  return Number.isFinite(n) ? n : 0;
};
const field = (text: string | undefined, key: string): number => {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text ?? '');
  return m ? Number(m[1]) : 0;
};

export class CgroupV1Manager implements CgroupManager {
  readonly version = 1 as const;
  constructor(
    private readonly fs: CgroupFs,
    /** controller -> parent directory */
    private readonly parents: Record<'memory' | 'cpu' | 'cpuacct' | 'pids', string>,
  ) {}

  async create(id: string, resources: Resources): Promise<ContainerCgroup> {
    checkResources(resources);
    const dirs: Record<string, string> = {};
    for (const [controller, parent] of Object.entries(this.parents)) dirs[controller] = `${parent}/${id}`;
    const cg: ContainerCgroup = {
      version: 1,
      dirs,
      procs: [...new Set(Object.values(dirs))].map((d) => `${d}/cgroup.procs`),
      oomFile: `${dirs['memory']}/memory.oom_control`,
    };
    const made: string[] = [];
    try {
      const results = await Promise.allSettled([...new Set(Object.values(dirs))].map(async (d) => {
        await this.fs.cgroupMkdir(d, { exclusive: true });
        made.push(d);
      }));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      await this.update(cg, resources);
    } catch (e) {
      // Remove only what this call made: an existing cgroup is someone else's.
      for (const d of made) await this.fs.cgroupRmdir(d).catch(() => undefined);
      await removeParents(this.fs, made);
      throw e;
    }
    return cg;
  }

  async update(cg: ContainerCgroup, r: Resources): Promise<void> {
    checkResources(r);
    const mem = cg.dirs['memory'];
    const cpu = cg.dirs['cpu'];
    const pids = cg.dirs['pids'];
    if (r.memoryBytes !== undefined && mem) {
      const v = r.memoryBytes === null ? '-1' : String(r.memoryBytes);
      const memsw = `${mem}/memory.memsw.limit_in_bytes`;
      const hasSwap = (await this.fs.cgroupRead(memsw)) !== undefined;
      // memsw must stay >= the memory limit: order the writes so it always does.
      const current = num(await this.fs.cgroupRead(`${mem}/memory.limit_in_bytes`));
      const raising = r.memoryBytes === null || r.memoryBytes > current;
      if (hasSwap && raising) await this.fs.cgroupWrite(memsw, v);
      await this.fs.cgroupWrite(`${mem}/memory.limit_in_bytes`, v);
      if (hasSwap && !raising) await this.fs.cgroupWrite(memsw, v);
    }
    if (cpu) {
      if (r.cpuPeriodUs !== undefined) await this.fs.cgroupWrite(`${cpu}/cpu.cfs_period_us`, String(r.cpuPeriodUs));
      if (r.cpuQuotaUs !== undefined) await this.fs.cgroupWrite(`${cpu}/cpu.cfs_quota_us`, r.cpuQuotaUs === null ? '-1' : String(r.cpuQuotaUs));
      if (r.cpuShares !== undefined) await this.fs.cgroupWrite(`${cpu}/cpu.shares`, String(r.cpuShares));
    }
    if (r.pidsMax !== undefined && pids) await this.fs.cgroupWrite(`${pids}/pids.max`, r.pidsMax === null ? 'max' : String(r.pidsMax));
  }

  async stats(cg: ContainerCgroup): Promise<CgroupStats> {
    const mem = cg.dirs['memory'];
    const limit = num(await this.fs.cgroupRead(`${mem}/memory.limit_in_bytes`));
    const pidsMax = (await this.fs.cgroupRead(`${cg.dirs['pids']}/pids.max`))?.trim();
    return {
      cpuUsageNs: num(await this.fs.cgroupRead(`${cg.dirs['cpuacct']}/cpuacct.usage`)),
      memoryUsageBytes: num(await this.fs.cgroupRead(`${mem}/memory.usage_in_bytes`)),
      memoryLimitBytes: limit >= UNLIMITED_V1 || limit === 0 ? undefined : limit,
      pidsCurrent: num(await this.fs.cgroupRead(`${cg.dirs['pids']}/pids.current`)),
      pidsMax: pidsMax === undefined || pidsMax === 'max' ? undefined : Number(pidsMax),
      oomKills: field(await this.fs.cgroupRead(cg.oomFile), 'oom_kill'),
    };
  }

  async destroy(cg: ContainerCgroup): Promise<void> {
    // One directory per hierarchy, independent of each other: removed side by side.
    await Promise.all([...new Set(Object.values(cg.dirs))].map((d) => this.fs.cgroupRmdir(d)));
    await removeParents(this.fs, Object.values(cg.dirs));
  }
}

export class CgroupV2Manager implements CgroupManager {
  readonly version = 2 as const;
  constructor(
    private readonly fs: CgroupFs,
    /** the cgroup this process is in (controllers are enabled below it) */
    private readonly base: string,
    private readonly parent: string,
  ) {}

  async create(id: string, resources: Resources): Promise<ContainerCgroup> {
    checkResources(resources);
    const dir = `${this.parent}/${id}`;
    const cg: ContainerCgroup = { version: 2, dirs: { '': dir }, procs: [`${dir}/cgroup.procs`], oomFile: `${dir}/memory.events` };
    let made = false;
    try {
      await this.fs.cgroupMkdir(this.parent);
      for (const d of [this.base, this.parent]) await this.fs.cgroupWrite(`${d}/cgroup.subtree_control`, '+cpu +memory +pids');
      await this.fs.cgroupMkdir(dir, { exclusive: true });
      made = true;
      await this.update(cg, resources);
    } catch (e) {
      if (made) await this.destroy(cg).catch(() => undefined);
      throw e;
    }
    return cg;
  }

  async update(cg: ContainerCgroup, r: Resources): Promise<void> {
    checkResources(r);
    const dir = cg.dirs[''];
    if (r.memoryBytes !== undefined) {
      const v = r.memoryBytes === null ? 'max' : String(r.memoryBytes);
      await this.fs.cgroupWrite(`${dir}/memory.max`, v);
      if ((await this.fs.cgroupRead(`${dir}/memory.swap.max`)) !== undefined) await this.fs.cgroupWrite(`${dir}/memory.swap.max`, '0');
    }
    if (r.cpuQuotaUs !== undefined || r.cpuPeriodUs !== undefined) {
      const [oldQuota, oldPeriod] = ((await this.fs.cgroupRead(`${dir}/cpu.max`)) ?? 'max 100000').trim().split(/\s+/);
      const quota = r.cpuQuotaUs === undefined ? (oldQuota ?? 'max') : r.cpuQuotaUs === null ? 'max' : String(r.cpuQuotaUs);
      const period = r.cpuPeriodUs ?? Number(oldPeriod ?? 100000);
      await this.fs.cgroupWrite(`${dir}/cpu.max`, `${quota} ${period}`);
    }
    if (r.cpuShares !== undefined) await this.fs.cgroupWrite(`${dir}/cpu.weight`, String(sharesToWeight(r.cpuShares)));
    if (r.pidsMax !== undefined) await this.fs.cgroupWrite(`${dir}/pids.max`, r.pidsMax === null ? 'max' : String(r.pidsMax));
  }

  async stats(cg: ContainerCgroup): Promise<CgroupStats> {
    const dir = cg.dirs[''];
    const limit = (await this.fs.cgroupRead(`${dir}/memory.max`))?.trim();
    const pidsMax = (await this.fs.cgroupRead(`${dir}/pids.max`))?.trim();
    return {
      cpuUsageNs: field(await this.fs.cgroupRead(`${dir}/cpu.stat`), 'usage_usec') * 1000,
      memoryUsageBytes: num(await this.fs.cgroupRead(`${dir}/memory.current`)),
      memoryLimitBytes: limit === undefined || limit === 'max' ? undefined : Number(limit),
      pidsCurrent: num(await this.fs.cgroupRead(`${dir}/pids.current`)),
      pidsMax: pidsMax === undefined || pidsMax === 'max' ? undefined : Number(pidsMax),
      oomKills: field(await this.fs.cgroupRead(cg.oomFile), 'oom_kill'),
    };
  }

  async destroy(cg: ContainerCgroup): Promise<void> {
    const dir = cg.dirs[''];
    if (dir) await this.fs.cgroupRmdir(dir);
    if (dir) await removeParents(this.fs, [dir]);
  }
}

/** Removes the (shared) parent directories when no other container uses them. */
async function removeParents(fs: CgroupFs, dirs: string[]): Promise<void> {
  await Promise.all([...new Set(dirs.map((d) => d.slice(0, d.lastIndexOf('/'))))].map(
    (parent) => fs.cgroupRmdir(parent, { timeoutMs: 0 }).catch(() => undefined), // busy: another container lives there
  ));
}

/**
 * Picks v1 when the memory controller is mounted as a v1 hierarchy (these
 * machines: v1 plus a hybrid v2 that owns only hugetlb), else v2.
 */
export async function detectCgroups(fs: CgroupFs, options: CgroupOptions = {}): Promise<CgroupManager> {
  const parentName = options.parentName ?? 'berth';
  if (!/^[A-Za-z0-9_.-]+$/.test(parentName)) {
    throw new InvalidArgumentError(`cgroup parent: expected a directory name, got "${parentName}"`, { field: 'cgroupParent' });
  }
  const mounts = await fs.cgroupMounts();
  const self = await fs.selfCgroups();
  const v1 = mounts.filter((m) => m.version === 1);
  if (v1.some((m) => m.controllers.includes('memory'))) {
    const parent = (controller: string): string => {
      const m = v1.find((x) => x.controllers.includes(controller));
      if (!m) throw new InvalidArgumentError(`cgroup v1 controller "${controller}" is not mounted`, { field: 'cgroups' });
      const key = [...self.keys()].find((k) => k.split(',').includes(controller));
      const own = (key !== undefined ? self.get(key) : '/') ?? '/';
      return `${m.mountPoint}${own === '/' ? '' : own}/${parentName}`;
    };
    return new CgroupV1Manager(fs, { memory: parent('memory'), cpu: parent('cpu'), cpuacct: parent('cpuacct'), pids: parent('pids') });
  }
  const v2 = mounts.find((m) => m.version === 2);
  if (!v2) throw new InvalidArgumentError('no cgroup hierarchy with a memory controller is mounted', { field: 'cgroups' });
  const own = self.get('') ?? '/';
  const base = `${v2.mountPoint}${own === '/' ? '' : own}`;
  return new CgroupV2Manager(fs, base, `${base}/${parentName}`);
}
