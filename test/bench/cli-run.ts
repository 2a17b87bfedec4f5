/**
 * `berth run --rm busybox true` end to end (issue 6): from starting the CLI
 * process to its exit, image present, against a real cluster (etcd, NATS,
 * controller and one agent, all started here), side by side with
 * `podman run --rm` of the same image from the same registry, in one run.
 * Runs alternate between the two so that load on the machine hits both alike;
 * prints medians, p90 and the ratio (target: Berth's median <= 0.5x podman's).
 *
 *   npm run build && node dist/test/bench/cli-run.js [--runs 20] [--no-podman]
 *
 * podman gets its own --root/--runroot and the ulimits MACHINE-NOTES asks for
 * (no CAP_SYS_RESOURCE here); its network is its default (see the printed
 * note). Berth's container network is whatever the agent is configured with.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startRegistryWithImages, tailLog, waitFor } from '../harness/index.js';
import { startCluster } from '../cli/cluster.js';
import { BERTH_JS, cleanEnv } from '../cli/helpers.js';
import { intArg } from './args.js';
import { mountHugetlb } from './hugetlb.js';
import { quantile } from './stats.js';

interface Done { code: number | null; stderr: string; ms: number }

function timedRun(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Done> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, ms: performance.now() - t0 }));
  });
}

async function must(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const r = await timedRun(cmd, args, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.ms;
}

/** Unmounts everything below a directory (podman leaves mounts behind). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir));
  for (const m of mounts.reverse()) await timedRun('umount', ['-l', m]);
}

async function main(): Promise<void> {
  const runs = intArg('runs', 20);
  const withPodman = !process.argv.includes('--no-podman') && (await timedRun('sh', ['-c', 'command -v podman'])).code === 0;
  const reg = await startRegistryWithImages(['busybox']);
  const image = reg.images['busybox']?.reference;
  if (!image) throw new Error('the harness did not push busybox');
  const cluster = await startCluster();
  // podman's crun needs hugetlb on a v1 hierarchy on these hybrid machines (undone in finally).
  const undoHugetlb = withPodman ? mountHugetlb() : undefined;
  const podmanDir = mkdtempSync(join(tmpdir(), 'berth-bench-podman-'));
  const podman = ['--root', join(podmanDir, 'root'), '--runroot', join(podmanDir, 'run'), '--storage-driver', 'overlay', '--events-backend', 'file', '--cgroup-manager', 'cgroupfs'];
  try {
    const agent = cluster.startAgent('bench-1');
    await waitFor('the agent to be Ready', async () => {
      if (agent.exited()) throw new Error(`agent exited early:\n${tailLog(agent)}`);
      const r = await cluster.cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && r.stdout.includes('NODE_STATE_READY');
    }, 60_000, 300);
    const env = cleanEnv({ BERTH_CONTROLLER: cluster.address });
    const berthArgs = [BERTH_JS, 'run', '--rm', image, 'true'];
    const podmanArgs = [...podman, 'run', '--rm', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096', image, 'true'];
    await must(process.execPath, [BERTH_JS, 'pull', image], env);
    if (withPodman) await must('podman', [...podman, 'pull', '--quiet', '--tls-verify=false', image]);
    // Warm both paths (page cache, first-use setup) before measuring.
    for (let i = 0; i < 2; i++) {
      await must(process.execPath, berthArgs, env);
      if (withPodman) await must('podman', podmanArgs);
    }
    const loadBefore = loadavg();
    const berth: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < runs; i++) {
      berth.push(await must(process.execPath, berthArgs, env));
      if (withPodman) peer.push(await must('podman', podmanArgs));
    }
    // Where Berth's time goes: the CLI's floor (start + one RPC) and a detached run (no wait for the exit).
    const floor: number[] = [];
    const detached: number[] = [];
    for (let i = 0; i < Math.min(runs, 10); i++) {
      floor.push(await must(process.execPath, [BERTH_JS, 'version'], env));
      detached.push(await must(process.execPath, [BERTH_JS, 'run', '-d', '--rm', image, 'true'], env));
    }
    const loadAfter = loadavg();
    const row = (name: string, s: number[]): string => `| ${name} | ${quantile(s, 0.5).toFixed(0)} | ${quantile(s, 0.9).toFixed(0)} | ${s.length} |\n`;
    process.stdout.write(`\n| command (image present) | median ms | p90 ms | runs |\n| --- | --- | --- | --- |\n`);
    process.stdout.write(row('`berth run --rm busybox true`', berth));
    process.stdout.write(row('`berth version` (CLI start + one RPC)', floor));
    process.stdout.write(row('`berth run -d --rm busybox true`', detached));
    if (withPodman) {
      process.stdout.write(row('`podman run --rm busybox true`', peer));
      const ratio = quantile(berth, 0.5) / quantile(peer, 0.5);
      process.stdout.write(`\nberth / podman (median) = ${ratio.toFixed(2)} (target <= 0.5)\n`);
    }
    const la = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
    process.stdout.write(`load average (1, 5, 15 min): ${la(loadBefore)} before the measured runs, ${la(loadAfter)} after\n`);
  } finally {
    if (withPodman) await timedRun('podman', [...podman, 'rmi', '-af']);
    await unmountBelow(podmanDir);
    rmSync(podmanDir, { recursive: true, force: true });
    await cluster.stop();
    await reg.stop();
    await undoHugetlb?.();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
