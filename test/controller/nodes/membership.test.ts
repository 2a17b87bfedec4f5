import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { Heartbeat } from '../../../proto/gen/berth/v1/status.js';
import { NodeSpec, NodeState } from '../../../proto/gen/berth/v1/types.js';
import { HeartbeatTracker, Membership, NatsHeartbeats, heartbeatSubject, parseHeartbeat } from '../../../controller/nodes/index.js';
import { EtcdStore, type LeaderElection } from '../../../controller/store/index.js';
import { startEtcd, startNats, waitFor, type Service } from '../../harness/index.js';

function hb(node: string, seq: number, instance = 'i1'): Heartbeat {
  return { node, unixMs: Date.now(), seq, instance, containers: 2 };
}

describe('HeartbeatTracker', () => {
  it('is Ready within the window and NotReady after it, with the age in the reason', () => {
    const t = new HeartbeatTracker(1000, 5000);
    assert.equal(t.status('n1', 2000).state, NodeState.NODE_STATE_NOT_READY);
    assert.match(t.status('n1', 4000).reason, /^no heartbeat since the controller started 3 s ago$/);
    t.observe('n1', hb('n1', 1), 10_000);
    assert.equal(t.status('n1', 14_999).state, NodeState.NODE_STATE_READY);
    const late = t.status('n1', 16_000);
    assert.equal(late.state, NodeState.NODE_STATE_NOT_READY);
    assert.equal(late.reason, 'no heartbeat for 6 s');
    assert.equal(late.lastHeartbeatUnixMs, 10_000);
  });

  it('ignores a replayed heartbeat of the same agent process but accepts a restarted agent', () => {
    const t = new HeartbeatTracker(0, 5000);
    assert.equal(t.observe('n1', hb('n1', 5), 1000), true);
    assert.equal(t.observe('n1', hb('n1', 4), 1500), false);
    assert.equal(t.observe('n1', hb('n1', 1, 'i2'), 1600), true);
  });
});

describe('parseHeartbeat', () => {
  it('accepts a heartbeat whose subject and body agree', () => {
    const r = parseHeartbeat(heartbeatSubject('n1'), Heartbeat.encode(hb('n1', 1)).finish());
    assert.ok(typeof r !== 'string');
    assert.equal(r.node, 'n1');
  });

  it('drops bad subjects, mismatched names, garbage and oversized bodies with a reason', () => {
    assert.match(parseHeartbeat('berth.v1.node.N_1.heartbeat', new Uint8Array()) as string, /does not name a valid node/);
    assert.match(parseHeartbeat(heartbeatSubject('n1'), Heartbeat.encode(hb('n2', 1)).finish()) as string, /names node "n2" on the subject of node "n1"/);
    assert.match(parseHeartbeat(heartbeatSubject('n1'), new Uint8Array([0xff, 0xff, 0xff])) as string, /does not decode/);
    assert.match(parseHeartbeat(heartbeatSubject('n1'), new Uint8Array(5000)) as string, /expected at most 4096/);
  });
});

describe('Membership', () => {
  let etcd: Service;
  let nats: Service;
  let store: EtcdStore;
  let nc: NatsConnection;
  let membership: Membership | undefined;

  before(async () => {
    [etcd, nats] = await Promise.all([startEtcd(), startNats()]);
  });
  after(async () => {
    await Promise.all([etcd?.stop(), nats?.stop()]);
  });
  beforeEach(async () => {
    store = new EtcdStore({ endpoints: [etcd.url], prefix: `/test-${randomBytes(4).toString('hex')}/berth/v1/` });
    nc = await connect({ servers: nats.url });
  });
  afterEach(async () => {
    await membership?.stop();
    membership = undefined;
    await nc?.close();
    await store?.close();
  });

  function leaderFlag(initial: boolean): Pick<LeaderElection, 'isLeader'> & { leader: boolean } {
    return { leader: initial, isLeader() { return this.leader; } };
  }

  async function start(isLeader: Pick<LeaderElection, 'isLeader'>, readyWindowMs = 1500): Promise<Membership> {
    membership = new Membership({
      store, election: isLeader, heartbeats: new NatsHeartbeats({ servers: [nats.url] }),
      readyWindowMs, checkIntervalMs: 100, refreshIntervalMs: 200,
    });
    await membership.start();
    return membership;
  }

  const spec = (name: string): NodeSpec => ({ ...NodeSpec.decode(new Uint8Array()), name, address: '127.0.0.1:7171' });
  const persisted = async (name: string): Promise<NodeState | undefined> => (await store.getNode(name)).status?.state;

  it('persists Ready and NotReady transitions when leader', async () => {
    const m = await start(leaderFlag(true));
    await m.register(spec('n1'));
    nc.publish(heartbeatSubject('n1'), Heartbeat.encode(hb('n1', 1)).finish());
    await waitFor('n1 persisted Ready', async () => (await persisted('n1')) === NodeState.NODE_STATE_READY, 3000);
    const [listed] = await m.list();
    assert.equal(listed?.status?.state, NodeState.NODE_STATE_READY);
    assert.equal(listed?.status?.containers, 2);
    await waitFor('n1 persisted NotReady', async () => (await persisted('n1')) === NodeState.NODE_STATE_NOT_READY, 4000);
    assert.match((await store.getNode('n1')).status?.reason ?? '', /^no heartbeat for \d+ s$/);
  });

  it('shows live state but persists nothing when not leader', async () => {
    const m = await start(leaderFlag(false));
    await m.register(spec('n1'));
    nc.publish(heartbeatSubject('n1'), Heartbeat.encode(hb('n1', 1)).finish());
    await waitFor('n1 live Ready', async () => (await m.list())[0]?.status?.state === NodeState.NODE_STATE_READY, 3000);
    assert.equal(await persisted('n1'), NodeState.NODE_STATE_NOT_READY);
  });

  it('lists the records as last read while that read is within maxAgeMs, and reads the store again after', async () => {
    let t = 1_000_000;
    const m = membership = new Membership({
      store, election: leaderFlag(false), heartbeats: new NatsHeartbeats({ servers: [nats.url] }),
      now: () => t, checkIntervalMs: 3_600_000, refreshIntervalMs: 3_600_000,
    });
    await m.start();
    const names = (nodes: { spec?: NodeSpec }[]): string[] => nodes.map((n) => n.spec?.name ?? '');
    // Registered through another controller: not in this one's records until it reads them.
    await store.registerNode(spec('n1'));
    t += 500;
    assert.deepEqual(names(await m.list({ maxAgeMs: 1000 })), []);
    t += 1000;
    assert.deepEqual(names(await m.list({ maxAgeMs: 1000 })), ['n1']);
    // Registered here: listed at once, in name order, still from the records.
    await m.register(spec('n0'));
    await store.registerNode(spec('n2'));
    t += 100;
    assert.deepEqual(names(await m.list({ maxAgeMs: 1000 })), ['n0', 'n1']);
    // Without maxAgeMs the store is always read.
    assert.deepEqual(names(await m.list()), ['n0', 'n1', 'n2']);
  });

  it('ignores a heartbeat published on another node\'s subject', async () => {
    const m = await start(leaderFlag(true));
    await m.register(spec('n1'));
    nc.publish(heartbeatSubject('n1'), Heartbeat.encode(hb('intruder', 1)).finish());
    nc.publish(heartbeatSubject('n2'), Heartbeat.encode(hb('n2', 1)).finish());
    await nc.flush();
    await waitFor('n2 heard', () => m.liveStatus('n2').state === NodeState.NODE_STATE_READY, 3000);
    assert.equal(m.liveStatus('n1').state, NodeState.NODE_STATE_NOT_READY);
  });
});
