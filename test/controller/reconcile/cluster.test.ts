/**
 * The reconciler end to end inside one process: real etcd, real NATS, the
 * controller's real components wired as main.ts wires them, and three fake
 * agents (real gRPC servers and real NATS publishers, containers in memory).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { connect } from 'nats';
import { ContainerSpec, Event, type LogLine } from '../../../proto/gen/berth/v1/types.js';
import type { RunRequest } from '../../../proto/gen/berth/v1/controller.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { EVENTS_SUBJECT } from '../../../controller/nodes/index.js';
import { waitFor } from '../../harness/index.js';
import { call, connectClients, grpcError, manifest, type Clients, useEtcdAndNats } from '../helpers.js';
import type { FakeAgent } from './fake-agent.js';
import { startController, type TestController } from './controller.js';
import { startFakeCluster, type FakeCluster } from './fake-cluster.js';

describe('reconciler with fake agents', function () {
  this.timeout(120_000);
  const svc = useEtcdAndNats();
  let prefix: string;
  let ctl: TestController | undefined;
  let ctl2: TestController | undefined;
  let c: Clients | undefined;
  let agents: FakeAgent[] = [];
  let fc: FakeCluster | undefined;

  beforeEach(async () => {
    fc = await startFakeCluster(svc.etcd, svc.nats, svc.raw);
    ({ prefix, ctl, clients: c, agents } = fc);
  });
  afterEach(async () => {
    await ctl2?.stop();
    ctl2 = undefined;
    await fc?.stop();
    fc = undefined;
    c = undefined;
    agents = [];
    ctl = undefined;
  });

  const clients = (): Clients => c as Clients;
  const apply = (text: string) => call(clients().workloads, clients().workloads.apply, { manifest: text, source: 'test.yaml', dryRun: false });
  const scale = (name: string, replicas: number) => call(clients().workloads, clients().workloads.scale, { name, replicas });
  const counts = (): number[] => agents.map((a) => a.runningCount());
  const total = (): number => counts().reduce((x, y) => x + y, 0);
  const waitForEvents = async (reasons: string[]): Promise<Event[]> => {
    let events: Event[] = [];
    await waitFor(`events ${reasons.join(', ')}`, async () => {
      events = (await call(clients().events, clients().events.list, { sinceUnixMs: 0, limit: 0, workload: '', kind: '' })).events;
      if (!reasons.every((r) => events.some((e) => e.reason === r))) throw new Error(`have ${[...new Set(events.map((e) => e.reason))].join(", ")}`);
      return true;
    }, 10_000);
    return events;
  };
  const runCalls = (): number[] => agents.map((a) => new Set(a.calls.filter((k) => k.method === 'RunContainer').map((k) => k.id)).size);

  it('spreads 6 replicas 2/2/2, scales 6 -> 2 -> 5 and reports status', async () => {
    await apply(manifest('web', { replicas: 6, image: '127.0.0.1:5000/web:1' }));
    await waitFor('6 replicas running', () => total() === 6, 15_000);
    assert.deepEqual(counts(), [2, 2, 2]);
    assert.deepEqual(runCalls(), [2, 2, 2]);
    const records = await (ctl as TestController).store.listContainerRecords({ workload: 'web' });
    assert.equal(records.length, 6);
    assert.ok(records.every((r) => /^web-\d-[0-9a-f]{5}$/.test(r.name) && r.desiredState === ContainerState.CONTAINER_STATE_RUNNING));
    await waitFor('status 6/6 ready', async () => {
      const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
      return w.status?.ready === 6 && w.status.running === 6 && w.status.desired === 6;
    }, 15_000);

    await scale('web', 2);
    await waitFor('2 replicas running', () => total() === 2 && agents.every((a) => a.containers.size <= 1), 15_000);
    await waitFor('2 records', async () => (await (ctl as TestController).store.listContainerRecords()).length === 2, 15_000);
    assert.equal(Math.max(...counts()), 1, 'the two that stay are on different nodes');

    await scale('web', 5);
    await waitFor('5 replicas running', () => total() === 5, 15_000);
    assert.deepEqual([...counts()].sort(), [1, 2, 2]);

    // ContainerService lists the records with the agents' status and streams logs from the agent.
    const list = await call(clients().containers, clients().containers.list, { all: false, selector: { app: 'web' }, node: '', workload: '' });
    assert.equal(list.containers.length, 5);
    assert.ok(list.containers.every((x) => x.status?.state === ContainerState.CONTAINER_STATE_RUNNING && x.workload === 'web'));
    const first = list.containers[0];
    assert.ok(first);
    const lines: LogLine[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = clients().containers.logs({ container: first.name, follow: false, tail: 0, sinceUnixMs: 0 });
      s.on('data', (l: LogLine) => lines.push(l));
      s.on('end', () => resolve());
      s.on('error', reject);
    });
    assert.equal(Buffer.from(lines[0]?.data ?? new Uint8Array()).toString(), `hello from ${first.name} on ${first.node}\n`);
    assert.equal(lines[0]?.source, first.name);
  });

  it('re-places the replicas of a silent node within 10 s and removes them when it comes back', async () => {
    await apply(manifest('web', { replicas: 6, image: '127.0.0.1:5000/web:1' }));
    await waitFor('6 replicas running', () => total() === 6, 15_000);
    const n3 = agents[2] as FakeAgent;
    const old = [...n3.containers.keys()];
    assert.equal(old.length, 2);
    const published: Event[] = [];
    const nc = await connect({ servers: svc.nats.url });
    nc.subscribe(EVENTS_SUBJECT, { callback: (_err, msg) => published.push(Event.decode(msg.data)) });
    await nc.flush();
    n3.pause();
    // NotReady after 5 s without heartbeats, then re-placed: well within 10 s.
    await waitFor('replicas re-placed on n1 and n2', () => (agents[0]?.runningCount() ?? 0) + (agents[1]?.runningCount() ?? 0) === 6, 10_000);
    assert.deepEqual(counts(), [3, 3, 2], 'n3 still holds its two while it is silent');
    const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
    assert.equal(w.spec?.replicas, 6);

    n3.resume();
    await waitFor('n3 told to remove its moved-away replicas', () => n3.containers.size === 0, 15_000);
    assert.deepEqual(old.filter((id) => n3.calls.some((k) => k.method === 'RemoveContainer' && k.id === id)).length, 2);
    await waitFor('records of n3 deleted', async () => (await (ctl as TestController).store.listContainerRecords({ node: 'n3' })).length === 0, 15_000);
    // Give the reconciler a few more passes: nothing more may start or stop.
    const passes = (ctl as TestController).reconciler.passes;
    await waitFor('more passes', () => (ctl as TestController).reconciler.passes >= passes + 3, 15_000);
    assert.equal(total(), 6);
    assert.equal((await (ctl as TestController).store.listContainerRecords()).length, 6);

    // Every decision is an event, kept in etcd (EventService) and published on NATS.
    const listed = await waitForEvents(['NodeNotReady', 'Rescheduled', 'Scheduled', 'Started', 'NodeReady', 'Removed']);
    const lost = listed.filter((e) => e.reason === 'Rescheduled');
    assert.equal(lost.length, 2);
    assert.ok(lost.every((e) => e.node === 'n3' && e.workload === 'web' && e.severity === 'warning'));
    const reasons = new Set(published.map((e) => e.reason));
    await nc.close();
    for (const r of ['NodeNotReady', 'Rescheduled', 'NodeReady', 'Removed']) assert.ok(reasons.has(r), `published ${r}`);
    const onlyNodes = await call(clients().events, clients().events.list, { sinceUnixMs: 0, limit: 0, workload: '', kind: 'node' });
    assert.ok(onlyNodes.events.length >= 2 && onlyNodes.events.every((e) => e.kind === 'node'));
    await assert.rejects(call(clients().events, clients().events.list, { sinceUnixMs: 0, limit: 0, workload: '', kind: 'pod' }), grpcError(grpc.status.INVALID_ARGUMENT, /kind: expected one of workload, container, node, got "pod"/));
  });

  it('rolls a new image out one replica at a time, never below the desired count running', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await waitFor('3 replicas running', () => total() === 3, 15_000);
    let lowest = Infinity;
    let highest = 0;
    const poll = setInterval(() => {
      lowest = Math.min(lowest, total());
      highest = Math.max(highest, agents.reduce((n, a) => n + a.containers.size, 0));
    }, 2);
    try {
      const res = await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:2' }));
      assert.equal(res.results[0]?.revision, 2);
      const images = (): string[] => agents.flatMap((a) => [...a.containers.values()].map((x) => x.spec?.image ?? ''));
      await waitFor('every replica on web:2', () => images().length === 3 && images().every((i) => i.endsWith('web:2')), 20_000);
      await waitFor('status complete', async () => {
        const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
        return w.status?.conditions.some((x) => x.type === 'Progressing' && x.reason === 'Complete') === true && w.status.revision === 2;
      }, 15_000);
    } finally {
      clearInterval(poll);
    }
    assert.ok(lowest >= 3, `running replicas dropped to ${lowest} during the update (maxUnavailable 0)`);
    assert.ok(highest <= 4, `${highest} containers existed at once (maxSurge 1)`);
    const records = await (ctl as TestController).store.listContainerRecords({ workload: 'web' });
    assert.deepEqual(records.map((r) => r.revision), [2, 2, 2]);
  });

  it('lets a second controller adopt records and observed state without starting anything twice', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await waitFor('3 replicas running', () => total() === 3, 15_000);
    ctl2 = await startController(svc.etcd.url, svc.nats.url, prefix, 'ctl-b');
    const before = agents.map((a) => a.calls.filter((k) => k.method === 'RunContainer').length);
    await (ctl as TestController).stop();
    ctl = undefined;
    await waitFor('the second controller leads', () => ctl2?.election.isLeader() === true, 10_000);
    await waitFor('passes on the new leader', () => (ctl2?.reconciler.passes ?? 0) >= 3, 15_000);
    c?.close();
    c = connectClients(ctl2.address);
    await scale('web', 4);
    await waitFor('4 replicas running', () => total() === 4, 15_000);
    const after = agents.map((a) => a.calls.filter((k) => k.method === 'RunContainer').length);
    const started = after.reduce((x, y) => x + y, 0) - before.reduce((x, y) => x + y, 0);
    // The new leader may repeat RunContainer for adopted records (idempotent), but only one new container exists.
    assert.ok(started >= 1);
    assert.equal(new Set(agents.flatMap((a) => [...a.containers.keys()])).size, 4);
    assert.equal((await ctl2.store.listContainerRecords()).length, 4);
  });

  it('refuses to remove a running container without force, and replaces a removed replica', async () => {
    await apply(manifest('web', { replicas: 2, image: '127.0.0.1:5000/web:1' }));
    await waitFor('2 replicas running', () => total() === 2, 15_000);
    const list = await call(clients().containers, clients().containers.list, { all: true, selector: {}, node: '', workload: 'web' });
    const victim = list.containers[0];
    assert.ok(victim);
    await assert.rejects(
      call(clients().containers, clients().containers.remove, { containers: [victim.name], force: false }),
      grpcError(grpc.status.FAILED_PRECONDITION, /failed to remove container "web-\d-[0-9a-f]{5}": it is running/),
    );
    await assert.rejects(
      call(clients().containers, clients().containers.remove, { containers: ['nope'], force: true }),
      grpcError(grpc.status.NOT_FOUND, /container "nope" not found/),
    );
    const res = await call(clients().containers, clients().containers.remove, { containers: [victim.id.slice(0, 12)], force: true });
    assert.deepEqual(res.removed, [victim.name]);
    await waitFor('a replacement runs', () => total() === 2 && !agents.some((a) => a.containers.has(victim.id)), 15_000);
    const runsOfVictim = agents.flatMap((a) => a.calls).filter((k) => k.method === 'RunContainer' && k.id === victim.id).length;
    assert.equal(runsOfVictim, 1, 'the removed replica is not started again');
    assert.equal((await (ctl as TestController).store.listContainerRecords()).length, 2);
  });

  it('runs one-off containers where the scheduler (or --node) says, with clear errors for clashes and bad input', async () => {
    const spec = (image: string) => ({ ...ContainerSpec.decode(new Uint8Array()), image, command: ['sleep', '100'] });
    const run = (req: Partial<RunRequest>) => call(clients().containers, clients().containers.run, { name: '', node: '', nodeSelector: {}, spec: spec('127.0.0.1:5000/busybox'), ...req });
    const one = await run({ name: 'job-1', node: 'n2' });
    assert.equal(one.node, 'n2');
    assert.equal(one.workload, '');
    assert.equal(one.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.equal(one.spec?.image, '127.0.0.1:5000/busybox:latest');
    assert.ok(agents[1]?.containers.has(one.id));
    const generated = await run({});
    assert.match(generated.name, /^[a-z]+-[a-z]+(-\d+)?$/);
    await assert.rejects(run({ name: 'job-1' }), grpcError(grpc.status.ALREADY_EXISTS, /failed to run container "job-1": the name is already in use/));
    await assert.rejects(run({ name: 'job-2', node: 'ghost' }), grpcError(grpc.status.FAILED_PRECONDITION, /failed to run container "job-2": no node can take it: 0\/3 nodes: 3 not a required node/));
    await assert.rejects(run({ name: 'job-3', spec: spec('Not An Image') }), grpcError(grpc.status.INVALID_ARGUMENT, /spec\.image/));
    await assert.rejects(run({ name: 'Bad_Name' }), grpcError(grpc.status.INVALID_ARGUMENT, /^name: /));
    assert.equal((await (ctl as TestController).store.listContainerRecords()).length, 2, 'nothing recorded for refused runs');
    // The reconciler leaves one-offs alone: no restart, no re-placement, no orphan removal.
    const passes = (ctl as TestController).reconciler.passes;
    await waitFor('more passes', () => (ctl as TestController).reconciler.passes >= passes + 2, 15_000);
    assert.equal(total(), 2);
    const listed = await call(clients().containers, clients().containers.list, { all: true, selector: {}, node: 'n2', workload: '' });
    assert.ok(listed.containers.some((x) => x.name === 'job-1'));
    const removed = await call(clients().containers, clients().containers.remove, { containers: ['job-1'], force: true });
    assert.deepEqual(removed.removed, ['job-1']);
    assert.equal(agents[1]?.containers.has(one.id), false);
  });

  it('records StartFailed events and an unavailable status when the agents cannot start a replica', async () => {
    await apply(manifest('bad', { replicas: 2, image: '127.0.0.1:5000/missing:1' }));
    const events = await waitForEvents(['StartFailed']);
    const failed = events.filter((e) => e.reason === 'StartFailed');
    assert.match(failed[0]?.message ?? '', /^failed to start "bad-\d-[0-9a-f]{5}" on node "n\d": failed to pull "127\.0\.0\.1:5000\/missing:1": manifest unknown; retrying in \d+ s$/);
    assert.ok(failed.every((e) => e.workload === 'bad' && e.severity === 'warning'));
    await waitFor('status unavailable', async () => {
      const w = await call(clients().workloads, clients().workloads.get, { name: 'bad' });
      return w.status?.running === 0 && w.status.conditions.some((x) => x.type === 'Available' && !x.status);
    }, 10_000);
    assert.equal((await (ctl as TestController).store.listContainerRecords({ workload: 'bad' })).length, 2, 'retried with the same records, not new ones');
  });

  it('rolls back by itself when the new revision cannot start, and records why', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await waitFor('3 replicas running', () => total() === 3, 15_000);
    const first = new Set(agents.flatMap((a) => [...a.containers.keys()]));
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/missing:2' }));
    const events = await waitForEvents(['RolledBack']);
    assert.match(events.find((e) => e.reason === 'RolledBack')?.message ?? '', /^rolled back revision 2 to revision 1 \(now revision 3\): "web-\d-[0-9a-f]{5}" failed to start 3 times$/);
    const history = await call(clients().workloads, clients().workloads.history, { name: 'web' });
    assert.deepEqual(history.revisions.map((r) => [r.revision, r.cause.replace(/"web-\d-[0-9a-f]{5}"/, '"web-N"'), r.spec?.image]), [
      [1, 'apply', '127.0.0.1:5000/web:1'], [2, 'apply', '127.0.0.1:5000/missing:2'],
      [3, 'rollback to 1: revision 2 failed: "web-N" failed to start 3 times', '127.0.0.1:5000/web:1'],
    ]);
    await waitFor('only the first replicas and their records left', async () => {
      const records = await (ctl as TestController).store.listContainerRecords({ workload: 'web' });
      return records.length === 3 && records.every((r) => first.has(r.id));
    }, 15_000);
    assert.equal(total(), 3);
    assert.deepEqual(new Set(agents.flatMap((a) => [...a.containers.keys()])), first, 'the working replicas were never touched');
  });

  it('shows what the replicas reserve on each node in NodeService.List', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1', extra: '  resources:\n    cpu: 250m\n    memory: 64Mi\n    pids: 50' }));
    await waitFor('3 replicas running', () => total() === 3, 15_000);
    const { nodes } = await call(clients().nodes, clients().nodes.list, {});
    assert.deepEqual(nodes.map((n) => [n.spec?.name, n.status?.allocated]), [
      ['n1', { cpuMillis: 250, memoryBytes: 64 * 1024 * 1024, pids: 50 }],
      ['n2', { cpuMillis: 250, memoryBytes: 64 * 1024 * 1024, pids: 50 }],
      ['n3', { cpuMillis: 250, memoryBytes: 64 * 1024 * 1024, pids: 50 }],
    ]);
  });

  it('drains a node one replica at a time without dropping below the desired count', async () => {
    await apply(manifest('web', { replicas: 6, image: '127.0.0.1:5000/web:1' }));
    await waitFor('6 replicas running', () => total() === 6, 15_000);
    let lowest = Infinity;
    let highest = 0;
    const poll = setInterval(() => {
      lowest = Math.min(lowest, total());
      highest = Math.max(highest, agents.reduce((n, a) => n + a.containers.size, 0));
    }, 2);
    try {
      const drained = await call(clients().nodes, clients().nodes.drain, { name: 'n1' });
      assert.equal(drained.spec?.cordoned, true);
      assert.deepEqual(await (ctl as TestController).store.listDrainingNodes(), ['n1']);
      await waitFor('n1 empty and 6 running elsewhere', () => agents[0]?.containers.size === 0 && total() === 6, 20_000);
    } finally {
      clearInterval(poll);
    }
    assert.ok(lowest >= 6, `running replicas dropped to ${lowest} during the drain (maxUnavailable 0)`);
    assert.ok(highest <= 7, `${highest} containers existed at once (maxSurge 1)`);
    assert.deepEqual(counts(), [0, 3, 3]);
    assert.ok((await waitForEvents(['Drained'])).filter((e) => e.reason === 'Drained').every((e) => e.node === 'n1'));
    const back = await call(clients().nodes, clients().nodes.cordon, { name: 'n1', cordoned: false });
    assert.equal(back.spec?.cordoned, false);
    assert.deepEqual(await (ctl as TestController).store.listDrainingNodes(), []);
    await assert.rejects(call(clients().nodes, clients().nodes.drain, { name: 'ghost' }), grpcError(grpc.status.NOT_FOUND, /node "ghost" not found/));
  });
});
