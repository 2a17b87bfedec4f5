/**
 * Image pull benchmark (issue 3): a Debian-rootfs image of about 60 MB
 * compressed, built from Debian packages (`apt-get download` + `dpkg -x`),
 * pulled from a loopback docker-registry with a cold local cache by:
 *   - Berth (agent/images: download, verify and unpack streaming),
 *   - podman pull (own --root/--runroot, --tls-verify=false),
 *   - curl to a file then `tar -xzf` of the same blob (the baseline the issue
 *     names), and curl piped into `tar -xz` (streaming baseline).
 * Each is run --runs times (default 3) after one warm-up, the tools taking
 * turns (run r starts with tool r mod the number of tools, so no tool always follows the same
 * one); min / median / max per tool are printed with the ratios of the medians
 * Berth/podman (target <= 0.4) and Berth/(curl + tar -xzf) (target <= 1.5),
 * the same ratios of each run, then a JSON summary.
 *
 *   npx tsc -p tsconfig.json --outDir .build-images --tsBuildInfoFile .build-images/.tsbuildinfo
 *   node .build-images/test/bench/pull.js [--runs 3] [--layers 1] [--no-podman] [--fs tmpfs|ext4] [--backing DIR] [--dir DIR] [--rm-each] [--berth-modes auto,sync] [--bare]
 *
 * --layers N splits the packages into N layers (default 1, like debian:bookworm).
 * --berth-modes auto,sync,parallel adds Berth runs with its layer files
 * created on the main thread (sync) or always by the writer threads
 * (parallel) next to the default (auto), as more tools taking turns.
 *
 * --fs gives every run of every tool (warm-up included) a file system of its
 * own, made just before the run and removed after it, so each pull starts
 * from the same state and no tool pays for another's deletes:
 *   --fs tmpfs   a fresh tmpfs mount (2 GiB) under --dir (default the OS temp dir);
 *   --fs ext4    a fresh ext4 (mkfs.ext4 defaults, inode tables initialised at
 *                mkfs time so no lazy-init thread runs during the pull) on a
 *                2 GiB sparse loop file in --backing DIR (default the OS temp
 *                dir: the disk), mounted under --dir.
 * Before each timed run, `sync` writes back what earlier runs left dirty.
 * Mounts, loop devices and files are removed after each run and on failure.
 *
 * Without --fs, every tool unpacks into a plain directory under --dir (default
 * the OS temp dir; `--dir /dev/shm` for tmpfs):
 * every run's output is kept until the end and deleted then, unless --rm-each
 * (delete each run's tree right after it). On an ext4 without a
 * journal (this machine's root), creating an inode skips every inode of its
 * group deleted in the last minute or so (`recently_deleted` in the kernel's
 * inode allocator), so deleting one tool's 6,000 files made the creates of the
 * tool that ran next several times slower; keeping the trees treats every tool
 * alike, but the runs still share the file system's history (use --fs).
 * The machine's load average and CPU pressure are printed with the figures,
 * and the CPU seconds of each tool (user + system of all threads and child
 * processes), which the load disturbs much less than wall time.
 *
 * Berth runs inside this process, which first loads the agent's modules
 * (agent/main.js, without starting an agent) so that V8's heap is about the
 * size of a real agent's (~18 MB): in a bare ~10 MB heap V8 ran a dozen full
 * collections per pull that an agent process mostly does not (--bare skips
 * the import, to see that). This process's node flags apply to Berth too:
 * `node --initial-old-space-size=64 .../pull.js` measures Berth the way an
 * agent started with that flag pulls (docs/benchmarks.md: without it V8 runs
 * a dozen full collections per pull of this image).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { run, tryRun } from '../harness/exec.js';
import { fetchDebs, testCacheDir } from '../harness/images.js';
import { startRegistry } from '../harness/index.js';
import { pushBlob, pushManifest } from '../agent/images/fixtures.js';
import { makeStack } from '../agent/images/stack.js';
import { intArg } from './args.js';
import { median } from './stats.js';

type FsKind = 'dir' | 'tmpfs' | 'ext4';
/** How Berth creates layer files (PullerOptions.layerWriteMode). */
type BerthMode = 'auto' | 'sync' | 'parallel';

const DEBS = ['libc6', 'coreutils', 'bash', 'perl-base', 'perl-modules-5.36', 'libperl5.36', 'python3.11-minimal', 'libpython3.11-stdlib', 'vim-runtime', 'cpp-12'];

const arg = intArg;

/** CPU seconds (user + system) used so far by this process's threads and by its waited-for children. */
function cpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 (utime, stime, cutime, cstime) are the 12th-15th after the command name, in clock ticks (100 Hz here).
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

/** CPU seconds of the last `timed` call (this process and the commands it ran). */
let lastCpu = 0;

async function timed(fn: () => Promise<void>): Promise<number> {
  const c = cpuSeconds();
  const t = performance.now();
  await fn();
  const wall = (performance.now() - t) / 1000;
  lastCpu = cpuSeconds() - c;
  return wall;
}

interface Layer {
  file: string;
  digest: string;
  diffId: string;
  size: number;
}

/** Builds (or reuses from the cache) the layer blobs. */
async function buildLayers(count: number): Promise<Layer[]> {
  const key = createHash('sha256').update(JSON.stringify({ DEBS, count, v: 1 })).digest('hex').slice(0, 16);
  const dir = join(testCacheDir(), 'bench', `debian-rootfs-${key}`);
  const meta = join(dir, 'layers.json');
  if (existsSync(meta)) return JSON.parse(readFileSync(meta, 'utf8')) as Layer[];
  const debs = await fetchDebs(DEBS);
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'berth-bench-rootfs-'));
  try {
    const layers: Layer[] = [];
    const groups: string[][] = Array.from({ length: count }, () => []);
    DEBS.forEach((d, i) => groups[i % count]!.push(d));
    for (let i = 0; i < count; i++) {
      const root = join(work, `l${i}`);
      mkdirSync(root);
      for (const d of groups[i]!) await run('dpkg', ['-x', debs[d]!, root]);
      const file = join(dir, `layer${i}.tar.gz`);
      await run('sh', ['-c', `tar --numeric-owner --sort=name -C "${root}" -cf - . | gzip -6 > "${file}"`], { timeoutMs: 600_000 });
      const diff = (await run('sh', ['-c', `gzip -dc "${file}" | sha256sum`])).stdout.split(' ')[0]!;
      const digest = (await run('sha256sum', [file])).stdout.split(' ')[0]!;
      layers.push({ file, digest: `sha256:${digest}`, diffId: `sha256:${diff}`, size: statSync(file).size });
    }
    writeFileSync(meta, JSON.stringify(layers));
    return layers;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Load average (1 min) and the kernel's CPU pressure ("some", 60 s average), to read the figures by. */
function machineLoad(): string {
  let psi = '';
  try {
    psi = / avg60=([0-9.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? '';
  } catch {
    // no PSI on this kernel
  }
  return `load average ${loadavg()[0]!.toFixed(1)}${psi ? `, CPU pressure ${psi}%` : ''}`;
}

/** Unmounts everything below a directory (podman leaves mounts behind). */
async function unmountBelow(dir: string): Promise<void> {
  const info = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
  for (const m of info.reverse()) await tryRun('umount', ['-l', m]);
}

/** Whether `dir` itself is a mount point. */
function isMountPoint(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

/**
 * A fresh file system for one run: a directory under `parent`, with a new
 * tmpfs or a new ext4 on a loop file (in `backing`) mounted on it, or just
 * the directory (kind 'dir'). `remove()` unmounts everything below and on it,
 * detaches the loop device and deletes the loop file and the directory; it is
 * idempotent and also runs from the benchmark's final cleanup.
 */
interface FreshFs {
  dir: string;
  remove(): Promise<void>;
}

const live = new Set<FreshFs>();

async function freshFs(kind: FsKind, parent: string, backing: string): Promise<FreshFs> {
  const dir = mkdtempSync(join(parent, `${kind}-`));
  let image: string | undefined;
  let removed = false;
  const fs: FreshFs = {
    dir,
    async remove() {
      if (removed) return;
      removed = true;
      await unmountBelow(dir);
      if (isMountPoint(dir)) {
        // mount -o loop sets autoclear: the loop device goes with the unmount.
        const r = await tryRun('umount', [dir]);
        if (r.code !== 0) await run('umount', ['-l', dir]);
      }
      if (image !== undefined) {
        // The loop device goes a moment after the unmount (autoclear); detach it
        // ourselves if it stays (the mount never happened, or autoclear did not apply).
        const loops = async (): Promise<string[]> => (await tryRun('losetup', ['-j', image!])).stdout.split('\n').map((l) => l.split(':')[0] ?? '').filter((d) => d !== '');
        for (let i = 0; i < 50 && (await loops()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
        for (const d of await loops()) await tryRun('losetup', ['-d', d]);
        rmSync(image, { force: true });
      }
      rmSync(dir, { recursive: true, force: true });
      live.delete(fs);
    },
  };
  live.add(fs);
  try {
    if (kind === 'tmpfs') await run('mount', ['-t', 'tmpfs', '-o', 'size=2g,mode=0755', 'tmpfs', dir]);
    else if (kind === 'ext4') {
      image = join(backing, `${dir.split('/').pop() ?? 'x'}.img`);
      await run('truncate', ['-s', '2G', image]);
      await run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image], { timeoutMs: 300_000 });
      await run('mount', ['-o', 'loop', image, dir]);
    }
  } catch (err) {
    await fs.remove();
    throw err;
  }
  return fs;
}

async function main(): Promise<void> {
  const bare = process.argv.includes('--bare');
  if (!bare) await import('../../agent/main.js');
  const runs = arg('runs', 3);
  const layerCount = arg('layers', 1);
  const withPodman = !process.argv.includes('--no-podman') && (await tryRun('sh', ['-c', 'command -v podman'])).code === 0;
  const layers = await buildLayers(layerCount);
  const compressed = layers.reduce((n, l) => n + l.size, 0);
  const registry = await startRegistry();
  const strArg = (name: string, fallback: string): string => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
  };
  const parentDir = strArg('dir', tmpdir());
  const backing = strArg('backing', tmpdir());
  const fsKind = strArg('fs', 'dir') as FsKind;
  if (!['dir', 'tmpfs', 'ext4'].includes(fsKind)) {
    process.stderr.write(`--fs: expected "tmpfs" or "ext4", got ${JSON.stringify(fsKind)}\n`);
    process.exit(2);
  }
  const scratch = mkdtempSync(join(parentDir, 'berth-bench-pull-'));
  const rmEach = process.argv.includes('--rm-each') || fsKind !== 'dir';
  const berthModes = strArg('berth-modes', 'auto').split(',') as BerthMode[];
  const badMode = berthModes.find((m) => !['auto', 'sync', 'parallel'].includes(m));
  if (badMode !== undefined) {
    process.stderr.write(`--berth-modes: expected a comma-separated list of "auto", "sync" and "parallel", got ${JSON.stringify(badMode)}\n`);
    process.exit(2);
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`pull benchmark: ${sig}, cleaning up\n`);
    void (async () => {
      for (const f of [...live]) await f.remove().catch(() => undefined);
      await registry.stop().catch(() => undefined);
      rmSync(scratch, { recursive: true, force: true });
      process.exit(130);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  /** Cleanups of kept runs, done at the end (see --rm-each). */
  const later: (() => Promise<void>)[] = [];
  const cleanup = async (fn: () => Promise<void>): Promise<void> => {
    if (rmEach) await fn();
    else later.push(fn);
  };
  const loadBefore = machineLoad();
  try {
    for (const l of layers) {
      const d = await pushBlob(registry.url, 'bench/debian', readFileSync(l.file));
      if (d !== l.digest) throw new Error(`pushed digest ${d}, expected ${l.digest}`);
    }
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/bash'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }));
    const configDigest = await pushBlob(registry.url, 'bench/debian', config);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    }));
    await pushManifest(registry.url, 'bench/debian', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json');
    const ref = `${registry.host}/bench/debian:v1`;

    /** Where one run of one tool works: a fresh file system (--fs) or a directory of scratch. */
    const place = async (): Promise<{ dir: string; done: () => Promise<void> }> => {
      if (fsKind === 'dir') return { dir: scratch, done: async () => undefined };
      const f = await freshFs(fsKind, scratch, backing);
      await run('sync', []);
      return { dir: f.dir, done: () => f.remove() };
    };
    const berth = async (mode: BerthMode): Promise<number> => {
      const where = await place();
      const stack = makeStack({ parentDir: where.dir, ...(mode !== 'auto' ? { layerWriteMode: mode } : {}) });
      try {
        return await timed(async () => {
          await stack.puller.pull(ref);
        });
      } finally {
        await cleanup(async () => {
          await stack.destroy();
          await where.done();
        });
      }
    };
    const curlTar = async (streaming: boolean): Promise<number> => {
      const where = await place();
      const dir = mkdtempSync(join(where.dir, 'tar-'));
      try {
        return await timed(async () => {
          for (const [i, l] of layers.entries()) {
            const url = `${registry.url}/v2/bench/debian/blobs/${l.digest}`;
            const out = join(dir, `l${i}`);
            mkdirSync(out);
            if (streaming) await run('sh', ['-c', `curl -sf "${url}" | tar -xz -C "${out}"`]);
            else {
              await run('curl', ['-sf', '-o', join(dir, `b${i}`), url]);
              await run('tar', ['-xzf', join(dir, `b${i}`), '-C', out]);
            }
          }
        });
      } finally {
        await cleanup(async () => {
          rmSync(dir, { recursive: true, force: true });
          await where.done();
        });
      }
    };
    const podman = async (): Promise<number> => {
      const where = await place();
      const dir = mkdtempSync(join(where.dir, 'podman-'));
      // podman refuses a runroot path over 50 characters; it holds only locks and state files.
      const runroot = mkdtempSync(join(tmpdir(), 'bpr-'));
      const args = ['--root', join(dir, 'root'), '--runroot', runroot, '--storage-driver', 'overlay', '--events-backend', 'file', '--cgroup-manager', 'cgroupfs'];
      try {
        return await timed(async () => {
          await run('podman', [...args, 'pull', '--quiet', '--tls-verify=false', ref], { timeoutMs: 300_000 });
        });
      } finally {
        await cleanup(async () => {
          // On a fresh file system everything goes with it; only podman's own mounts need undoing.
          if (fsKind === 'dir') await tryRun('podman', [...args, 'rmi', '-af']);
          await unmountBelow(dir);
          await unmountBelow(runroot);
          rmSync(dir, { recursive: true, force: true });
          rmSync(runroot, { recursive: true, force: true });
          await where.done();
        });
      }
    };

    const cases: [string, () => Promise<number>][] = [
      ['berth pull', () => berth('auto')],
      ...berthModes.filter((m) => m !== 'auto').map((m) => [`berth pull (${m})`, () => berth(m)] as [string, () => Promise<number>]),
      ['curl + tar -xzf', () => curlTar(false)],
      ['curl | tar -xz', () => curlTar(true)],
      ...(withPodman ? [['podman pull', podman] as [string, () => Promise<number>]] : []),
    ];
    const results: Record<string, number[]> = {};
    /** CPU seconds of each run (a figure the machine's load disturbs much less than wall time). */
    const cpu: Record<string, number[]> = {};
    const loads: string[] = [];
    for (const [, fn] of cases) await fn(); // warm-up: page cache of the registry files, code paths
    for (let r = 0; r < runs; r++) {
      // Take turns: run r starts with tool r mod (number of tools).
      for (let k = 0; k < cases.length; k++) {
        const [name, fn] = cases[(r + k) % cases.length] as [string, () => Promise<number>];
        (results[name] ??= []).push(await fn());
        (cpu[name] ??= []).push(lastCpu);
      }
      loads.push(loadavg()[0]!.toFixed(1));
    }
    const med = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
    const loadAfter = machineLoad();
    const where = fsKind === 'dir' ? `in directories under ${parentDir}; trees ${rmEach ? 'deleted after each run' : 'kept until the end'}` : fsKind === 'tmpfs' ? 'each run on a fresh tmpfs' : `each run on a fresh ext4 (loop file in ${backing})`;
    process.stdout.write(`image: ${layers.length} layer(s), ${(compressed / 1e6).toFixed(1)} MB compressed; ${where}; ${runs} runs, tools taking turns\n`);
    process.stdout.write(`machine: before: ${loadBefore}; after: ${loadAfter}; load average after each run: ${loads.join(', ')}\n`);
    // Berth runs in this process: its V8 heap flags are part of the result.
    process.stdout.write(`node flags of this process (and so of the Berth runs): ${process.execArgv.join(' ') || 'none'}; ${bare ? 'agent modules not loaded (--bare)' : "agent modules loaded, as in 'berth agent'"}; V8 heap used ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} MB\n`);
    process.stdout.write(`${'tool'.padEnd(18)} ${'min'.padStart(7)} ${'median'.padStart(7)} ${'max'.padStart(7)}   runs\n`);
    for (const [name, v] of Object.entries(results)) {
      process.stdout.write(`${name.padEnd(18)} ${Math.min(...v).toFixed(2).padStart(7)} ${med[name]!.toFixed(2).padStart(7)} ${Math.max(...v).toFixed(2).padStart(7)}   ${v.map((x) => x.toFixed(2)).join(', ')}\n`);
    }
    process.stdout.write(`CPU seconds (user + system, all threads and child processes; median): ${Object.entries(cpu).map(([k, v]) => `${k} ${median(v).toFixed(2)}`).join(', ')}\n`);
    const b = med['berth pull']!;
    const base = med['curl + tar -xzf']!;
    process.stdout.write(`medians: berth / (curl + tar -xzf) = ${(b / base).toFixed(2)} (target <= 1.5)\n`);
    if (med['podman pull'] !== undefined) process.stdout.write(`medians: berth / podman = ${(b / med['podman pull']).toFixed(2)} (target <= 0.4)\n`);
    const perRun = (other: string): string => results['berth pull']!.map((x, i) => (x / results[other]![i]!).toFixed(2)).join(', ');
    process.stdout.write(`per run: berth / (curl + tar -xzf) = ${perRun('curl + tar -xzf')}${results['podman pull'] !== undefined ? `; berth / podman = ${perRun('podman pull')}` : ''}\n`);
    // On a machine other jobs load, the fastest run of each tool is the one least disturbed.
    const best = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.min(...v)]));
    process.stdout.write(`fastest runs: berth / (curl + tar -xzf) = ${(best['berth pull']! / best['curl + tar -xzf']!).toFixed(2)}${best['podman pull'] !== undefined ? `, berth / podman = ${(best['berth pull']! / best['podman pull']).toFixed(2)}` : ''}\n`);
    process.stdout.write(JSON.stringify({ fs: fsKind, dir: parentDir, ...(fsKind === 'ext4' ? { backing } : {}), layers: layers.length, compressedBytes: compressed, runs, rmEach, loadBefore, loadAfter, medians: med, results, cpu, nodeFlags: process.execArgv, agentModules: !bare }) + '\n');
  } finally {
    for (const fn of later) await fn().catch((err: unknown) => process.stderr.write(`cleanup failed: ${(err as Error).message}\n`));
    for (const f of [...live]) await f.remove().catch((err: unknown) => process.stderr.write(`cleanup failed: ${(err as Error).message}\n`));
    await registry.stop();
    await unmountBelow(scratch);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`pull benchmark failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
