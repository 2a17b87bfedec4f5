/**
 * Scale benchmark (issue 5) with hollow agents: real etcd, NATS and a real
 * `berth controller` process; N agents whose container manager, AgentService
 * gRPC server, registration, heartbeats and NATS container reports are the
 * real agent code, over the hollow runtime of test/agent/containers/hollow.ts
 * (containers "start" at once; no process, mount or cgroup is made).
 *
 *   npx tsc -p tsconfig.json --outDir .build-scalebench --tsBuildInfoFile .build-scalebench/.tsbuildinfo
 *   node .build-scalebench/test/bench/scale.js [--nodes 1000] [--replicas 10000] [--workers 4] [--workloads 10] [--profile DIR] [--dir DIR]
 *
 * The agents live in --workers child processes (this script with --worker),
 * each hosting nodes/workers agents with their own gRPC servers and NATS
 * connections. Steps and figures:
 * 1. the scheduler alone: placements/s of schedule() for the same cluster size
 *    (in this process, no I/O);
 * 2. apply-to-all-running: one file of --workloads workloads totalling
 *    --replicas is applied through WorkloadService.Apply; one clock stops when
 *    the agents' container reports on NATS (read as the controller reads them)
 *    count every replica RUNNING (target: under 10 s); another when the
 *    controller's workload statuses (WorkloadService.List, polled every
 *    100 ms) count every replica running and one ContainerService.List made
 *    right then shows every replica RUNNING. Polling the
 *    full container list instead would make the benchmark itself a large part
 *    of the controller's and etcd's load. Also printed: the CPU seconds the
 *    controller, the agent workers, etcd and NATS used meanwhile (from
 *    /proc), in total and beyond what the idle cluster uses (measured for 3 s
 *    before the apply), since on a shared 2-core machine wall-clock time
 *    depends on everything else running;
 * 3. node-loss-to-replaced: one worker's first agent is killed (its gRPC
 *    server, heartbeats and reports stop at once, as when a machine dies); the
 *    clock stops when ContainerService.List again shows every replica running
 *    and none on the lost node.
 * Everything started (processes by PID, temp dirs) is stopped on exit, on
 * failure and on Ctrl-C.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { BERTH_VERSION, messageOf, silentLogger } from '../../lib/index.js';
import {
  ContainerServiceClient, SystemServiceClient, WorkloadServiceClient,
  type ListContainersResponse,
} from '../../proto/gen/berth/v1/controller.js';
import { ContainerState } from '../../proto/gen/berth/v1/types.js';
import { schedule, type ClusterSnapshot, type NodeSnapshot } from '../../controller/scheduler/index.js';
import { NatsContainerReports, ObservedState } from '../../controller/nodes/index.js';
import { agentBatchHandlers, agentServiceHandlers, startAgentServer, type AgentServer } from '../../agent/api/index.js';
import { ContainerManager } from '../../agent/containers/index.js';
import { buildNodeSpec, detectNodeFacts, grpcRegistrar, registerWithRetry } from '../../agent/node/index.js';
import { ContainerReporter, StatusPublisher } from '../../agent/status/index.js';
import { hollowImages, hollowParts } from '../agent/containers/hollow.js';
import { freePort, startProcess, tailLog, waitFor, type ManagedProcess } from '../harness/process.js';
import { startEtcd, startNats, type Service } from '../harness/services.js';
import { intArg } from './args.js';

const GiB = 1024 * 1024 * 1024;
/** A hollow node has no images: pulls are hollow, lists and removals empty. */
const hollowAgentImages = {
  pull: hollowImages.pull,
  list: async () => [],
  removeMany: async (refs: string[]) => ({ images: [], missing: refs, blobs: 0, snapshots: 0, bytesFreed: 0 }),
  prune: async () => ({ images: [], blobs: 0, snapshots: 0, bytesFreed: 0 }),
  search: async () => [],
};
/** What each hollow node claims to have: enough for replicas/nodes replicas with room to re-place a lost node's. */
const HOLLOW_CAPACITY = { cpuMillis: 64000, memoryBytes: 256 * GiB, pids: 1_000_000 };

function strArg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? undefined : process.argv[i + 1];
  if (v === undefined) {
    process.stderr.write(`--${name}: required\n`);
    process.exit(2);
  }
  return v;
}

// ---------------------------------------------------------------- worker side

interface HollowAgent {
  name: string;
  manager: ContainerManager;
  server: AgentServer;
  publisher: StatusPublisher;
  reporter: ContainerReporter;
}

async function startHollowAgent(name: string, root: string, nats: string, registrar: ReturnType<typeof grpcRegistrar>): Promise<HollowAgent> {
  const logger = silentLogger();
  const parts = hollowParts();
  const manager = new ContainerManager({ node: name, root: join(root, name), logger, ...parts });
  await manager.recover();
  const publisher = await StatusPublisher.connect({ servers: [nats], node: name, logger });
  const reporter = new ContainerReporter(name, manager, publisher);
  reporter.start();
  const server = await startAgentServer({
    listen: '127.0.0.1:0', logger,
    implementation: agentServiceHandlers({ node: name, containers: manager, images: hollowAgentImages, runtime: parts.runtime, logger }),
    batch: { impl: agentBatchHandlers({ containers: manager, logger }) },
  });
  const facts = { ...detectNodeFacts(), ...HOLLOW_CAPACITY };
  const spec = buildNodeSpec({ name, labels: { hollow: 'true' }, address: server.address, agentVersion: BERTH_VERSION }, facts);
  const registered = await registerWithRetry(registrar, spec, { logger });
  publisher.startHeartbeats({
    intervalMs: registered.heartbeatIntervalMs > 0 ? registered.heartbeatIntervalMs : 1000,
    capacity: spec.capacity, containers: () => manager.count,
  });
  return { name, manager, server, publisher, reporter };
}

async function stopHollowAgent(a: HollowAgent): Promise<void> {
  a.reporter.stop();
  a.publisher.stopHeartbeats();
  a.manager.close();
  await a.server.close(0).catch(() => undefined);
  await a.publisher.close().catch(() => undefined);
}

/** `--worker`: hosts agents --first .. --first+--count-1; prints "ready" then obeys "kill NAME" lines on stdin. */
async function worker(): Promise<void> {
  const first = Number(strArg('first'));
  const count = intArg('count', 1);
  const nats = strArg('nats');
  const controller = strArg('controller');
  // Under the orchestrator's temp dir, which it removes even if this process is killed.
  const root = strArg('root');
  const registrar = grpcRegistrar(controller, 30_000);
  const agents = new Map<string, HollowAgent>();
  const cleanup = async (): Promise<void> => {
    await Promise.all([...agents.values()].map(stopHollowAgent));
    agents.clear();
    registrar.close();
    rmSync(root, { recursive: true, force: true });
  };
  // Hollow agents own no process, mount or cgroup, and the orchestrator removes the root:
  // on a signal, exiting at once is a clean stop (sockets close with the process).
  const onSignal = (): void => process.exit(0);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    const names = Array.from({ length: count }, (_, i) => `hollow-${String(first + i).padStart(5, '0')}`);
    const concurrency = 25;
    for (let i = 0; i < names.length; i += concurrency) {
      const batch = await Promise.all(names.slice(i, i + concurrency).map((n) => startHollowAgent(n, root, nats, registrar)));
      for (const a of batch) agents.set(a.name, a);
    }
    process.stdout.write(`ready ${agents.size}\n`);
  } catch (err) {
    process.stderr.write(`worker failed: ${messageOf(err)}\n`);
    await cleanup();
    process.exit(1);
  }
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const [cmd, name] = line.trim().split(/\s+/);
    const a = name ? agents.get(name) : undefined;
    if (cmd === 'kill' && a) {
      agents.delete(a.name);
      // A dead machine: no goodbye, just silence (the node's containers vanish with it).
      void stopHollowAgent(a).then(() => process.stdout.write(`killed ${a.name}\n`));
    }
  });
  rl.on('close', () => void cleanup().finally(() => process.exit(0)));
}

// ------------------------------------------------------------ orchestrator side

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

function call<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

function workloadYaml(name: string, replicas: number): string {
  return [
    'apiVersion: berth/v1', 'kind: Workload', 'metadata:', `  name: ${name}`, '  labels:', `    app: ${name}`,
    'spec:', `  replicas: ${replicas}`, '  image: 127.0.0.1:5000/hollow:1', '',
  ].join('\n');
}

function schedulerAlone(nodes: number, replicas: number): number {
  const list: NodeSnapshot[] = [];
  for (let i = 0; i < nodes; i++) {
    list.push({ name: `hollow-${String(i).padStart(5, '0')}`, labels: { hollow: 'true' }, ready: true, cordoned: false, capacity: { ...HOLLOW_CAPACITY } });
  }
  const cluster: ClusterSnapshot = { nodes: list, replicas: [] };
  const run = (): number => {
    const t0 = performance.now();
    const plan = schedule(cluster, { workload: 'w', replicas, resources: { cpuMillis: 0, memoryBytes: 0, pids: 0 } }, { evalId: `bench-${t0}` });
    const dt = (performance.now() - t0) / 1000;
    return plan.placements.length / dt;
  };
  run();
  const rates = [run(), run(), run()].sort((a, b) => a - b);
  return rates[1] ?? 0;
}

interface Worker { child: ChildProcess; first: number; count: number; lines: string[] }

/** CPU seconds (user + system) used so far by each group of processes, from /proc/PID/stat (clock ticks of 1/100 s). */
function cpuSeconds(groups: Record<string, number[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pids] of Object.entries(groups)) {
    out[name] = 0;
    for (const pid of pids) {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
        out[name] += (Number(fields[11]) + Number(fields[12])) / 100;
      } catch {
        // Exited: its time is no longer counted.
      }
    }
  }
  return out;
}

function cpuDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const k of Object.keys(b)) {
    out[k] = Number(((b[k] ?? 0) - (a[k] ?? 0)).toFixed(1));
    total += out[k];
  }
  out['total'] = Number(total.toFixed(1));
  return out;
}

/** `--profile DIR`: the controller and worker processes write V8 CPU profiles (NAME-*.cpuprofile) into DIR when they exit. */
function profileArgs(name: string): string[] {
  const i = process.argv.indexOf('--profile');
  const dir = i < 0 ? undefined : process.argv[i + 1];
  return dir ? ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}-\${pid}.cpuprofile`] : [];
}

async function main(): Promise<void> {
  const nodes = intArg('nodes', 1000);
  const replicas = intArg('replicas', 10000);
  const workerCount = Math.min(intArg('workers', 4), nodes);
  const workloadCount = Math.min(intArg('workloads', 10), replicas);
  const berth = fileURLToPath(new URL('../../cmd/berth.cjs', import.meta.url));
  const self = fileURLToPath(import.meta.url);

  let etcd: Service | undefined;
  let nats: Service | undefined;
  let controller: ManagedProcess | undefined;
  const workers: Worker[] = [];
  // --dir: where the hollow nodes keep their state (default the temp dir). A real cluster has one
  // disk per node; here 1,000 nodes share one, and on this machine's journal-less ext4 a create
  // after many deletes is slow (docs/benchmarks.md), so the figures are given for both.
  const dirAt = process.argv.indexOf('--dir');
  const scratch = mkdtempSync(join(dirAt >= 0 ? (process.argv[dirAt + 1] ?? tmpdir()) : tmpdir(), 'berth-scale-'));
  const clients: grpc.Client[] = [];
  let cleaned = false;
  let stopReports: (() => Promise<void>) | undefined;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    for (const c of clients) c.close();
    await stopReports?.().catch(() => undefined);
    await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
      if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
      const t = setTimeout(() => w.child.kill('SIGKILL'), 3_000);
      w.child.once('exit', () => { clearTimeout(t); resolve(); });
      w.child.kill('SIGTERM');
    })));
    await controller?.stop();
    await Promise.all([etcd?.stop(), nats?.stop()]);
    rmSync(scratch, { recursive: true, force: true });
  };
  let stopping = false;
  const onSignal = (): void => {
    stopping = true;
    void cleanup().finally(() => process.exit(130));
  };
  /** waitFor, but gives up at once when a signal arrived (cleanup is then under way). */
  const until = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs: number): Promise<void> =>
    waitFor(what, async () => {
      if (stopping) return true;
      return fn();
    }, timeoutMs, intervalMs).then(() => {
      if (stopping) throw new Error('interrupted');
    });
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    process.stdout.write(`nodes ${nodes}, replicas ${replicas}, worker processes ${workerCount}, workloads ${workloadCount}\n`);
    const placementsPerSec = schedulerAlone(nodes, replicas);
    process.stdout.write(`scheduler alone: ${Math.round(placementsPerSec)} placements/s\n`);

    [etcd, nats] = await Promise.all([startEtcd(), startNats()]);
    const address = `127.0.0.1:${await freePort()}`;
    const etcdUrl = etcd.url;
    // One /24 container subnet per node (registration takes one): room for twice the node count.
    const clusterCidr = `10.0.0.0/${Math.max(8, 24 - Math.ceil(Math.log2(nodes * 2)))}`;
    const natsUrl = nats.url;
    const etcdPid = etcd.pid;
    const natsPid = nats.pid;
    const ctl = controller = startProcess({
      name: 'scale-controller', command: process.execPath,
      args: () => [...profileArgs('controller'), berth, 'controller', '--etcd', etcdUrl, '--nats', natsUrl, '--listen', address, '--id', 'scale', '--log-level', 'warn', '--cluster-cidr', clusterCidr],
    });
    await waitFor('the controller to listen', () => {
      if (ctl.exited()) throw new Error(`controller exited:\n${tailLog(ctl)}`);
      return tailLog(ctl, 200).includes(`listening on ${address}`);
    }, 30_000);
    const opts = { 'grpc.max_receive_message_length': -1 };
    const system = new SystemServiceClient(address, grpc.credentials.createInsecure(), opts);
    const workloads = new WorkloadServiceClient(address, grpc.credentials.createInsecure(), opts);
    const containers = new ContainerServiceClient(address, grpc.credentials.createInsecure(), opts);
    clients.push(system, workloads, containers);
    await waitFor('the controller to lead', async () => (await call(system, system.version, {})).leader, 30_000, 100);

    const tAgents = performance.now();
    const per = Math.ceil(nodes / workerCount);
    for (let first = 0; first < nodes; first += per) {
      const count = Math.min(per, nodes - first);
      const child = spawn(process.execPath, [...profileArgs(`worker${first}`), self, '--worker', '--first', String(first), '--count', String(count), '--nats', natsUrl, '--controller', address, '--root', join(scratch, `w${first}`)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const w: Worker = { child, first, count, lines: [] };
      createInterface({ input: child.stdout! }).on('line', (l) => w.lines.push(l));
      workers.push(w);
    }
    await until('every hollow agent to register', () => {
      for (const w of workers) if (w.child.exitCode !== null) throw new Error(`worker ${w.first} exited with ${w.child.exitCode}`);
      return workers.every((w) => w.lines.some((l) => l.startsWith('ready')));
    }, 600_000, 100);
    process.stdout.write(`${nodes} hollow agents registered and heartbeating in ${((performance.now() - tAgents) / 1000).toFixed(1)} s\n`);

    const names = Array.from({ length: workloadCount }, (_, i) => `scale-${i}`);
    const sizes = names.map((_, i) => Math.floor(replicas / workloadCount) + (i < replicas % workloadCount ? 1 : 0));
    const mine = new Set(names);
    /** Every replica of the benchmark's workloads, in one ContainerService.List call. */
    const listAll = async (): Promise<ListContainersResponse['containers']> =>
      (await call(containers, containers.list, { all: false, selector: {}, node: '', workload: '' }, 60_000)).containers.filter((c) => mine.has(c.workload));
    /** Replicas running by the controller's workload statuses (WorkloadService.List): cheap enough to poll often. */
    const statusRunning = async (): Promise<number> =>
      (await call(workloads, workloads.list, { selector: {} })).workloads
        .filter((w) => mine.has(w.metadata?.name ?? '')).reduce((n, w) => n + (w.status?.running ?? 0), 0);
    const pids = (): Record<string, number[]> => ({
      controller: [ctl.pid], workers: workers.map((w) => w.child.pid ?? 0), etcd: [etcdPid], nats: [natsPid],
    });
    const running = (cs: ListContainersResponse['containers'], lost?: string): number =>
      cs.filter((c) => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING && (lost === undefined || c.node !== lost)).length;

    // What 1,000 idle agents cost (heartbeats, full reports): CPU seconds per second over 3 s before the apply.
    const idle0 = cpuSeconds(pids());
    const tIdle = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idleSec = (performance.now() - tIdle) / 1000;
    const idle = Object.fromEntries(Object.entries(cpuDelta(idle0, cpuSeconds(pids()))).map(([k, v]) => [k, Number((v / idleSec).toFixed(2))]));
    process.stdout.write(`idle cluster, CPU seconds per second: ${Object.entries(idle).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
    // The agents' own container reports on NATS, read as the controller reads them: the clock of
    // "reported running" stops when they count every replica RUNNING.
    const observed = new ObservedState();
    const reports = new NatsContainerReports({ servers: [natsUrl], observed });
    await reports.start();
    stopReports = () => reports.stop();
    const reportedRunning = (): number => {
      let n = 0;
      for (const node of observed.nodeNames()) {
        for (const c of observed.containers(node)) if (mine.has(c.workload) && c.status?.state === ContainerState.CONTAINER_STATE_RUNNING) n++;
      }
      return n;
    };
    let tReported = 0;
    const cpu0 = cpuSeconds(pids());
    const t0 = performance.now();
    const reportedTimer = setInterval(() => {
      if (tReported === 0 && reportedRunning() >= replicas) tReported = performance.now();
    }, 20);
    // One file holding every workload, applied at once (as `berth apply -f scale.yaml`).
    const manifest = names.map((n, i) => workloadYaml(n, sizes[i]!)).join('---\n');
    await call(workloads, workloads.apply, { manifest, source: 'scale.yaml', dryRun: false });
    const tApplied = performance.now();
    let last = 0;
    let lastProgress = performance.now();
    let tAll = 0;
    let confirmSec = 0;
    // The clock stops when the controller's statuses count every replica running, provided one
    // ContainerService.List made right then shows every replica RUNNING too (else polling goes on).
    await until(`${replicas} replicas running`, async () => {
      last = await statusRunning();
      if (performance.now() - lastProgress >= 1000) {
        lastProgress = performance.now();
        process.stdout.write(`  ${((lastProgress - t0) / 1000).toFixed(1)} s: ${last} running (workload statuses)\n`);
      }
      if (last < replicas) return false;
      tAll = performance.now();
      const listed = running(await listAll());
      confirmSec = (performance.now() - tAll) / 1000;
      if (listed !== replicas) process.stdout.write(`  statuses say ${last} running, ContainerService.List ${listed}; polling on\n`);
      return listed === replicas;
    }, 600_000, 100);
    clearInterval(reportedTimer);
    if (tReported === 0 && reportedRunning() >= replicas) tReported = performance.now();
    const reportedSec = tReported === 0 ? NaN : (tReported - t0) / 1000;
    const applySec = (tAll - t0) / 1000;
    const cpu = cpuDelta(cpu0, cpuSeconds(pids()));
    process.stdout.write(`apply (one call, ${workloadCount} workloads): ${((tApplied - t0) / 1000).toFixed(2)} s\n`);
    process.stdout.write(`apply-to-all-reported-running (the agents' NATS reports count every replica RUNNING): ${reportedSec.toFixed(2)} s (${Math.round(replicas / reportedSec)} replicas/s; target < 10 s)\n`);
    process.stdout.write(`apply-to-controller-shows-all-running (workload statuses, then ContainerService.List): ${applySec.toFixed(2)} s; confirming List took ${confirmSec.toFixed(2)} s\n`);
    process.stdout.write(`  CPU seconds used meanwhile: ${Object.entries(cpu).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')} (machine: ${cpus().length} cores x ${applySec.toFixed(1)} s = ${(cpus().length * applySec).toFixed(1)}; load average ${loadavg()[0]?.toFixed(1)})\n`);
    const beyondIdle = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, Number(Math.max(0, v - (idle[k] ?? 0) * applySec).toFixed(1))]));
    process.stdout.write(`  of which beyond the idle cluster's rate: ${Object.entries(beyondIdle).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);

    // Node loss: the first agent of the first worker goes silent.
    const victim = `hollow-${String(workers[0]!.first).padStart(5, '0')}`;
    const onVictim = (await listAll()).filter((c) => c.node === victim).length;
    const tLoss = performance.now();
    const cpuLoss0 = cpuSeconds(pids());
    workers[0]!.child.stdin!.write(`kill ${victim}\n`);
    let lastLog = performance.now();
    await until(`the lost node's ${onVictim} replicas replaced`, async () => {
      const cs = await listAll();
      const done = running(cs, victim) === replicas;
      if (!done && performance.now() - lastLog > 5000) {
        lastLog = performance.now();
        const states = cs.filter((c) => c.node === victim).map((c) => ContainerState[c.status?.state ?? 0]);
        process.stdout.write(`  waiting: ${running(cs, victim)} running elsewhere; on ${victim}: ${JSON.stringify(states.slice(0, 3))}${states.length > 3 ? '...' : ''}\n`);
      }
      return done;
    }, intArg('loss-timeout', 120) * 1000, 250);
    const lossSec = (performance.now() - tLoss) / 1000;
    const cpuLoss = cpuDelta(cpuLoss0, cpuSeconds(pids()));
    const stale = (await listAll()).filter((c) => c.node === victim).map((c) => ContainerState[c.status?.state ?? 0]);
    if (stale.length > 0) process.stdout.write(`  note: ContainerService.List still lists ${stale.length} replicas on ${victim} (states ${JSON.stringify([...new Set(stale)])})\n`);
    process.stdout.write(`node-loss-to-replaced: ${lossSec.toFixed(2)} s (${onVictim} replicas on ${victim})\n`);
    process.stdout.write(`${JSON.stringify({ nodes, replicas, placementsPerSec: Math.round(placementsPerSec), applyToAllReportedRunningSec: Number(reportedSec.toFixed(2)), applyToControllerShowsAllRunningSec: Number(applySec.toFixed(2)), replicasPerSec: Math.round(replicas / reportedSec), nodeLossToReplacedSec: Number(lossSec.toFixed(2)), applyCpuSec: cpu, applyCpuBeyondIdleSec: beyondIdle, idleCpuPerSec: idle, lossCpuSec: cpuLoss, loadAverage: Number(loadavg()[0]?.toFixed(1)) })}\n`);
  } finally {
    await cleanup();
  }
}

if (process.argv.includes('--worker')) {
  await worker();
} else {
  await main().catch((err: unknown) => {
    process.stderr.write(`scale benchmark failed: ${messageOf(err)}\n`);
    process.exitCode = 1;
  });
}
