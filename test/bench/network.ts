/**
 * Container start with the cluster network (issue 7), side by side with
 * `podman run --rm` on podman's default bridge network, in one run. Rounds
 * alternate between the contenders (A B C D A B C D ...) so that load on the
 * machine hits them alike; prints medians, p90 and the ratios to podman
 * (target: Berth end to end <= 0.3x podman).
 *
 *   (a)  `berth run --rm busybox true` end to end (CLI start to exit) against
 *        a single-node cluster started here: etcd, NATS, controller and one
 *        `berth agent --network cni` whose node networking lives in a
 *        namespace host (`--node-netns`); the container gets a cluster
 *        address (CNI loopback + bridge ADD, and DEL on removal).
 *   (a0) the same with `--network none` (the container network's share of (a)).
 *   (b)  the agent path alone: ContainerManager.run + wait + remove in this
 *        process (real runtime, snapshots, image store) with a NodeNetwork in
 *        a second namespace host; its setup and teardown are timed separately.
 *   (c)  `podman run --rm busybox true` with its default bridge network
 *        (netavark), run with `nsenter --net` inside a third namespace host so
 *        that its bridge, veths and firewall rules live and die there; its own
 *        --root/--runroot in a temp dir; the image pulled from the same local
 *        registry.
 *
 * Safety: the namespace hosts have no default route and the egress guard
 * covers the cluster (10.244/16), service (10.96/16) and podman (10.88/16)
 * ranges before any address exists; the containers run `true` and send
 * nothing. Everything made here (cluster processes, containers, mounts,
 * namespaces, veths, nft tables, podman's storage, temp dirs, the hugetlb v1
 * mount podman's crun needs) is removed in `finally`, also after a failure or
 * Ctrl-C.
 *
 * Usage (root): node .build-x/test/bench/network.js [--runs N] [--no-podman]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeHosts, startRegistryWithImages, tailLog, waitFor, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startCluster, type TestCluster } from '../cli/cluster.js';
import { BERTH_JS, cleanEnv } from '../cli/helpers.js';
import { AgentStack, newId } from '../agent/containers/stack.js';
import { runRequest } from '../agent/containers/grpc.js';
import type { ContainerNetwork } from '../../agent/containers/index.js';
import { NodeNetwork } from '../../agent/network/index.js';
import { LinuxNetOps, type CniInvocation, type NetOps } from '../../agent/sys/index.js';
import { silentLogger } from '../../lib/index.js';
import { intArg } from './args.js';
import { mountHugetlb } from './hugetlb.js';
import { quantile } from './stats.js';

const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';
const PODMAN = '10.88.0.0/16';
/** The in-process node's subnet (its own namespace host, so it may overlap nothing). */
const STACK_SUBNET = '10.244.250.0/24';

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

/** Unmounts everything below a directory (podman can leave mounts behind). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
  for (const m of mounts.reverse()) await timedRun('umount', ['-l', m]);
}

/** A ContainerNetwork that times the real one's setup and teardown. */
class TimedNetwork implements ContainerNetwork {
  readonly setups: number[] = [];
  readonly teardowns: number[] = [];
  record = false;

  constructor(readonly inner: NodeNetwork) {}

  async setup(...args: Parameters<ContainerNetwork['setup']>): ReturnType<ContainerNetwork['setup']> {
    const t0 = performance.now();
    const r = await this.inner.setup(...args);
    if (this.record) this.setups.push(performance.now() - t0);
    return r;
  }

  async teardown(id: string): Promise<void> {
    const t0 = performance.now();
    await this.inner.teardown(id);
    if (this.record) this.teardowns.push(performance.now() - t0);
  }
}

/**
 * Median offsets (ms from the run's start) of the first occurrence of each
 * log message in each run's time window, from the JSON logs of the cluster's
 * processes, as a markdown table in time order.
 */
function timeline(windows: readonly { start: number; end: number }[], logs: readonly [string, string][]): string {
  const offsets = new Map<string, number[]>();
  for (const [who, file] of logs) {
    if (!file) continue;
    const entries: { t: number; msg: string }[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const j = JSON.parse(line) as { timestamp?: string; message?: string };
        const t = Date.parse(j.timestamp ?? '');
        if (Number.isFinite(t) && j.message) entries.push({ t, msg: `${who}: ${j.message}` });
      } catch {
        // not a log record
      }
    }
    for (const w of windows) {
      const seen = new Set<string>();
      for (const e of entries) {
        if (e.t < w.start || e.t > w.end || seen.has(e.msg)) continue;
        seen.add(e.msg);
        const list = offsets.get(e.msg) ?? [];
        list.push(e.t - w.start);
        offsets.set(e.msg, list);
      }
    }
  }
  const rows = [...offsets.entries()]
    .filter(([, v]) => v.length >= windows.length / 2)
    .map(([msg, v]) => ({ msg, at: quantile(v, 0.5), n: v.length }))
    .sort((x, y) => x.at - y.at);
  const ends = windows.map((w) => w.end - w.start);
  return '| log line | median ms after CLI start | runs seen |\n| --- | --- | --- |\n'
    + rows.map((r) => `| ${r.msg} | ${r.at.toFixed(0)} | ${r.n} |\n`).join('')
    + `| CLI exited | ${quantile(ends, 0.5).toFixed(0)} | ${ends.length} |\n`;
}

/** Wraps NetOps so every call's time is recorded under its name (CNI calls as "cni PLUGIN COMMAND"). */
function timedOps(inner: NetOps, on: () => boolean, into: Map<string, number[]>): NetOps {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]): unknown => {
        const t0 = performance.now();
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        const name = prop === 'cni' ? `cni ${(args[0] as CniInvocation).plugin} ${(args[0] as CniInvocation).command}` : String(prop);
        const done = (): void => {
          if (!on()) return;
          const list = into.get(name) ?? [];
          list.push(performance.now() - t0);
          into.set(name, list);
        };
        if (r instanceof Promise) return r.finally(done);
        done();
        return r;
      };
    },
  });
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`${sig}: stopping after the current step and cleaning up (again to quit at once)\n`);
  });
}

function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

async function main(): Promise<void> {
  const runs = intArg('runs', 20);
  const withPodman = !process.argv.includes('--no-podman') && (await timedRun('sh', ['-c', 'command -v podman && command -v nsenter'])).code === 0;
  const loadStart = loadavg();
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let stack: AgentStack | undefined;
  let net: TimedNetwork | undefined;
  let netDir = '';
  let undoHugetlb: (() => Promise<void>) | undefined;
  const podmanDir = mkdtempSync(join(tmpdir(), 'berth-bench-podman-'));
  const podman = ['--root', join(podmanDir, 'root'), '--runroot', join(podmanDir, 'run'), '--storage-driver', 'overlay', '--events-backend', 'file', '--cgroup-manager', 'cgroupfs'];
  const problems: string[] = [];
  try {
    reg = await startRegistryWithImages(['busybox']);
    const image = reg.images['busybox']?.reference;
    if (!image) throw new Error('the harness did not push busybox');
    hosts = await makeHosts(3, { guardRanges: [CLUSTER, SERVICES, PODMAN] });
    const [h0, h1, h2] = hosts.hosts;
    if (!h0 || !h1 || !h2) throw new Error('makeHosts gave fewer than 3 hosts');
    checkInterrupted();

    // (a) a single-node cluster whose agent networks containers inside host 0.
    cluster = await startCluster();
    const agent = cluster.startAgent('bench-net', ['--network', 'cni', '--node-netns', `/run/netns/${h0.netns}`, '--internal-ip', h0.address, '--cleanup', '--dns-upstream', 'none']);
    const c = cluster;
    await waitFor('the agent to be Ready', async () => {
      if (agent.exited()) throw new Error(`agent exited early:\n${tailLog(agent)}`);
      const r = await c.cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && r.stdout.includes('NODE_STATE_READY');
    }, 60_000, 300);
    const env = cleanEnv({ BERTH_CONTROLLER: cluster.address });
    await must(process.execPath, [BERTH_JS, 'pull', image], env);

    // (b) the agent's container manager in this process, its NodeNetwork inside host 1.
    netDir = await mkdtemp(join(tmpdir(), 'berth-bench-netstate-'));
    const opTimes = new Map<string, number[]>();
    const recording = (): boolean => net?.record === true;
    net = new TimedNetwork(new NodeNetwork({
      ops: timedOps(new LinuxNetOps({ nodeNetns: `/run/netns/${h1.netns}` }), recording, opTimes), logger: silentLogger(), stateDir: netDir, subnet: STACK_SUBNET, clusterCidr: CLUSTER,
    }));
    await net.inner.start();
    stack = await new AgentStack({ node: 'bench-stack', network: net }).start();
    await stack.images.pull(image);
    const s = stack;
    const agentPath = async (): Promise<number> => {
      const id = newId();
      const t0 = performance.now();
      await s.manager.run(runRequest(id, image, { command: ['true'] }));
      const w = await s.manager.wait(id);
      await s.manager.remove(id, { force: true });
      const ms = performance.now() - t0;
      if (w.exitCode !== 0) throw new Error(`agent path: container exited ${w.exitCode} (${w.reason})`);
      return ms;
    };

    // (c) podman inside host 2 (its bridge and firewall rules stay in that namespace).
    if (withPodman) {
      undoHugetlb = mountHugetlb();
      await must('podman', [...podman, 'pull', '--quiet', '--tls-verify=false', image]);
    }
    const inHost2 = ['--net=' + `/run/netns/${h2.netns}`, 'podman'];
    const podmanRun = [...inHost2, ...podman, 'run', '--rm', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096', image, 'true'];
    const berthRun = [BERTH_JS, 'run', '--rm', image, 'true'];
    const berthNone = [BERTH_JS, 'run', '--rm', '--network', 'none', image, 'true'];

    const a: number[] = [];
    const windows: { start: number; end: number }[] = [];
    const a0: number[] = [];
    const b: number[] = [];
    const p: number[] = [];
    const loads: string[] = [];
    const warm = 2;
    for (let i = 0; i < runs + warm; i++) {
      checkInterrupted();
      const keep = i >= warm;
      net.record = keep;
      const w0 = Date.now();
      const ta = await must(process.execPath, berthRun, env);
      if (keep) windows.push({ start: w0, end: Date.now() });
      const ta0 = await must(process.execPath, berthNone, env);
      const tb = await agentPath();
      const tp = withPodman ? await must('nsenter', podmanRun) : NaN;
      if (!keep) continue;
      a.push(ta);
      a0.push(ta0);
      b.push(tb);
      if (withPodman) p.push(tp);
      if ((i - warm) % 5 === 0) loads.push(loadavg());
    }
    net.record = false;
    // The CLI's floor: process start and one RPC.
    const floor: number[] = [];
    for (let i = 0; i < Math.min(runs, 10); i++) floor.push(await must(process.execPath, [BERTH_JS, 'version'], env));

    const f = (x: number): string => x.toFixed(0);
    const pm = quantile(p, 0.5);
    const ratio = (s: number[]): string => (withPodman ? (quantile(s, 0.5) / pm).toFixed(2) : '-');
    const row = (name: string, s: number[], withRatio = true): string => `| ${name} | ${f(quantile(s, 0.5))} | ${f(quantile(s, 0.9))} | ${s.length} | ${withRatio ? ratio(s) : ''} |\n`;
    const out = process.stdout;
    out.write(`runs: ${runs} per contender (after ${warm} warm-up rounds), alternating\n`);
    out.write(`load average: start ${loadStart}; during ${loads.join(' / ')}; end ${loadavg()}\n\n`);
    out.write('| what (image present, container runs `true`) | median ms | p90 ms | runs | / podman |\n| --- | --- | --- | --- | --- |\n');
    out.write(row('(a) `berth run --rm busybox true`, cluster network (CNI ADD + DEL)', a));
    out.write(row('(a0) `berth run --rm --network none busybox true`', a0));
    out.write(row('(b) agent path: manager run + wait + remove, cluster network', b));
    out.write(row('(b) of which network setup (netns, then loopback ADD and bridge ADD side by side)', net.setups, false));
    out.write(row('(b) of which network teardown (bridge DEL + netns delete)', net.teardowns, false));
    out.write(row('`berth version` (CLI start + one RPC)', floor, false));
    for (const [name, v] of opTimes) if (v.length >= runs) out.write(row(`(b) NetOps ${name} (${(v.length / runs).toFixed(0)} per run)`, v, false));
    if (withPodman) out.write(row('(c) `podman run --rm busybox true`, default bridge network (netavark)', p));
    out.write(`\nwhere (a)'s time goes: median ms from the CLI's start to each first log line of the run (controller and agent logs)\n\n${timeline(windows, [['controller', cluster.controller?.logFile ?? ''], ['agent', agent.logFile]])}`);
    if (withPodman) {
      out.write(`\nberth / podman (median): (a) ${ratio(a)}, (b) ${ratio(b)} (target <= 0.3)\n`);
    } else {
      out.write('\npodman (or nsenter) not found or --no-podman: no ratios\n');
    }
  } finally {
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    if (stack) await attempt('agent stack', () => stack!.destroy());
    if (net) await attempt('node network (host 1)', () => net!.inner.cleanup());
    if (netDir) await rm(netDir, { recursive: true, force: true });
    if (cluster) await attempt('cluster', () => cluster!.stop());
    if (withPodman) await attempt('podman images', () => timedRun('podman', [...podman, 'rmi', '-af']));
    await attempt('podman mounts', () => unmountBelow(podmanDir));
    rmSync(podmanDir, { recursive: true, force: true });
    if (hosts) await attempt('namespace hosts', () => hosts!.cleanup());
    if (reg) await attempt('registry', () => reg!.stop());
    if (undoHugetlb) await attempt('hugetlb', () => undoHugetlb!());
    if (problems.length > 0) process.stderr.write(`cleanup problems:\n  ${problems.join('\n  ')}\n`);
  }
  if (problems.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
