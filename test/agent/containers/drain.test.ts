/**
 * Connection draining in the container manager on a real node: a workload
 * replica with ports is marked draining and reported on NATS while it still
 * runs, and gets its stop signal only after the drain delay, both on stop and
 * on a forced remove; one-off containers and replicas without ports stop at
 * once; a drain delay above the maximum is refused.
 */
import assert from 'node:assert/strict';
import { connect, type NatsConnection, type Subscription } from 'nats';
import { MAX_DRAIN_SECONDS } from '../../../lib/index.js';
import { startNats, startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { ContainerReport } from '../../../proto/gen/berth/v1/status.js';
import { ContainerState, type Container } from '../../../proto/gen/berth/v1/types.js';
import { containersSubject } from '../../../agent/status/index.js';
import { AgentStack, eventually, newId } from './stack.js';
import { Api, runRequest } from './grpc.js';

const RUNNING = ContainerState.CONTAINER_STATE_RUNNING;
const EXITED = ContainerState.CONTAINER_STATE_EXITED;
/** Prints "term" when the stop signal arrives, then exits. */
const SERVE = ['sh', '-c', "trap 'echo term; exit 0' TERM; echo up; while true; do sleep 0.1; done"];

describe('ContainerManager connection draining', function () {
  this.timeout(120_000);
  let reg: RegistryWithImages;
  let nats: Awaited<ReturnType<typeof startNats>>;
  let nc: NatsConnection;
  let stack: AgentStack;
  let api: Api;
  let busybox: string;
  let sub: Subscription;
  /** Every container state reported on NATS, and removals, in order. */
  let seen: ({ container: Container } | { removed: string })[];

  before(async () => {
    [reg, nats] = await Promise.all([startRegistryWithImages(['busybox']), startNats()]);
    busybox = reg.images['busybox']!.reference;
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
    await reg?.stop();
  });
  beforeEach(async () => {
    const node = `n${newId().slice(0, 8)}`;
    seen = [];
    sub = nc.subscribe(containersSubject(node));
    void (async () => {
      for await (const m of sub) {
        const r = ContainerReport.decode(m.data);
        for (const c of r.containers) seen.push({ container: c });
        for (const id of r.removed) seen.push({ removed: id });
      }
    })();
    await nc.flush();
    stack = await new AgentStack({ node, nats: nats.url }).start();
    api = new Api(stack.api);
  });
  afterEach(async () => {
    sub.unsubscribe();
    await stack.destroy();
  });

  const statesOf = (id: string): Container[] => seen.flatMap((s) => ('container' in s && s.container.id === id ? [s.container] : []));
  const replica = (id: string, ports: boolean, drainSeconds?: number) => runRequest(id, busybox, {
    command: SERVE, ...(ports ? { ports: [{ name: 'http', container: 80, publish: 0, protocol: 'tcp' }] } : {}), ...(drainSeconds !== undefined ? { drainSeconds } : {}),
  }, { workload: 'web', revision: 1, replica: 0 });
  const up = (id: string) => eventually('the container to print up', async () => ((await api.logText(id)).includes('up') ? true : undefined));

  it('reports a replica with ports as draining while it still runs, and sends the stop signal only after the drain delay', async () => {
    const id = newId();
    await api.run(replica(id, true, 2));
    await up(id);
    const stopping = api.stop(id, 5);
    const draining = await eventually('a draining report', () => statesOf(id).find((c) => c.status?.draining));
    assert.equal(draining.status?.state, RUNNING);
    // Draining: still running, still serving, no stop signal yet.
    const now = await api.get(id);
    assert.equal(now?.status?.state, RUNNING);
    assert.equal(now?.status?.draining, true);
    assert.ok(!(await api.logText(id)).includes('term'), 'the stop signal waits for the drain delay');
    const stopped = await stopping;
    assert.equal(stopped.status?.state, EXITED);
    assert.equal(stopped.status?.draining, false);
    assert.equal(stopped.status?.exitCode, 0);
    assert.match(await api.logText(id), /up\nterm\n/);
    // The order on the wire: running (not draining), running and draining, exited (not draining).
    await eventually('the exit report', () => statesOf(id).find((c) => c.status?.state === EXITED));
    const states = statesOf(id).map((c) => `${c.status?.state}/${c.status?.draining ? 'draining' : '-'}`);
    const firstDraining = states.indexOf(`${RUNNING}/draining`);
    assert.ok(firstDraining > 0 && states.indexOf(`${EXITED}/-`) > firstDraining, states.join(' '));
    assert.ok(!states.includes(`${EXITED}/draining`), states.join(' '));
  });

  it('drains a replica with ports (default delay) before a forced remove kills it', async () => {
    const id = newId();
    await api.run(replica(id, true));
    await up(id);
    const removing = api.remove(id, true);
    const draining = await eventually('a draining report', () => statesOf(id).find((c) => c.status?.draining));
    assert.equal(draining.status?.state, RUNNING);
    assert.equal((await api.get(id))?.status?.draining, true);
    await removing;
    assert.equal(await api.get(id), undefined);
    await eventually('the removal report', () => (seen.some((s) => 'removed' in s && s.removed === id) ? true : undefined));
    const events = seen.filter((s) => ('removed' in s ? s.removed === id : s.container.id === id));
    const drainAt = events.findIndex((s) => 'container' in s && s.container.status?.draining);
    const removedAt = events.findIndex((s) => 'removed' in s);
    assert.ok(drainAt >= 0 && removedAt > drainAt, JSON.stringify(events.map((s) => ('removed' in s ? 'removed' : s.container.status?.draining ? 'draining' : 'state'))));
  });

  it('stops a one-off container with ports, a replica without ports and a replica with drainSeconds 0 at once, without draining', async () => {
    const oneOff = newId();
    await api.run(runRequest(oneOff, busybox, { command: SERVE, ports: [{ name: 'http', container: 80, publish: 0, protocol: 'tcp' }] }));
    const noPorts = newId();
    await api.run(replica(noPorts, false));
    const zero = newId();
    await api.run(replica(zero, true, 0));
    for (const id of [oneOff, noPorts, zero]) {
      await up(id);
      const stopped = await api.stop(id, 5);
      assert.equal(stopped.status?.state, EXITED);
      assert.match(await api.logText(id), /term\n/);
    }
    await eventually('the exit reports', () => ([oneOff, noPorts, zero].every((id) => statesOf(id).some((c) => c.status?.state === EXITED)) ? true : undefined));
    for (const id of [oneOff, noPorts, zero]) assert.ok(!statesOf(id).some((c) => c.status?.draining), `no draining report of ${id}`);
  });

  it('refuses a drain delay above the maximum, naming spec.drain_seconds', async () => {
    const id = newId();
    await assert.rejects(api.run(replica(id, true, MAX_DRAIN_SECONDS + 1)), (err: Error & { code?: number }) => {
      assert.equal(err.code, 3);
      assert.match(err.message, new RegExp(`spec\\.drain_seconds: expected a whole number of seconds from 0 to ${MAX_DRAIN_SECONDS}, got ${MAX_DRAIN_SECONDS + 1}`));
      return true;
    });
    assert.equal(await api.get(id), undefined);
  });
});
