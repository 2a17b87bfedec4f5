import assert from 'node:assert/strict';
import { RejectReason, schedule, volumeFilter } from '../../../controller/scheduler/index.js';
import type { ClusterSnapshot, PlacementRequest, VolumeLocation } from '../../../controller/scheduler/index.js';
import { GiB, cluster, node, perNode, res } from './fixtures.js';

const req = (volumes: VolumeLocation[], over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  workload: 'db', replicas: 1, resources: res(100, 256 * 1024 * 1024, 0), volumes, ...over,
});

const three = (over: Record<string, Parameters<typeof node>[1]> = {}): ClusterSnapshot =>
  cluster(['n1', 'n2', 'n3'].map((n) => node(n, over[n] ?? {})));

interface Case {
  name: string;
  snapshot: ClusterSnapshot;
  request: PlacementRequest;
  /** node -> replicas placed there */
  placed: Record<string, number>;
  summary?: string;
}

const cases: Case[] = [
  { name: 'places on the node holding the volume when it is ready', snapshot: three(), request: req([{ name: 'data', node: 'n2' }]), placed: { n2: 1 } },
  { name: 'places every replica on the volume node when there are several', snapshot: three(), request: req([{ name: 'data', node: 'n3' }], { replicas: 3 }), placed: { n3: 3 } },
  { name: 'places anywhere when no volume exists yet', snapshot: three(), request: req([], { replicas: 3 }), placed: { n1: 1, n2: 1, n3: 1 } },
  { name: 'places when two volumes are on the same node', snapshot: three(), request: req([{ name: 'a', node: 'n1' }, { name: 'b', node: 'n1' }]), placed: { n1: 1 } },
  {
    name: 'says the volume node is NotReady when it is down',
    snapshot: three({ n2: { ready: false } }),
    request: req([{ name: 'data', node: 'n2' }]),
    placed: {},
    summary: '0/3 nodes: volume "data" is on node "n2" which is NotReady',
  },
  {
    name: 'says the volume node is cordoned when it is cordoned',
    snapshot: three({ n2: { cordoned: true } }),
    request: req([{ name: 'data', node: 'n2' }]),
    placed: {},
    summary: '0/3 nodes: volume "data" is on node "n2" which is cordoned',
  },
  {
    name: 'says the volume node is full when it lacks memory',
    snapshot: three({ n1: { capacity: res(4000, 128 * 1024 * 1024, 100) } }),
    request: req([{ name: 'data', node: 'n1' }]),
    placed: {},
    summary: '0/3 nodes: volume "data" is on node "n1" which has insufficient memory',
  },
  {
    name: 'reports the fit reason of the volume node when it fills up during the request',
    snapshot: three({ n1: { capacity: res(250, 8 * GiB, 100) } }),
    request: req([{ name: 'data', node: 'n1' }], { replicas: 3 }),
    placed: { n1: 2 },
    summary: '0/3 nodes: volume "data" is on node "n1" which has insufficient cpu',
  },
  {
    name: 'says the volume node is not registered when the snapshot lacks it',
    snapshot: three(),
    request: req([{ name: 'data', node: 'gone' }]),
    placed: {},
    summary: '0/3 nodes: volume "data" is on node "gone" which is not registered',
  },
  {
    name: 'says the volumes are split when two volumes are on different nodes',
    snapshot: three(),
    request: req([{ name: 'a', node: 'n1' }, { name: 'b', node: 'n3' }]),
    placed: {},
    summary: '0/3 nodes: volume "a" is on node "n1" but volume "b" is on node "n3"',
  },
  {
    name: 'says the volume node misses the selector when the selector excludes it',
    snapshot: three({ n2: { labels: { disk: 'hdd' } } }),
    request: req([{ name: 'data', node: 'n2' }], { placement: { nodeSelector: { disk: 'ssd' } } }),
    placed: {},
    summary: '0/3 nodes: volume "data" is on node "n2" which does not match the node selector',
  },
];

describe('scheduler volume filter', () => {
  for (const c of cases) {
    it(`${c.name}`, () => {
      const plan = schedule(c.snapshot, c.request, { evalId: 'v1' });
      assert.deepEqual(perNode(plan), c.placed);
      assert.equal(plan.unplaced?.summary, c.summary);
    });
  }

  it('counts the other nodes under volume_on_other_node when the volume node is down', () => {
    const plan = schedule(three({ n2: { ready: false } }), req([{ name: 'data', node: 'n2' }]), { evalId: 'v1' });
    assert.deepEqual(plan.unplaced?.reasons, [
      { reason: RejectReason.VolumeOnOtherNode, text: 'volume on another node', nodes: 2 },
      { reason: RejectReason.NodeNotReady, text: 'node not ready', nodes: 1 },
    ]);
  });

  it('is a feasibility filter when the pipeline runs it', () => {
    assert.equal(volumeFilter.stage, 'feasibility');
    assert.equal(volumeFilter.reason, RejectReason.VolumeOnOtherNode);
  });

  it('rejects a malformed volume list with the field at fault when a node is missing', () => {
    assert.throws(
      () => schedule(three(), req([{ name: 'data', node: '' }]), { evalId: 'v1' }),
      /request\.volumes\[0\]\.node: expected a non-empty node name, got ""/,
    );
    assert.throws(
      () => schedule(three(), { ...req([]), volumes: 'data' as unknown as VolumeLocation[] }, { evalId: 'v1' }),
      /request\.volumes: expected a list of \{ name, node \}/,
    );
  });
});
