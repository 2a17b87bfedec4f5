/**
 * Helpers of the container verbs that read the host (never write it):
 * the processes of a container (berth top) from /proc, and the limits kept in
 * a container's bundle so later attempts start with what `update` set.
 */
import { readdir, readFile, readlink, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileBelow } from '../../lib/index.js';
import type { ProcessInfo } from '../../proto/gen/berth/v1/containers.js';
import type { Resources as ProtoResources } from '../../proto/gen/berth/v1/types.js';
import type { Resources } from '../runtime/index.js';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ is 100 on Linux). */
const TICKS = 100;
export const CPU_PERIOD_US = 100_000;

/** Runtime limits for the fields of `r` that are set (> 0); the rest stay as they are. */
export function runtimeResources(r: ProtoResources): Resources {
  const out: Resources = {};
  if (r.memoryBytes > 0) out.memoryBytes = r.memoryBytes;
  if (r.cpuMillis > 0) {
    out.cpuQuotaUs = Math.round((r.cpuMillis / 1000) * CPU_PERIOD_US);
    out.cpuPeriodUs = CPU_PERIOD_US;
  }
  if (r.pids > 0) out.pidsMax = r.pids;
  return out;
}

/** Writes the set fields of `r` into the bundle's config.json (linux.resources), atomically. */
export async function saveBundleResources(bundle: string, r: ProtoResources): Promise<void> {
  const path = join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(path, 'utf8')) as { linux?: { resources?: Record<string, Record<string, number> | undefined> } };
  const linux = (spec.linux ??= {});
  const res = (linux.resources ??= {});
  if (r.memoryBytes > 0) res['memory'] = { ...res['memory'], limit: r.memoryBytes };
  if (r.cpuMillis > 0) res['cpu'] = { ...res['cpu'], quota: Math.round((r.cpuMillis / 1000) * CPU_PERIOD_US), period: CPU_PERIOD_US };
  if (r.pids > 0) res['pids'] = { ...res['pids'], limit: r.pids };
  await writeFile(`${path}.tmp`, JSON.stringify(spec));
  await rename(`${path}.tmp`, path);
}

/** Longest command line kept per process, and most processes listed (hostile containers may have huge or many). */
const MAX_COMMAND = 4096;
const MAX_PROCESSES = 10_000;

/** Text from the container made safe to print: control characters (terminal escapes) become "?". */
function printable(text: string, max: number): string {
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

function userNames(passwd: string | undefined): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of (passwd ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && /^\d+$/.test(f[2] ?? '') && f[0]) out.set(Number(f[2]), printable(f[0], 64));
  }
  return out;
}

/**
 * The processes in the pid namespace of `initPid` (the container's init),
 * sorted by pid; user names come from the container's /etc/passwd (read
 * without following symlinks out of `rootfs`).
 */
export async function listProcesses(initPid: number, rootfs: string): Promise<ProcessInfo[]> {
  const ns = await readlink(`/proc/${initPid}/ns/pid`);
  const names = userNames(await readFileBelow(rootfs, 'etc/passwd').catch(() => undefined));
  const out: ProcessInfo[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (out.length >= MAX_PROCESSES) break;
    const pid = Number(d);
    try {
      if ((await readlink(`/proc/${pid}/ns/pid`)) !== ns) continue;
      const [stat, status, cmdline] = await Promise.all([
        readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8'), readFile(`/proc/${pid}/cmdline`),
      ]);
      // Fields after the command (which may hold spaces and parentheses) start after the last ")".
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      const ppid = Number(f[1]);
      const ticks = Number(f[11]) + Number(f[12]);
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      const args = cmdline.toString('utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
      out.push({
        pid, ppid, user: names.get(uid) ?? String(uid), cpuMillis: Math.round((ticks / TICKS) * 1000),
        command: printable(args.length > 0 ? args.join(' ') : `[${comm}]`, MAX_COMMAND),
      });
    } catch {
      // The process exited while being read.
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}
