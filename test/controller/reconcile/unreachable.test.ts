/**
 * A node that dies in the middle of a rolling update: until it is NotReady
 * (5 s without a heartbeat) the reconciler keeps failing to start new
 * replicas there. Those failures say nothing about the new revision and must
 * not roll it back; once the node is lost its replicas go elsewhere and the
 * rollout finishes. Real etcd and NATS, the controller's real components and
 * fake agents (real gRPC servers and NATS traffic).
 */
import assert from 'node:assert/strict';
import type { Event } from '../../../proto/gen/berth/v1/types.js';
import { waitFor } from '../../harness/index.js';
import { call, manifest, type Clients, useEtcdAndNats } from '../helpers.js';
import type { FakeAgent } from './fake-agent.js';
import { startFakeCluster, type FakeCluster } from './fake-cluster.js';

describe('reconciler when a node becomes unreachable during a rollout', function () {
  this.timeout(120_000);
  const svc = useEtcdAndNats();
  let c: Clients | undefined;
  let agents: FakeAgent[] = [];
  let fc: FakeCluster | undefined;

  beforeEach(async () => {
    fc = await startFakeCluster(svc.etcd, svc.nats, svc.raw);
    ({ clients: c, agents } = fc);
  });
  afterEach(async () => {
    await fc?.stop();
    fc = undefined;
    c = undefined;
    agents = [];
  });

  it('does not roll back a revision whose replicas fail to start only because their node is unreachable', async () => {
    const clients = c as Clients;
    const apply = (text: string) => call(clients.workloads, clients.workloads.apply, { manifest: text, source: 'test.yaml', dryRun: false });
    const events = async (): Promise<Event[]> => (await call(clients.events, clients.events.list, { sinceUnixMs: 0, limit: 0, workload: 'web', kind: '' })).events;
    const [n1, n2, n3] = agents as [FakeAgent, FakeAgent, FakeAgent];
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1', extra: '  update: { maxSurge: 3, maxUnavailable: 0 }' }));
    await waitFor('one replica on each node', () => agents.every((a) => a.runningCount() === 1), 15_000);

    // n3 dies (its API and its heartbeats); a surge of 3 puts one new replica on each node, n3 included.
    await n3.stop();
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:2', extra: '  update: { maxSurge: 3, maxUnavailable: 0 }' }));
    const images = (): string[] => [n1, n2].flatMap((a) => [...a.containers.values()].map((x) => x.spec?.image ?? ''));
    let all: Event[] = [];
    // n3 is NotReady 5 s after its last heartbeat; by then its new replica has failed to start several times (0.5, 1, 2 s apart).
    await waitFor('the rollout to finish on n1 and n2, or to be rolled back', async () => {
      all = await events();
      if (all.some((e) => e.reason === 'RolledBack')) return true;
      return all.some((e) => e.reason === 'Rescheduled' && e.node === 'n3') && images().length === 3 && images().every((i) => i.endsWith('web:2'));
    }, 30_000, 100);
    assert.deepEqual(all.filter((e) => e.reason === 'RolledBack').map((e) => e.message), [], 'no rollback');
    assert.ok(all.some((e) => e.reason === 'StartFailed' && e.node === 'n3'), 'a start on n3 failed before it was lost');
    const history = await call(clients.workloads, clients.workloads.history, { name: 'web' });
    assert.deepEqual(history.revisions.map((r) => [r.revision, r.cause, r.spec?.image]), [[1, 'apply', '127.0.0.1:5000/web:1'], [2, 'apply', '127.0.0.1:5000/web:2']]);
  });
});
