import assert from 'node:assert/strict';
import { SchedulerInputError, chooseRemovals } from '../../../controller/scheduler/index.js';
import type { ExistingReplica } from '../../../controller/scheduler/index.js';
import { cluster, node, res } from './fixtures.js';

function rep(replica: string, nodeName: string | undefined, createdAt?: number, workload = 'web'): ExistingReplica {
  return { workload, replica, node: nodeName, resources: res(100, 0, 0), ...(createdAt === undefined ? {} : { createdAt }) };
}

describe('chooseRemovals', () => {
  it('takes from the node with the most replicas, newest first, when scaling 6 -> 2 on a lopsided cluster', () => {
    const snap = cluster(
      [node('a'), node('b'), node('c')],
      [rep('a1', 'a', 1), rep('a2', 'a', 2), rep('a3', 'a', 3), rep('a4', 'a', 4), rep('b1', 'b', 5), rep('c1', 'c', 6)],
    );
    const out = chooseRemovals(snap, { workload: 'web', count: 4 });
    // a: 4 -> removes a4, a3 (a then has 2, b and c 1), then a2 (a still most), then the newest of a/b/c at 1 each: c1.
    assert.deepEqual(out.map((r) => r.replica), ['a4', 'a3', 'a2', 'c1']);
    assert.ok(out.every((r) => r.why === 'most-on-node'));
  });

  it('removes pending, then lost, not-ready and cordoned-node replicas first when there are some', () => {
    const snap = cluster(
      [node('a'), node('b', { ready: false }), node('c', { cordoned: true }), node('d')],
      [rep('d1', 'd', 1), rep('d2', 'd', 2), rep('c1', 'c', 3), rep('b1', 'b', 4), rep('x1', 'gone', 5), rep('p1', undefined, 0), rep('a1', 'a', 9)],
    );
    const out = chooseRemovals(snap, { workload: 'web', count: 6 });
    assert.deepEqual(out, [
      { replica: 'p1', node: undefined, why: 'pending' },
      { replica: 'x1', node: 'gone', why: 'node-missing' },
      { replica: 'b1', node: 'b', why: 'node-not-ready' },
      { replica: 'c1', node: 'c', why: 'node-cordoned' },
      { replica: 'd2', node: 'd', why: 'most-on-node' },
      // a and d now hold one each: a1 is newer.
      { replica: 'a1', node: 'a', why: 'most-on-node' },
    ]);
  });

  it('leaves other workloads alone and uses ids to settle equal ages when createdAt is missing', () => {
    const snap = cluster([node('a'), node('b')], [rep('w1', 'a'), rep('w2', 'a'), rep('z9', 'a', 100, 'other'), rep('w3', 'b')]);
    assert.deepEqual(chooseRemovals(snap, { workload: 'web', count: 2 }).map((r) => r.replica), ['w2', 'w3']);
  });

  it('returns the same choice when replicas are listed in another order', () => {
    const reps = [rep('a1', 'a', 1), rep('a2', 'a', 1), rep('b1', 'b', 1), rep('b2', 'b', 1), rep('c1', 'c', 2)];
    const snap = cluster([node('a'), node('b'), node('c')], reps);
    const again = cluster([node('c'), node('b'), node('a')], [...reps].reverse());
    assert.deepEqual(chooseRemovals(snap, { workload: 'web', count: 3 }), chooseRemovals(again, { workload: 'web', count: 3 }));
  });

  it('returns nothing when the count is 0 and everything when it equals the replicas', () => {
    const snap = cluster([node('a')], [rep('w1', 'a'), rep('w2', 'a')]);
    assert.deepEqual(chooseRemovals(snap, { workload: 'web', count: 0 }), []);
    assert.equal(chooseRemovals(snap, { workload: 'web', count: 2 }).length, 2);
  });

  it('throws naming request.count when asked to remove more replicas than exist', () => {
    const snap = cluster([node('a')], [rep('w1', 'a')]);
    assert.throws(
      () => chooseRemovals(snap, { workload: 'web', count: 3 }),
      (err: unknown) =>
        err instanceof SchedulerInputError &&
        err.field === 'request.count' &&
        err.message === 'failed to choose replicas of workload "web" to remove: request.count: expected a whole number from 0 to 1 (the workload\'s replicas), got 3',
    );
  });
});
