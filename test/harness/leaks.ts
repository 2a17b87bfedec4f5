/**
 * Leak checks for a whole test run: what the machine holds that looks like
 * Berth's (mounts, network namespaces, links, cgroups, nft tables, processes,
 * temp dirs) is listed at the start and at the end; what is new at the end
 * is a leak.
 *
 * Vocabulary:
 * - item: one such thing, keyed by kind and identity (mount id, netns name,
 *   cgroup path, pid + start time, ...).
 * - attributed: an item that is provably this run's (a namespace or link
 *   named with one of this process's host run ids, a process descended from
 *   this one). Other new items are this run's only if nothing else was
 *   running Berth tests or Berth programs at the same time.
 * - concurrent activity: another mocha process or a process with "berth" in
 *   its command line outside this process's tree, seen at start, at end or
 *   by a sampler every 2 s. Several helpers share one machine; when others
 *   were active, unattributed new items are reported as warnings instead of
 *   failures (BERTH_TEST_LEAKS=strict makes them failures anyway,
 *   BERTH_TEST_LEAKS=off turns the check off).
 *
 * Lifecycle: the root hooks create one LeakTracker, start() it in beforeAll
 * and finish() it in afterAll after stopping registered processes and host
 * sets; finish() re-checks once after a second so that things still being
 * torn down by the kernel are not counted.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tryRun } from './exec.js';
import { madeRunIds } from './hosts.js';

export type LeakKind = 'mount' | 'netns' | 'link' | 'cgroup' | 'nft' | 'route' | 'process' | 'tempdir';

export interface LeakItem {
  kind: LeakKind;
  /** Identity within the kind (mount id, name, path, pid:start). */
  id: string;
  /** What to show a person: mount point and type, command line, ... */
  detail: string;
  /** Provably made by this process (see the module comment). */
  attributed?: boolean;
}

export type LeakSnapshot = Map<string, LeakItem>;

const key = (i: LeakItem) => `${i.kind}:${i.id}`;

const LINK_NAME = /berth|^bt[0-9a-z]{6}/i;

function procStart(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function parentOf(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
  } catch {
    return undefined;
  }
}

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** This process and its ancestors (a test run's own launcher: npm, npx, sh). */
function ancestors(): Set<string> {
  const out = new Set<string>();
  let pid: string | undefined = String(process.pid);
  while (pid && pid !== '0' && !out.has(pid)) {
    out.add(pid);
    pid = parentOf(pid);
  }
  return out;
}

function descendsFromUs(pid: string): boolean {
  const me = String(process.pid);
  let p: string | undefined = pid;
  for (let i = 0; p && p !== '0' && i < 64; i++) {
    if (p === me) return true;
    p = parentOf(p);
  }
  return false;
}

function pids(): string[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n));
}

function mounts(): LeakItem[] {
  const out: LeakItem[] = [];
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line.toLowerCase().includes('berth')) continue;
    const [pre, post = ''] = line.split(' - ');
    const f = (pre ?? '').split(' ');
    const [fstype = '', source = ''] = post.split(' ');
    const mountPoint = f[4] ?? '';
    // A netns bind mount is reported as a netns.
    if (fstype === 'nsfs' && mountPoint.startsWith('/run/netns/')) continue;
    out.push({ kind: 'mount', id: `${f[0]}`, detail: `${mountPoint} (${fstype} from ${source})` });
  }
  return out;
}

function netns(): LeakItem[] {
  if (!existsSync('/run/netns')) return [];
  const ours = madeRunIds();
  return readdirSync('/run/netns').map((name) => ({
    kind: 'netns' as const, id: name, detail: `network namespace ${name}`,
    attributed: [...ours].some((id) => name.includes(id)),
  }));
}

/** The bridge a link is enslaved to, if any. */
function masterOf(name: string): string {
  try {
    return readlinkSync(`/sys/class/net/${name}/master`).split('/').pop() ?? '';
  } catch {
    return '';
  }
}

function links(): LeakItem[] {
  const ours = madeRunIds();
  return readdirSync('/sys/class/net')
    // Berth's own links, and veths the CNI bridge plugin attached to a berth bridge.
    .filter((n) => LINK_NAME.test(n) || LINK_NAME.test(masterOf(n)))
    .map((name) => ({ kind: 'link' as const, id: name, detail: `link ${name}`, attributed: [...ours].some((id) => name.includes(id)) }));
}

function cgroups(): LeakItem[] {
  const root = '/sys/fs/cgroup';
  const out: LeakItem[] = [];
  if (!existsSync(root)) return out;
  const seen = new Set<string>();
  const walk = (dir: string, rel: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (!st.isDirectory()) continue;
      const r = `${rel}/${e}`;
      if (e.toLowerCase().includes('berth')) {
        out.push({ kind: 'cgroup', id: p, detail: `cgroup ${p}` });
      } else if (depth < 8) {
        walk(p, r, depth + 1);
      }
    }
  };
  for (const h of readdirSync(root)) {
    let real: string;
    try {
      real = realpathSync(join(root, h));
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    walk(real, '', 0);
  }
  return out;
}

async function nftTables(): Promise<LeakItem[]> {
  const res = await tryRun('nft', ['list', 'tables']).catch(() => undefined);
  if (!res || res.code !== 0) return [];
  return res.stdout.split('\n').map((l) => l.trim()).filter((l) => /^table /.test(l) && l.toLowerCase().includes('berth'))
    .map((l) => ({ kind: 'nft' as const, id: l.slice('table '.length), detail: `nft ${l}` }));
}

/** Routes the agent owns (agent/sys/net.ts marks them `proto 198`). */
async function berthRoutes(): Promise<LeakItem[]> {
  const res = await tryRun('ip', ['-4', '-j', 'route', 'show', 'table', 'all', 'proto', '198']).catch(() => undefined);
  if (!res || res.code !== 0 || res.stdout.trim() === '') return [];
  try {
    return (JSON.parse(res.stdout) as { dst?: string; gateway?: string }[])
      .map((r) => ({ kind: 'route' as const, id: `${r.dst ?? '?'} via ${r.gateway ?? '?'}`, detail: `route ${r.dst ?? '?'} via ${r.gateway ?? '?'} proto 198` }));
  } catch {
    return [];
  }
}

function processes(skip: Set<string>): LeakItem[] {
  const out: LeakItem[] = [];
  const tmp = join(tmpdir(), 'berth-test-');
  for (const pid of pids()) {
    if (skip.has(pid)) continue;
    const cmd = cmdline(pid);
    if (!cmd.includes('berth-helper') && !cmd.includes(tmp)) continue;
    out.push({ kind: 'process', id: `${pid}:${procStart(pid) ?? '?'}`, detail: `pid ${pid}: ${cmd.slice(0, 200)}`, attributed: descendsFromUs(pid) });
  }
  return out;
}

function tempDirs(): LeakItem[] {
  const dir = tmpdir();
  return readdirSync(dir).filter((n) => n.startsWith('berth-test-')).map((n) => ({ kind: 'tempdir' as const, id: join(dir, n), detail: `temp dir ${join(dir, n)}` }));
}

/** Everything on the machine that looks like Berth's, right now. */
export async function takeLeakSnapshot(): Promise<LeakSnapshot> {
  const skip = ancestors();
  const items = [...mounts(), ...netns(), ...links(), ...cgroups(), ...(await nftTables()), ...(await berthRoutes()), ...processes(skip), ...tempDirs()];
  return new Map(items.map((i) => [key(i), i]));
}

/** Items in `after` that were not in `before`. */
export function newSince(before: LeakSnapshot, after: LeakSnapshot): LeakItem[] {
  return [...after.entries()].filter(([k]) => !before.has(k)).map(([, v]) => v);
}

/** Other test runs or Berth programs outside this process's tree (pids with command lines). */
export function concurrentActivity(): string[] {
  const skip = ancestors();
  const out: string[] = [];
  for (const pid of pids()) {
    if (skip.has(pid)) continue;
    const cmd = cmdline(pid);
    if (!cmd) continue;
    const looksLikeTests = /\bmocha\b/.test(cmd) || /berth/i.test(cmd);
    if (!looksLikeTests) continue;
    if (descendsFromUs(pid)) continue;
    // Tools that only mention the word (an editor, grep, this very scan's shell) do not count.
    if (/^(grep|rg|less|vi|vim|nano|tail|cat|sed|awk) /.test(cmd)) continue;
    let exe = '';
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      continue;
    }
    if (!/node|etcd|nats|registry|berth|runc|crun|conmon|podman/.test(exe) && !/\bmocha\b/.test(cmd)) continue;
    out.push(`pid ${pid}: ${cmd.slice(0, 120)}`);
  }
  return out;
}

export interface LeakReport {
  /** New since start and this run's: the run fails. */
  leaked: LeakItem[];
  /** New since start, not provably this run's, while other runs were active: a warning. */
  uncertain: LeakItem[];
  /** Present at start and still present: a warning (left by an earlier run). */
  preexisting: LeakItem[];
  /** Other runs or Berth programs seen during the run. */
  concurrent: string[];
}

export function formatLeaks(items: readonly LeakItem[]): string {
  return items.map((i) => `  - ${i.kind}: ${i.detail}`).join('\n');
}

export class LeakTracker {
  private before: LeakSnapshot | undefined;
  private readonly concurrent = new Set<string>();
  private sampler: NodeJS.Timeout | undefined;

  async start(): Promise<void> {
    this.before = await takeLeakSnapshot();
    this.sample();
    this.sampler = setInterval(() => this.sample(), 2000);
    this.sampler.unref();
  }

  private sample(): void {
    try {
      for (const c of concurrentActivity()) this.concurrent.add(c.replace(/^pid \d+: /, ''));
    } catch {
      // /proc raced with an exiting process; the next sample will see the rest
    }
  }

  /** Compares with the start; re-checks after `settleMs` so that only things that stay are reported. */
  async finish(settleMs = 1000): Promise<LeakReport> {
    if (this.sampler) clearInterval(this.sampler);
    this.sample();
    const before = this.before ?? new Map<string, LeakItem>();
    let after = await takeLeakSnapshot();
    if (newSince(before, after).length > 0 && settleMs > 0) {
      await new Promise((r) => setTimeout(r, settleMs));
      after = await takeLeakSnapshot();
    }
    const fresh = newSince(before, after);
    const strict = process.env.BERTH_TEST_LEAKS === 'strict';
    const others = [...this.concurrent];
    const leaked = fresh.filter((i) => i.attributed || strict || others.length === 0);
    const uncertain = fresh.filter((i) => !leaked.includes(i));
    const preexisting = [...before.entries()].filter(([k]) => after.has(k)).map(([, v]) => v);
    return { leaked, uncertain, preexisting, concurrent: others };
  }
}
