/**
 * crun (and so podman) refuses to run on these hybrid cgroup machines unless
 * the hugetlb controller is bound to a v1 hierarchy: benchmarks that run crun
 * or podman mount it for the run and undo that after (MACHINE-NOTES).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const HUGETLB = '/sys/fs/cgroup/hugetlb';

function hugetlbRefs(): number {
  const line = readFileSync('/proc/cgroups', 'utf8').split('\n').find((l) => l.startsWith('hugetlb\t'));
  return Number(line?.split('\t')[2] ?? 0);
}

/** Which hierarchy hugetlb is bound to (0 = the unified v2 one). */
function hugetlbHierarchy(): number {
  const line = readFileSync('/proc/cgroups', 'utf8').split('\n').find((l) => l.startsWith('hugetlb\t'));
  return Number(line?.split('\t')[1] ?? 0);
}

function removeCgroupTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  if (dir !== HUGETLB) rmdirSync(dir);
}

/** Mounts hugetlb as v1 for crun; returns the undo (or undefined when it was there already). */
export function mountHugetlb(): (() => Promise<void>) | undefined {
  if (readFileSync('/proc/self/mounts', 'utf8').includes(` ${HUGETLB} `)) return undefined;
  const made = !existsSync(HUGETLB);
  if (made) mkdirSync(HUGETLB);
  const r = spawnSync('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', HUGETLB]);
  if (r.status !== 0) throw new Error(`mount hugetlb: ${r.stderr.toString()}`);
  return async () => {
    removeCgroupTree(HUGETLB);
    for (let i = 0; i < 100 && hugetlbRefs() > 1; i++) await new Promise((res) => setTimeout(res, 50));
    const u = spawnSync('umount', [HUGETLB]);
    if (u.status !== 0) process.stderr.write(`warning: umount ${HUGETLB}: ${u.stderr.toString()}\n`);
    // An unmounted v1 hierarchy that still had a dying child lingers and keeps
    // hugetlb from the unified hierarchy: mount it once more (now childless)
    // and unmount again, which destroys it.
    for (let i = 0; i < 50 && hugetlbHierarchy() !== 0; i++) await new Promise((res) => setTimeout(res, 50));
    if (hugetlbHierarchy() !== 0) {
      spawnSync('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', HUGETLB]);
      spawnSync('umount', [HUGETLB]);
    }
    if (made && statSync(HUGETLB, { throwIfNoEntry: false })) rmdirSync(HUGETLB);
    if (hugetlbHierarchy() !== 0) process.stderr.write('warning: hugetlb is still bound to a v1 hierarchy (see /proc/cgroups)\n');
  };
}
