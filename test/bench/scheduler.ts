/**
 * Scheduler-alone benchmark: how many placements per second the pure
 * scheduler makes on a synthetic cluster (no I/O, no network).
 *
 *   npx tsc -p tsconfig.json --outDir .build-scheduler --tsBuildInfoFile .build-scheduler/.tsbuildinfo
 *   node .build-scheduler/test/bench/scheduler.js [--nodes 1000] [--replicas 10000] [--runs 5]
 *
 * Cases (each the median of --runs runs, after one warm-up):
 * - spread:    one workload, all replicas in one request, spread (default).
 * - binpack:   the same with placement.spread false.
 * - selectors: 100 workloads of replicas/100 each, half with a nodeSelector
 *              and a maxPerNode, scheduled one after another against a
 *              snapshot updated after each (withPlacements), so every call
 *              also pays for rebuilding its working state from the snapshot.
 * - small:     the same with 1,000 workloads of replicas/1000 each (many
 *              small evaluations, e.g. re-placing after a node loss).
 * - small+alloc: the same, with nodes stating `allocated` (so a call need
 *              not sum other workloads' replicas).
 * - removals:  chooseRemovals of half the replicas of one workload spread
 *              over all nodes (the figure is removals/s; it includes placing
 *              the replicas first).
 * Multi-workload cases count the time of withPlacements() too (the
 * placements/s figure) and also print the figure for schedule() alone.
 * Prints one line per case and a JSON summary. The target (issue 5) is
 * at least 5,000 placements/s with 1,000 nodes and 10,000 replicas.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { chooseRemovals, schedule, withPlacements } from '../../controller/scheduler/index.js';
import type { ClusterSnapshot, NodeSnapshot, PlacementRequest } from '../../controller/scheduler/index.js';
import { intArg } from './args.js';

const GiB = 1024 * 1024 * 1024;

const arg = intArg;

const nodeCount = arg('nodes', 1000);
const replicaCount = arg('replicas', 10000);
const runs = arg('runs', 5);

function makeCluster(n: number, explicitAllocated: boolean): ClusterSnapshot {
  const nodes: NodeSnapshot[] = [];
  for (let i = 0; i < n; i++) {
    nodes.push({
      name: `node-${String(i).padStart(4, '0')}`,
      labels: { zone: `z${i % 3}`, ...(i % 2 === 0 ? { disk: 'ssd' } : {}) },
      ready: i % 50 !== 7, // a few NotReady nodes
      cordoned: i % 97 === 3, // and a few cordoned ones
      capacity: { cpuMillis: 16000, memoryBytes: 64 * GiB, pids: 10000 },
      ...(explicitAllocated ? { allocated: { cpuMillis: 0, memoryBytes: 0, pids: 0 } } : {}),
    });
  }
  return { nodes, replicas: [] };
}

interface CaseResult {
  name: string;
  nodes: number;
  replicas: number;
  placed: number;
  elapsedMs: number;
  /** CPU time of this process during the run (less sensitive than elapsed to other load on the machine). */
  cpuMs: number;
  /** Per second of `placed` (for the removals case: replicas chosen for removal). */
  placementsPerSec: number;
  /** Multi-workload cases: counting only the time inside schedule(), not withPlacements(). */
  scheduleOnlyPerSec?: number;
}

/** Time spent inside schedule() by the multi-workload cases during one sample. */
let inSchedule = 0;

interface Sample {
  ms: number;
  cpuMs: number;
  placed: number;
  scheduleMs: number;
}

function time(fn: () => number): Sample {
  inSchedule = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const placed = fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000, placed, scheduleMs: inSchedule };
}

function runCase(name: string, fn: () => number): CaseResult {
  fn(); // warm-up (JIT)
  const samples: Sample[] = [];
  for (let r = 0; r < runs; r++) samples.push(time(fn));
  samples.sort((a, b) => a.ms - b.ms);
  const mid = samples[Math.floor(samples.length / 2)] as Sample;
  return {
    name,
    nodes: nodeCount,
    replicas: replicaCount,
    placed: mid.placed,
    elapsedMs: Math.round(mid.ms * 100) / 100,
    cpuMs: Math.round(mid.cpuMs * 100) / 100,
    placementsPerSec: Math.round(mid.placed / (mid.ms / 1000)),
    ...(mid.scheduleMs > 0 ? { scheduleOnlyPerSec: Math.round(mid.placed / (mid.scheduleMs / 1000)) } : {}),
  };
}

const base = makeCluster(nodeCount, false);
const baseAllocated = makeCluster(nodeCount, true);
const resources = { cpuMillis: 100, memoryBytes: 256 * 1024 * 1024, pids: 20 };

const single = (spread: boolean) => (): number => {
  const req: PlacementRequest = { workload: 'web', replicas: replicaCount, resources, placement: { spread } };
  return schedule(base, req, { evalId: `bench-${spread ? 's' : 'b'}` }).placements.length;
};

const manyWorkloads = (workloads: number, start: ClusterSnapshot) => (): number => {
  const per = Math.max(1, Math.floor(replicaCount / workloads));
  let snap = start;
  let placed = 0;
  for (let w = 0; w < workloads; w++) {
    const req: PlacementRequest = {
      workload: `app-${w}`,
      replicas: Array.from({ length: per }, (_, i) => `app-${w}-${i}`),
      resources,
      placement:
        w % 2 === 0
          ? { nodeSelector: { zone: `z${w % 3}`, disk: 'ssd' }, maxPerNode: 2, spread: true }
          : { spread: w % 4 !== 1 },
    };
    const t0 = performance.now();
    const plan = schedule(snap, req, { evalId: `bench-${w}` });
    inSchedule += performance.now() - t0;
    placed += plan.placements.length;
    snap = withPlacements(snap, req, plan);
  }
  return placed;
};

/** Not placements: replicas chosen for removal per second (scale 10,000 -> 5,000 of one workload). */
const removals = (): number => {
  const req: PlacementRequest = { workload: 'web', replicas: replicaCount, resources };
  const snap = withPlacements(base, req, schedule(base, req, { evalId: 'bench-r' }), { createdAt: 1 });
  return chooseRemovals(snap, { workload: 'web', count: Math.floor(replicaCount / 2) }).length;
};

const results = [
  runCase('spread', single(true)),
  runCase('binpack', single(false)),
  runCase('selectors', manyWorkloads(100, base)),
  runCase('small', manyWorkloads(1000, base)),
  runCase('small+alloc', manyWorkloads(1000, baseAllocated)),
  runCase('removals', removals),
];
for (const r of results) {
  process.stdout.write(
    r.name === 'removals'
      ? `${r.name.padEnd(12)} nodes=${r.nodes} replicas=${r.replicas} removed=${r.placed} elapsed=${r.elapsedMs.toFixed(1)}ms cpu=${r.cpuMs.toFixed(1)}ms removals/s=${r.placementsPerSec}\n`
      : `${r.name.padEnd(12)} nodes=${r.nodes} replicas=${r.replicas} placed=${r.placed} elapsed=${r.elapsedMs.toFixed(1)}ms cpu=${r.cpuMs.toFixed(1)}ms placements/s=${r.placementsPerSec}` +
        (r.scheduleOnlyPerSec === undefined ? '\n' : ` (inside schedule() only: ${r.scheduleOnlyPerSec}/s)\n`),
  );
}
process.stdout.write(`${JSON.stringify({ benchmark: 'scheduler', runs, loadavg: os.loadavg()[0], cpus: os.cpus().length, results })}\n`);
