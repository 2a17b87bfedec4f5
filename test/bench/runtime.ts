/**
 * Runtime benchmark (issue 4), all in one run on the same busybox bundle
 * running /bin/true:
 *   - the agent's own start path: Runtime.create(start) until the exit is
 *     known (request to exit, no CLI), then delete (timed separately);
 *   - `berth-runtime run` (a Node process per run);
 *   - `crun run` and `runc run` (Debian's; crun needs the hugetlb controller
 *     mounted as v1 on these hybrid machines: mounted for the run, undone after);
 * runs go in rotating blocks of 10 (see main()), then a cold pass; medians,
 * p99 and ratios are printed. Then
 * shim memory with 100 idle containers (RSS and PSS per shim).
 *
 *   npx tsc -p tsconfig.json --outDir .build-runtime --tsBuildInfoFile .build-runtime/.tsbuildinfo
 *   make -C agent/sys/native
 *   node .build-runtime/test/bench/runtime.js [--runs 200] [--cold 20] [--idle 100] [--no-peers]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { LinuxSys } from '../../agent/sys/linux.js';
import { detectCgroups, Runtime, writeBundle } from '../../agent/runtime/index.js';
import { makeBusyboxRootfs } from '../agent/runtime/busybox.js';
import { intArg } from './args.js';
import { mountHugetlb } from './hugetlb.js';
import { quantile } from './stats.js';

const CLI = fileURLToPath(new URL('../../agent/runtime-cli/main.js', import.meta.url));

const arg = intArg;

function summary(samples: number[]): { median: number; p99: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p99: quantile(s, 0.99), n: s.length };
}

function timeSync(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.toString()}`);
  return ms;
}


function memOf(pid: number): { rssKiB: number; pssKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return {
    rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN),
    pssKiB: Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? NaN),
  };
}

async function main(): Promise<void> {
  const runs = arg('runs', 200);
  const idle = arg('idle', 100);
  const coldRuns = arg('cold', 20);
  const peers = !process.argv.includes('--no-peers');
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-rt-'));
  const bundle = join(dir, 'bundle');
  const sys = new LinuxSys();
  const runtime = new Runtime({ sys, cgroups: await detectCgroups(sys), root: join(dir, 'berth') });
  let undoHugetlb: (() => Promise<void>) | undefined;
  try {
    mkdirSync(bundle);
    await makeBusyboxRootfs(join(bundle, 'rootfs'));
    await writeBundle(bundle, 'rootfs', { Cmd: ['/bin/true'] }, { dns: [] });
    const hasCrun = peers && spawnSync('crun', ['--version']).status === 0;
    const hasRunc = peers && spawnSync('runc', ['--version']).status === 0;
    if (hasCrun) undoHugetlb = mountHugetlb();

    const samples: Record<string, number[]> = { agent: [], 'agent delete': [], 'berth-runtime run': [], 'crun run': [], 'runc run': [] };
    // Contenders run in blocks of 10 consecutive runs, rotating. Why blocks:
    // on cgroup v1 the first migration into a cgroup after a quiet spell waits
    // for an RCU grace period (the cgroup threadgroup rwsem's rcu_sync), about
    // 10 ms here, and every runtime pays it (crun as well); consecutive starts
    // share one. Blocks give every contender the same mix. A second, "cold"
    // pass starts each run after 200 ms of quiet, so each pays it.
    type Contender = [string, (i: number) => Promise<number>];
    const contenders: Contender[] = [
      ['agent', async (i) => {
        const t0 = performance.now();
        await runtime.create(`a${i}`, bundle, { start: true });
        const exit = await runtime.wait(`a${i}`);
        const t1 = performance.now();
        if (exit.exitCode !== 0) throw new Error(`agent path: exit ${exit.exitCode} ${exit.error ?? ''}`);
        await runtime.delete(`a${i}`);
        samples['agent delete']?.push(performance.now() - t1);
        return t1 - t0;
      }],
      ['berth-runtime run', async (i) => timeSync(process.execPath, [CLI, '--root', join(dir, 'berth-cli'), 'run', '--bundle', bundle, `b${i}`])],
    ];
    if (hasCrun) contenders.push(['crun run', async (i) => timeSync('crun', ['--root', join(dir, 'crun'), 'run', '--bundle', bundle, `c${i}`])]);
    if (hasRunc) contenders.push(['runc run', async (i) => timeSync('runc', ['--root', join(dir, 'runc'), 'run', '--bundle', bundle, `r${i}`])]);

    for (const [, fn] of contenders) for (let i = 0; i < 3; i++) await fn(1_000_000 + i); // warm-up
    samples['agent delete'] = [];
    let next = 0;
    for (let done = 0; done < runs; done += 10) {
      for (const [name, fn] of contenders) {
        for (let i = done; i < Math.min(runs, done + 10); i++) samples[name]?.push(await fn(next++));
      }
    }
    const cold: Record<string, number[]> = {};
    for (let i = 0; i < coldRuns; i++) {
      for (const [name, fn] of contenders) {
        if (name === 'berth-runtime run') continue;
        await new Promise((r) => setTimeout(r, 200));
        (cold[name] ??= []).push(await fn(next++));
      }
    }
    const table = Object.fromEntries(Object.entries(samples).filter(([, v]) => v.length > 0).map(([k, v]) => [k, summary(v)]));
    process.stdout.write(`\n/bin/true in a busybox bundle, ${runs} runs each in rotating blocks of 10 (ms)\n`);
    process.stdout.write('what                   median      p99\n');
    for (const [k, v] of Object.entries(table)) process.stdout.write(`${k.padEnd(20)} ${v.median.toFixed(1).padStart(8)} ${v.p99.toFixed(1).padStart(8)}\n`);
    const med = (k: string) => table[k]?.median ?? NaN;
    const ratios = {
      'agent / crun run': med('agent') / med('crun run'),
      'berth-runtime run / runc run': med('berth-runtime run') / med('runc run'),
      'berth-runtime run / crun run': med('berth-runtime run') / med('crun run'),
    };
    for (const [k, v] of Object.entries(ratios)) process.stdout.write(`${k.padEnd(30)} ${v.toFixed(2)}\n`);
    const coldTable = Object.fromEntries(Object.entries(cold).map(([k, v]) => [k, summary(v)]));
    process.stdout.write(`\ncold starts (200 ms of quiet before each), ${coldRuns} runs (ms)\n`);
    for (const [k, v] of Object.entries(coldTable)) process.stdout.write(`${k.padEnd(20)} ${v.median.toFixed(1).padStart(8)} ${v.p99.toFixed(1).padStart(8)}\n`);
    const coldRatio = (coldTable['agent']?.median ?? NaN) / (coldTable['crun run']?.median ?? NaN);
    process.stdout.write(`${'agent / crun run (cold)'.padEnd(30)} ${coldRatio.toFixed(2)}\n`);

    // Shim memory with idle containers.
    const idleBundle = join(dir, 'idle');
    mkdirSync(idleBundle);
    await makeBusyboxRootfs(join(idleBundle, 'rootfs'));
    await writeBundle(idleBundle, 'rootfs', { Cmd: ['sleep', '3600'] }, { dns: [] });
    const mem: { rssKiB: number; pssKiB: number }[] = [];
    try {
      for (let i = 0; i < idle; i++) await runtime.create(`idle${i}`, idleBundle, { start: true });
      for (let i = 0; i < idle; i++) {
        const shim = Number(readFileSync(join(dir, 'berth', `idle${i}`, 'shim.pid'), 'utf8'));
        mem.push(memOf(shim));
      }
    } finally {
      for (const c of await runtime.list()) await runtime.delete(c.id, { force: true });
    }
    const rss = summary(mem.map((m) => m.rssKiB));
    const pss = summary(mem.map((m) => m.pssKiB));
    process.stdout.write(`\nshim memory with ${idle} idle containers (KiB): RSS median ${rss.median} max ${quantile(mem.map((m) => m.rssKiB).sort((a, b) => a - b), 1)}, PSS median ${pss.median}\n`);
    process.stdout.write(JSON.stringify({ runs, table, ratios, cold: coldTable, shim: { idle, rssKiB: rss, pssKiB: pss } }) + '\n');
  } finally {
    for (const c of await runtime.list().catch(() => [])) await runtime.delete(c.id, { force: true }).catch(() => undefined);
    sys.close();
    if (undoHugetlb) await undoHugetlb();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
