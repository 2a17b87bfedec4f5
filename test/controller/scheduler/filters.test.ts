import assert from 'node:assert/strict';
import {
  REASON_ORDER,
  RejectReason,
  countReasons,
  formatSummary,
  reasonText,
  schedule,
} from '../../../controller/scheduler/index.js';
import type { ClusterSnapshot, PlacementRequest } from '../../../controller/scheduler/index.js';
import { GiB, cluster, node, res } from './fixtures.js';

const small: PlacementRequest = { workload: 'web', replicas: 1, resources: res(100, 100 * 1024 * 1024, 10) };

interface FilterCase {
  reason: RejectReason;
  text: string;
  snapshot: ClusterSnapshot;
  request: PlacementRequest;
  /** When the summary is not the count form (volumes name their node). */
  summary?: string;
}

const cases: FilterCase[] = [
  {
    reason: RejectReason.NodeNotReady,
    text: 'node not ready',
    snapshot: cluster([node('n1', { ready: false })]),
    request: small,
  },
  {
    reason: RejectReason.NodeCordoned,
    text: 'cordoned',
    snapshot: cluster([node('n1', { cordoned: true })]),
    request: small,
  },
  {
    reason: RejectReason.NodeSelectorMismatch,
    text: 'node selector mismatch',
    snapshot: cluster([node('n1', { labels: { disk: 'hdd' } })]),
    request: { ...small, placement: { nodeSelector: { disk: 'ssd' } } },
  },
  {
    reason: RejectReason.NodeNotAllowed,
    text: 'not a required node',
    snapshot: cluster([node('n1')]),
    request: { ...small, requiredNodes: ['n9'] },
  },
  {
    reason: RejectReason.VolumeOnOtherNode,
    text: 'volume on another node',
    snapshot: cluster([node('n1')]),
    request: { ...small, volumes: [{ name: 'data', node: 'n9' }] },
    summary: '0/1 nodes: volume "data" is on node "n9" which is not registered',
  },
  {
    reason: RejectReason.InsufficientCpu,
    text: 'insufficient cpu',
    snapshot: cluster([node('n1', { capacity: res(50, 8 * GiB, 1000) })]),
    request: small,
  },
  {
    reason: RejectReason.InsufficientMemory,
    text: 'insufficient memory',
    snapshot: cluster([node('n1', { capacity: res(4000, 10, 1000) })]),
    request: small,
  },
  {
    reason: RejectReason.InsufficientPids,
    text: 'insufficient pids',
    snapshot: cluster([node('n1', { capacity: res(4000, 8 * GiB, 5) })]),
    request: small,
  },
  {
    reason: RejectReason.MaxPerNodeReached,
    text: 'max per node reached',
    snapshot: cluster([node('n1')], [{ workload: 'web', replica: 'w0', node: 'n1', resources: res(0, 0) }]),
    request: { ...small, replicas: ['w1'], placement: { maxPerNode: 1 } },
  },
];

describe('scheduler filters', () => {
  for (const c of cases) {
    it(`rejects with "${c.text}" when the only node fails ${c.reason}`, () => {
      const plan = schedule(c.snapshot, c.request, { evalId: 'e1' });
      assert.deepEqual(plan.placements, []);
      assert.ok(plan.unplaced);
      assert.equal(plan.unplaced.summary, c.summary ?? `0/1 nodes: 1 ${c.text}`);
      assert.deepEqual(plan.unplaced.reasons, [{ reason: c.reason, text: c.text, nodes: 1 }]);
      assert.equal(reasonText(c.reason), c.text);
    });
  }

  it('has one case above for every reason constant when the table is complete', () => {
    assert.deepEqual(
      [...cases.map((c) => c.reason)].sort(),
      [...REASON_ORDER].sort(),
    );
    assert.deepEqual([...REASON_ORDER].sort(), Object.values(RejectReason).sort());
  });

  it('counts a node once under its first failed filter when it fails several', () => {
    const snap = cluster([node('n1', { ready: false, cordoned: true, capacity: res(0, 0, 0) })]);
    const plan = schedule(snap, small, { evalId: 'e1' });
    assert.equal(plan.unplaced?.summary, '0/1 nodes: 1 node not ready');
  });

  it('lets a replica with no request in a dimension fit when that dimension is full', () => {
    const snap = cluster([node('n1', { capacity: res(1000, GiB, 10), allocated: res(1000, GiB, 10) })]);
    const plan = schedule(snap, { workload: 'w', replicas: 2, resources: res(0, 0, 0) }, { evalId: 'e' });
    assert.equal(plan.placements.length, 2);
  });

  it('treats Infinity capacity as unlimited when a dimension is not tracked', () => {
    const snap = cluster([node('n1', { capacity: res(1000, GiB, Infinity) })]);
    const plan = schedule(snap, { workload: 'w', replicas: 3, resources: res(1, 1, 1_000_000) }, { evalId: 'e' });
    assert.equal(plan.placements.length, 3);
  });

  it('places exactly up to capacity when the request divides it evenly', () => {
    const snap = cluster([node('n1', { capacity: res(1000, GiB, 100) })]);
    const plan = schedule(snap, { workload: 'w', replicas: 5, resources: res(250, 0, 0) }, { evalId: 'e' });
    assert.equal(plan.placements.length, 4);
    assert.equal(plan.unplaced?.summary, '0/1 nodes: 1 insufficient cpu');
  });

  it('matches a node selector only when every label has the exact value', () => {
    const snap = cluster([
      node('a', { labels: { zone: 'z1', disk: 'ssd' } }),
      node('b', { labels: { zone: 'z1' } }),
      node('c', { labels: { zone: 'z2', disk: 'ssd' } }),
    ]);
    const plan = schedule(snap, { ...small, replicas: 3, placement: { nodeSelector: { zone: 'z1', disk: 'ssd' } } }, { evalId: 'e' });
    assert.deepEqual(plan.placements.map((p) => p.node), ['a', 'a', 'a']);
  });

  it('places only on a required node when the request names one (volume affinity)', () => {
    const snap = cluster([node('a'), node('b'), node('c')]);
    const plan = schedule(snap, { ...small, replicas: 2, requiredNodes: ['b'] }, { evalId: 'e' });
    assert.deepEqual(plan.placements.map((p) => p.node), ['b', 'b']);
  });
});

describe('scheduler reason summary', () => {
  it('formats "0/3 nodes: 2 insufficient memory, 1 cordoned" when two nodes are full and one is cordoned', () => {
    const snap = cluster([
      node('a', { cordoned: true }),
      node('b', { capacity: res(4000, GiB, 100) }),
      node('c', { capacity: res(4000, 2 * GiB, 100), allocated: res(0, 1.5 * GiB, 0) }),
    ]);
    const plan = schedule(snap, { workload: 'db', replicas: ['db-0', 'db-1'], resources: res(500, 2 * GiB, 0) }, { evalId: 'e' });
    assert.deepEqual(plan.placements, []);
    assert.deepEqual(plan.unplaced, {
      replicas: ['db-0', 'db-1'],
      nodesTotal: 3,
      nodesAvailable: 0,
      reasons: [
        { reason: RejectReason.InsufficientMemory, text: 'insufficient memory', nodes: 2 },
        { reason: RejectReason.NodeCordoned, text: 'cordoned', nodes: 1 },
      ],
      summary: '0/3 nodes: 2 insufficient memory, 1 cordoned',
    });
  });

  it('counts nodes that filled up during the request under their fit reason when some replicas were placed', () => {
    const snap = cluster([node('a', { capacity: res(1000, GiB, 100) }), node('b', { capacity: res(1000, 8 * GiB, 100) }), node('c', { ready: false })]);
    const plan = schedule(snap, { workload: 'w', replicas: 6, resources: res(400, 512 * 1024 * 1024, 0) }, { evalId: 'e' });
    assert.equal(plan.placements.length, 4);
    assert.deepEqual(plan.unplaced?.replicas, ['4', '5']);
    assert.equal(plan.unplaced?.summary, '0/3 nodes: 2 insufficient cpu, 1 node not ready');
  });

  it('orders equal counts by filter order when counts tie', () => {
    const counts = new Map<RejectReason, number>([
      [RejectReason.MaxPerNodeReached, 1],
      [RejectReason.NodeCordoned, 1],
      [RejectReason.InsufficientCpu, 3],
      [RejectReason.NodeNotReady, 1],
    ]);
    assert.equal(formatSummary(0, 6, countReasons(counts)), '0/6 nodes: 3 insufficient cpu, 1 node not ready, 1 cordoned, 1 max per node reached');
  });

  it('says there are no nodes when the cluster is empty', () => {
    const plan = schedule(cluster([]), small, { evalId: 'e' });
    assert.equal(plan.unplaced?.summary, '0/0 nodes: no nodes registered');
    assert.deepEqual(plan.unplaced?.reasons, []);
  });
});
