import assert from 'node:assert/strict';
import { SchedulerInputError, schedule, withPlacements } from '../../../controller/scheduler/index.js';
import type { ClusterSnapshot, PlacementRequest } from '../../../controller/scheduler/index.js';
import { GiB, MiB, cluster, node, perNode, res, shape } from './fixtures.js';

const web: PlacementRequest = { workload: 'web', replicas: 6, resources: res(250, 256 * MiB, 20) };

describe('schedule', () => {
  it('spreads 6 replicas 2/2/2 when there are 3 equal nodes', () => {
    const plan = schedule(cluster([node('a'), node('b'), node('c')]), web, { evalId: 'eval-1' });
    assert.deepEqual(perNode(plan), { a: 2, b: 2, c: 2 });
    assert.equal(plan.unplaced, undefined);
    assert.deepEqual(plan.placements.map((p) => p.replica), ['0', '1', '2', '3', '4', '5']);
  });

  it('spreads 2/2/2 for every evaluation id when nodes are equal', () => {
    for (let i = 0; i < 50; i++) {
      const plan = schedule(cluster([node('a'), node('b'), node('c')]), web, { evalId: `e${i}` });
      assert.deepEqual(shape(plan), [2, 2, 2]);
    }
  });

  it('counts existing replicas of the workload when spreading', () => {
    const snap = cluster(
      [node('a'), node('b'), node('c')],
      [
        { workload: 'web', replica: 'x1', node: 'a', resources: res(250, 256 * MiB, 20) },
        { workload: 'web', replica: 'x2', node: 'a', resources: res(250, 256 * MiB, 20) },
        { workload: 'other', replica: 'o1', node: 'b', resources: res(250, 256 * MiB, 20) },
      ],
    );
    const plan = schedule(snap, { ...web, replicas: ['w3', 'w4', 'w5', 'w6'] }, { evalId: 'e' });
    // b and c get one each first, then c (less allocated than b), then b, so a stays at 2.
    assert.deepEqual(perNode(plan), { b: 2, c: 2 });
    assert.deepEqual(plan.placements.slice(0, 2).map((p) => p.node), ['c', 'b']);
  });

  it('uses stated allocations instead of summing replicas when every node states one', () => {
    const snap = cluster(
      [node('a', { allocated: res(0, 0, 0) }), node('b', { allocated: res(3900, 0, 0) })],
      [
        // Counted for spread, but their resources are already inside `allocated`.
        { workload: 'web', replica: 'x1', node: 'a', resources: res(4000, 0, 0) },
        { workload: 'other', replica: 'o1', node: 'a', resources: res(4000, 0, 0) },
      ],
    );
    const plan = schedule(snap, { ...web, replicas: 3, resources: res(100, 0, 0) }, { evalId: 'e' });
    // b takes one (count 0 vs 1) and is then full; a takes the rest.
    assert.deepEqual(plan.placements.map((p) => p.node), ['b', 'a', 'a']);
  });

  it('prefers the least allocated node when replica counts are equal under spread', () => {
    const snap = cluster([
      node('a', { allocated: res(3000, 6 * GiB, 0) }),
      node('b', { allocated: res(1000, 1 * GiB, 0) }),
      node('c', { allocated: res(2000, 4 * GiB, 0) }),
    ]);
    const plan = schedule(snap, { ...web, replicas: 3 }, { evalId: 'e' });
    assert.deepEqual(plan.placements.map((p) => p.node), ['b', 'c', 'a']);
  });

  it('fills one node before the next when spread is false (bin-pack)', () => {
    const snap = cluster([node('a'), node('b'), node('c')]);
    const plan = schedule(snap, { workload: 'batch', replicas: 6, resources: res(1000, GiB, 0), placement: { spread: false } }, { evalId: 'e' });
    assert.deepEqual(shape(plan), [2, 4]);
    const first = plan.placements[0]?.node;
    assert.deepEqual(plan.placements.slice(0, 4).map((p) => p.node), [first, first, first, first]);
  });

  it('picks the most allocated node that still fits when bin-packing', () => {
    const snap = cluster([
      node('a', { allocated: res(3500, 7 * GiB, 0) }), // almost full: the 1000m request does not fit
      node('b', { allocated: res(2000, 4 * GiB, 0) }),
      node('c', { allocated: res(0, 0, 0) }),
    ]);
    const plan = schedule(snap, { workload: 'batch', replicas: 3, resources: res(1000, GiB, 0), placement: { spread: false } }, { evalId: 'e' });
    assert.deepEqual(plan.placements.map((p) => p.node), ['b', 'b', 'c']);
  });

  it('stops at maxPerNode on each node and reports the rest when the limit is reached', () => {
    const snap = cluster([node('a'), node('b'), node('c')]);
    const plan = schedule(snap, { ...web, replicas: 8, placement: { maxPerNode: 2 } }, { evalId: 'e' });
    assert.deepEqual(perNode(plan), { a: 2, b: 2, c: 2 });
    assert.deepEqual(plan.unplaced?.replicas, ['6', '7']);
    assert.equal(plan.unplaced?.summary, '0/3 nodes: 3 max per node reached');
  });

  it('honours maxPerNode under bin-pack when one node could take everything', () => {
    const snap = cluster([node('a'), node('b')]);
    const plan = schedule(snap, { ...web, replicas: 4, placement: { spread: false, maxPerNode: 3 } }, { evalId: 'e' });
    assert.deepEqual(shape(plan), [1, 3]);
  });

  it('returns an empty plan when there are no pending replicas', () => {
    const plan = schedule(cluster([node('a')]), { ...web, replicas: [] }, { evalId: 'e' });
    assert.deepEqual(plan, { evalId: 'e', workload: 'web', placements: [], unplaced: undefined });
  });

  it('keeps the given replica ids and their order when ids are passed', () => {
    const plan = schedule(cluster([node('a'), node('b')]), { ...web, replicas: ['web-7', 'web-3'] }, { evalId: 'e' });
    assert.deepEqual(plan.placements.map((p) => p.replica), ['web-7', 'web-3']);
  });

  it('does not modify the snapshot or the request when it places replicas', () => {
    const snap = cluster([node('a', { allocated: res(0, 0, 0) })], [{ workload: 'web', replica: 'x', node: 'a', resources: res(1, 1, 1) }]);
    const before = JSON.stringify(snap);
    const req = { ...web, placement: { nodeSelector: {}, spread: true, maxPerNode: 0 } };
    const reqBefore = JSON.stringify(req);
    schedule(snap, req, { evalId: 'e' });
    assert.equal(JSON.stringify(snap), before);
    assert.equal(JSON.stringify(req), reqBefore);
  });

  it('accepts proto-shaped placement specs when fields are all present', () => {
    const plan = schedule(cluster([node('a'), node('b')]), { ...web, replicas: 2, placement: { nodeSelector: {}, spread: true, maxPerNode: 0 } }, { evalId: 'e' });
    assert.deepEqual(shape(plan), [1, 1]);
  });
});

describe('schedule determinism', () => {
  const snap = cluster(Array.from({ length: 20 }, (_, i) => node(`n${String(i).padStart(2, '0')}`)));
  const req: PlacementRequest = { workload: 'web', replicas: 30, resources: res(100, 64 * MiB, 0) };

  it('returns an identical plan when snapshot, request and evalId are the same', () => {
    const a = schedule(snap, req, { evalId: 'abc' });
    const b = schedule(snap, req, { evalId: 'abc' });
    assert.deepEqual(a, b);
  });

  it('returns the same plan when the snapshot lists nodes in another order', () => {
    const a = schedule(snap, req, { evalId: 'abc' });
    const b = schedule({ ...snap, nodes: [...snap.nodes].reverse() }, req, { evalId: 'abc' });
    assert.deepEqual(a, b);
  });

  it('breaks ties differently when the evalId differs', () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 20; i++) firsts.add(schedule(snap, req, { evalId: `eval-${i}` }).placements[0]?.node ?? '');
    assert.ok(firsts.size > 3, `expected several first nodes across 20 evaluation ids, got ${[...firsts].join(',')}`);
    // Only ties move: every plan still spreads 30 over 20 nodes as ten 2s and ten 1s.
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(shape(schedule(snap, req, { evalId: `eval-${i}` })), [...Array(10).fill(1), ...Array(10).fill(2)]);
    }
  });

  it('gives the same plan for every evalId when no two nodes tie', () => {
    const distinct = cluster(Array.from({ length: 6 }, (_, i) => node(`n${i}`, { allocated: res(i * 100, i * 100 * MiB, 0) })));
    const base = schedule(distinct, { ...req, replicas: 4 }, { evalId: 'x' });
    assert.deepEqual(base.placements.map((p) => p.node), ['n0', 'n1', 'n2', 'n3']);
    for (let i = 0; i < 20; i++) assert.deepEqual(schedule(distinct, { ...req, replicas: 4 }, { evalId: `y${i}` }).placements, base.placements);
  });
});

describe('withPlacements', () => {
  it('lets the next workload see the first one when two are scheduled in a row', () => {
    const snap = cluster([node('a', { capacity: res(1000, GiB, 100) }), node('b', { capacity: res(1000, GiB, 100) })]);
    const first: PlacementRequest = { workload: 'one', replicas: ['o1', 'o2'], resources: res(600, 0, 0) };
    const p1 = schedule(snap, first, { evalId: 'e' });
    assert.deepEqual(shape(p1), [1, 1]);
    const next = withPlacements(snap, first, p1, { createdAt: 5 });
    assert.equal(next.replicas.length, 2);
    assert.equal(next.replicas[0]?.createdAt, 5);
    const p2 = schedule(next, { workload: 'two', replicas: 1, resources: res(600, 0, 0) }, { evalId: 'e' });
    assert.equal(p2.unplaced?.summary, '0/2 nodes: 2 insufficient cpu');
  });

  it('adds to explicit allocations and replaces pending entries when they are placed', () => {
    const snap = cluster([node('a', { allocated: res(100, 0, 0) })], [{ workload: 'w', replica: 'r1', resources: res(50, 0, 0) }]);
    const req: PlacementRequest = { workload: 'w', replicas: ['r1'], resources: res(50, 0, 0) };
    const next = withPlacements(snap, req, schedule(snap, req, { evalId: 'e' }));
    assert.deepEqual(next.nodes[0]?.allocated, res(150, 0, 0));
    assert.deepEqual(next.replicas, [{ workload: 'w', replica: 'r1', node: 'a', resources: res(50, 0, 0) }]);
  });
});

describe('schedule input validation', () => {
  const snap = cluster([node('a')]);
  const cases: Array<{ name: string; run: () => unknown; field: string; message: RegExp }> = [
    { name: 'negative cpu', run: () => schedule(snap, { ...web, resources: res(-1, 0) }, { evalId: 'e' }), field: 'request.resources.cpuMillis', message: /^failed to schedule workload "web": request\.resources\.cpuMillis: expected a whole number >= 0, got -1$/ },
    { name: 'fractional memory', run: () => schedule(snap, { ...web, resources: res(1, 0.5) }, { evalId: 'e' }), field: 'request.resources.memoryBytes', message: /got 0\.5/ },
    { name: 'negative replica count', run: () => schedule(snap, { ...web, replicas: -2 }, { evalId: 'e' }), field: 'request.replicas', message: /expected a whole number from 0 to 1000000 or a list of replica ids, got -2/ },
    { name: 'duplicate replica ids', run: () => schedule(snap, { ...web, replicas: ['x', 'x'] }, { evalId: 'e' }), field: 'request.replicas[1]', message: /a replica id not listed before, got "x"/ },
    { name: 'empty workload', run: () => schedule(snap, { ...web, workload: '' }, { evalId: 'e' }), field: 'request.workload', message: /expected a non-empty string/ },
    { name: 'bad maxPerNode', run: () => schedule(snap, { ...web, placement: { maxPerNode: -1 } }, { evalId: 'e' }), field: 'request.placement.maxPerNode', message: /got -1/ },
    { name: 'non-string selector value', run: () => schedule(snap, { ...web, placement: { nodeSelector: { zone: 3 as unknown as string } } }, { evalId: 'e' }), field: 'request.placement.nodeSelector.zone', message: /a string label value, got 3/ },
    { name: 'empty requiredNodes', run: () => schedule(snap, { ...web, requiredNodes: [] }, { evalId: 'e' }), field: 'request.requiredNodes', message: /a non-empty list of node names/ },
    { name: 'empty evalId', run: () => schedule(snap, web, { evalId: '' }), field: 'opts.evalId', message: /a non-empty evaluation id/ },
    { name: 'a snapshot without replicas', run: () => schedule({ nodes: [] } as unknown as ClusterSnapshot, web, { evalId: 'e' }), field: 'snapshot', message: /expected an object with nodes and replicas lists, got an object/ },
    { name: 'duplicate node names', run: () => schedule(cluster([node('a'), node('a')]), web, { evalId: 'e' }), field: 'snapshot.nodes[1].name', message: /a node name not used by an earlier node, got "a"/ },
    { name: 'NaN capacity', run: () => schedule(cluster([node('a', { capacity: res(NaN, 1) })]), web, { evalId: 'e' }), field: 'snapshot.nodes[0].capacity.cpuMillis', message: /a whole number >= 0 or Infinity, got NaN/ },
    { name: 'infinite allocation', run: () => schedule(cluster([node('a', { allocated: res(Infinity, 0) })]), web, { evalId: 'e' }), field: 'snapshot.nodes[0].allocated.cpuMillis', message: /got Infinity/ },
    {
      name: 'replica already placed',
      run: () => schedule(cluster([node('a')], [{ workload: 'web', replica: 'w1', node: 'a', resources: res(0, 0) }]), { ...web, replicas: ['w1'] }, { evalId: 'e' }),
      field: 'request.replicas',
      message: /replica "w1" is already placed on node "a"; expected only pending replicas/,
    },
  ];
  for (const c of cases) {
    it(`throws SchedulerInputError naming ${c.field} when given ${c.name}`, () => {
      assert.throws(c.run, (err: unknown) => {
        assert.ok(err instanceof SchedulerInputError, `expected SchedulerInputError, got ${String(err)}`);
        assert.equal(err.code, 'invalid_argument');
        assert.equal(err.field, c.field);
        assert.match(err.message, c.message);
        return true;
      });
    });
  }
});
