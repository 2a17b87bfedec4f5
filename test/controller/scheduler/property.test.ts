/**
 * Randomized checks with a seeded generator (every run sees the same cases;
 * a failure message names the case seed to replay it).
 */
import assert from 'node:assert/strict';
import { buildState, compareTie, createRng, randomInt, schedule } from '../../../controller/scheduler/index.js';
import type { ClusterSnapshot, ExistingReplica, NodeSnapshot, PlacementPlan, PlacementRequest, ResourceAmounts } from '../../../controller/scheduler/index.js';
import { MiB, res } from './fixtures.js';

const ZONES = ['z1', 'z2', 'z3'];

function randomCase(seed: string): { snapshot: ClusterSnapshot; request: PlacementRequest } {
  const rng = createRng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[randomInt(rng, xs.length)] as T;
  const nodeCount = 1 + randomInt(rng, 12);
  const nodes: NodeSnapshot[] = [];
  const replicas: ExistingReplica[] = [];
  for (let i = 0; i < nodeCount; i++) {
    const capacity = res(pick([1000, 2000, 4000]), pick([1024, 2048, 4096]) * MiB, pick([100, 200, Infinity]));
    const name = `node-${i}`;
    const explicit = rng() < 0.3;
    // Existing load never exceeds capacity.
    const load = res(randomInt(rng, capacity.cpuMillis / 2), randomInt(rng, capacity.memoryBytes / 2), randomInt(rng, 50));
    nodes.push({
      name,
      labels: { zone: pick(ZONES), ...(rng() < 0.5 ? { disk: 'ssd' } : {}) },
      ready: rng() < 0.85,
      cordoned: rng() < 0.1,
      capacity,
      ...(explicit ? { allocated: load } : {}),
    });
    if (!explicit) {
      replicas.push({ workload: 'other', replica: `o${i}`, node: name, resources: load });
    }
    const mine = randomInt(rng, 3);
    for (let k = 0; k < mine; k++) replicas.push({ workload: 'web', replica: `old-${i}-${k}`, node: name, resources: res(0, 0, 0) });
  }
  const request: PlacementRequest = {
    workload: 'web',
    replicas: randomInt(rng, 40),
    resources: res(pick([0, 100, 250, 700]), pick([0, 64, 256, 900]) * MiB, pick([0, 5, 30])),
    placement: {
      spread: rng() < 0.6,
      maxPerNode: pick([0, 0, 1, 3, 5]),
      ...(rng() < 0.4 ? { nodeSelector: rng() < 0.5 ? { zone: pick(ZONES) } : { disk: 'ssd' } } : {}),
    },
    ...(rng() < 0.15 ? { requiredNodes: [`node-${randomInt(rng, nodeCount)}`, 'node-missing'] } : {}),
  };
  return { snapshot: { nodes, replicas }, request };
}

interface Usage {
  cpu: number;
  mem: number;
  pids: number;
  count: number;
}

/** Initial usage per node, computed independently of the scheduler. */
function initialUsage(s: ClusterSnapshot, workload: string): Map<string, Usage> {
  const u = new Map<string, Usage>();
  for (const n of s.nodes) {
    const a = n.allocated;
    u.set(n.name, { cpu: a?.cpuMillis ?? 0, mem: a?.memoryBytes ?? 0, pids: a?.pids ?? 0, count: 0 });
  }
  for (const r of s.replicas) {
    if (r.node === undefined) continue;
    const x = u.get(r.node);
    const n = s.nodes.find((m) => m.name === r.node);
    if (x === undefined || n === undefined) continue;
    if (r.workload === workload) x.count++;
    if (n.allocated === undefined) {
      x.cpu += r.resources.cpuMillis;
      x.mem += r.resources.memoryBytes;
      x.pids += r.resources.pids;
    }
  }
  return u;
}

function fitsOne(n: NodeSnapshot, u: Usage, req: PlacementRequest): boolean {
  const r = req.resources;
  const p = req.placement ?? {};
  const dim = (used: number, want: number, cap: number): boolean => want === 0 || used + want <= cap;
  return (
    n.ready &&
    !n.cordoned &&
    Object.entries(p.nodeSelector ?? {}).every(([k, v]) => n.labels[k] === v) &&
    (req.requiredNodes === undefined || req.requiredNodes.includes(n.name)) &&
    dim(u.cpu, r.cpuMillis, n.capacity.cpuMillis) &&
    dim(u.mem, r.memoryBytes, n.capacity.memoryBytes) &&
    dim(u.pids, r.pids, n.capacity.pids) &&
    ((p.maxPerNode ?? 0) === 0 || u.count < (p.maxPerNode ?? 0))
  );
}

function frac(used: number, cap: number): number {
  if (cap === Infinity) return 0;
  if (cap <= 0) return used > 0 ? 1 : 0;
  return used / cap;
}

/** A naive scheduler: scan every node for every replica. */
function naive(s: ClusterSnapshot, req: PlacementRequest, evalId: string): string[] {
  const state = buildState(s, req.workload, evalId);
  const usage = initialUsage(s, req.workload);
  const spread = req.placement?.spread ?? true;
  const r: ResourceAmounts = req.resources;
  const n = typeof req.replicas === 'number' ? req.replicas : req.replicas.length;
  const out: string[] = [];
  for (let k = 0; k < n; k++) {
    let best = -1;
    let bk1 = 0;
    let bk2 = 0;
    s.nodes.forEach((node, i) => {
      const u = usage.get(node.name) as Usage;
      if (!fitsOne(node, u, req)) return;
      const util = (frac(u.cpu + r.cpuMillis, node.capacity.cpuMillis) + frac(u.mem + r.memoryBytes, node.capacity.memoryBytes)) / 2;
      const k1 = spread ? u.count : 0;
      const k2 = spread ? util : -util;
      if (best < 0 || k1 < bk1 || (k1 === bk1 && (k2 < bk2 || (k2 === bk2 && compareTie(state, i, best) < 0)))) {
        best = i;
        bk1 = k1;
        bk2 = k2;
      }
    });
    if (best < 0) break;
    const name = (s.nodes[best] as NodeSnapshot).name;
    const u = usage.get(name) as Usage;
    u.cpu += r.cpuMillis;
    u.mem += r.memoryBytes;
    u.pids += r.pids;
    u.count++;
    out.push(name);
  }
  return out;
}

function check(seed: string, s: ClusterSnapshot, req: PlacementRequest, plan: PlacementPlan): void {
  const usage = initialUsage(s, req.workload);
  const byName = new Map(s.nodes.map((n) => [n.name, n]));
  for (const p of plan.placements) {
    const n = byName.get(p.node);
    assert.ok(n, `${seed}: placed on unknown node ${p.node}`);
    const u = usage.get(p.node) as Usage;
    assert.ok(fitsOne(n, u, req), `${seed}: replica ${p.replica} placed on ${p.node} where it does not fit`);
    u.cpu += req.resources.cpuMillis;
    u.mem += req.resources.memoryBytes;
    u.pids += req.resources.pids;
    u.count++;
  }
  for (const n of s.nodes) {
    const u = usage.get(n.name) as Usage;
    assert.ok(u.cpu <= n.capacity.cpuMillis, `${seed}: ${n.name} over cpu capacity`);
    assert.ok(u.mem <= n.capacity.memoryBytes, `${seed}: ${n.name} over memory capacity`);
    assert.ok(u.pids <= n.capacity.pids, `${seed}: ${n.name} over pids capacity`);
  }
  const total = typeof req.replicas === 'number' ? req.replicas : req.replicas.length;
  if (plan.unplaced === undefined) {
    assert.equal(plan.placements.length, total, seed);
  } else {
    assert.equal(plan.placements.length + plan.unplaced.replicas.length, total, seed);
    // Unplaced only when truly no node can take another replica.
    for (const n of s.nodes) assert.ok(!fitsOne(n, usage.get(n.name) as Usage, req), `${seed}: ${n.name} still fits but replicas were left unplaced`);
    assert.equal(plan.unplaced.reasons.reduce((a, r) => a + r.nodes, 0), s.nodes.length, `${seed}: every node counted once`);
    assert.match(plan.unplaced.summary, /^0\/\d+ nodes: /, seed);
  }
}

describe('schedule (randomized)', () => {
  it('never overfills a node and places only where every filter passes when clusters are random', () => {
    for (let c = 0; c < 500; c++) {
      const seed = `case-${c}`;
      const { snapshot, request } = randomCase(seed);
      check(seed, snapshot, request, schedule(snapshot, request, { evalId: seed }));
    }
  });

  it('matches a naive scan-every-node scheduler when clusters are random', () => {
    for (let c = 0; c < 500; c++) {
      const seed = `naive-${c}`;
      const { snapshot, request } = randomCase(seed);
      const plan = schedule(snapshot, request, { evalId: seed });
      assert.deepEqual(plan.placements.map((p) => p.node), naive(snapshot, request, seed), seed);
    }
  });
});
