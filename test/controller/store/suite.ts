/**
 * The one behaviour suite every DesiredStore must pass (ARCHITECTURE convention 9).
 * memory.test.ts and etcd.test.ts run it against each implementation.
 */
import assert from 'node:assert/strict';
import type { ErrorCode} from '../../../lib/index.js';
import { isCode } from '../../../lib/index.js';
import { Container, ContainerState, NodeSpec, NodeState, WorkloadSpec, type Event } from '../../../proto/gen/berth/v1/types.js';
import type { DesiredStore, WorkloadChange, WorkloadDocument } from '../../../controller/store/index.js';

export interface StoreFixture {
  store: DesiredStore;
  /** A second store on the same data (for concurrency tests); may be the same object. */
  other: DesiredStore;
}

export function doc(name: string, patch: Partial<WorkloadSpec> = {}, labels: Record<string, string> = { app: name }): WorkloadDocument {
  const spec: WorkloadSpec = { ...WorkloadSpec.decode(new Uint8Array()), replicas: 1, image: `127.0.0.1:5000/${name}:1`, ...patch };
  return { name, labels, spec };
}

export function nodeSpec(name: string, patch: Partial<NodeSpec> = {}): NodeSpec {
  return { ...NodeSpec.decode(new Uint8Array()), name, address: '127.0.0.1:7071', labels: { zone: 'a' }, ...patch };
}

async function rejects(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code as ErrorCode), `expected code ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

export function record(id: string, patch: Partial<Container> = {}): Container {
  return { ...Container.decode(new Uint8Array()), id: id.padEnd(64, '0'), name: `web-${id.slice(0, 4)}`, node: 'n1', workload: 'web', revision: 1, desiredState: ContainerState.CONTAINER_STATE_RUNNING, ...patch };
}

export function storeSuite(make: () => Promise<StoreFixture>, destroy: (f: StoreFixture) => Promise<void>): void {
  let f: StoreFixture;
  beforeEach(async () => {
    f = await make();
  });
  afterEach(async () => {
    await destroy(f);
  });

  describe('applyWorkloads', () => {
    it('creates, then reports unchanged, then configures a new revision when the spec changes', async () => {
      const [created] = await f.store.applyWorkloads([doc('web')]);
      assert.equal(created?.action, 'created');
      assert.equal(created?.revision, 1);
      const [again] = await f.store.applyWorkloads([doc('web')]);
      assert.equal(again?.action, 'unchanged');
      assert.equal(again?.revision, 1);
      const [changed] = await f.store.applyWorkloads([doc('web', { replicas: 3 })]);
      assert.equal(changed?.action, 'configured');
      assert.equal(changed?.revision, 2);
      const w = await f.store.getWorkload('web');
      assert.equal(w.spec?.replicas, 3);
      assert.equal(w.status?.revision, 2);
      assert.equal(w.metadata?.uid, created?.workload.metadata?.uid);
      const history = await f.store.workloadHistory('web');
      assert.deepEqual(history.map((r) => [r.revision, r.cause, r.spec?.replicas]), [[1, 'apply', 1], [2, 'apply', 3]]);
    });

    it('keeps the revision when only labels change', async () => {
      await f.store.applyWorkloads([doc('web')]);
      const [r] = await f.store.applyWorkloads([doc('web', {}, { app: 'web', tier: 'front' })]);
      assert.equal(r?.action, 'configured');
      assert.equal(r?.revision, 1);
      assert.deepEqual((await f.store.getWorkload('web')).metadata?.labels, { app: 'web', tier: 'front' });
      assert.equal((await f.store.workloadHistory('web')).length, 1);
    });

    it('treats a spec with equal content in another key order as unchanged', async () => {
      await f.store.applyWorkloads([doc('web', { env: { A: '1', B: '2' } })]);
      const [r] = await f.store.applyWorkloads([doc('web', { env: { B: '2', A: '1' } })]);
      assert.equal(r?.action, 'unchanged');
    });

    it('applies nothing when one document of several is invalid', async () => {
      await f.store.applyWorkloads([doc('api')]);
      await rejects(
        f.store.applyWorkloads([doc('web'), doc('api', { replicas: 4 }), doc('db', { replicas: 20000 })]),
        'invalid_argument',
        /document 3: spec\.replicas: expected a whole number from 0 to 10000, got "20000"/,
      );
      assert.deepEqual((await f.store.listWorkloads()).map((w) => [w.metadata?.name, w.spec?.replicas]), [['api', 1]]);
    });

    it('rejects a file that names one workload twice', async () => {
      await rejects(f.store.applyWorkloads([doc('web'), doc('web')]), 'invalid_argument', /document 2: metadata\.name: workload "web" is already defined by document 1/);
      assert.equal((await f.store.listWorkloads()).length, 0);
    });

    it('writes nothing on a dry run but reports what would happen', async () => {
      await f.store.applyWorkloads([doc('web')]);
      const out = await f.store.applyWorkloads([doc('web', { replicas: 2 }), doc('api')], { dryRun: true });
      assert.deepEqual(out.map((o) => [o.name, o.action, o.revision]), [['web', 'configured', 2], ['api', 'created', 1]]);
      assert.deepEqual((await f.store.listWorkloads()).map((w) => [w.metadata?.name, w.status?.revision]), [['web', 1]]);
    });

    it('keeps only the last 10 revisions', async () => {
      for (let i = 1; i <= 13; i++) await f.store.applyWorkloads([doc('web', { replicas: i })]);
      const history = await f.store.workloadHistory('web');
      assert.deepEqual(history.map((r) => r.revision), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
      assert.equal((await f.store.getWorkload('web')).status?.revision, 13);
    });

    it('serializes concurrent applies of one workload so every change gets its own revision', async () => {
      await f.store.applyWorkloads([doc('web')]);
      const stores = [f.store, f.other, f.store, f.other];
      const outs = await Promise.all(stores.map((s, i) => s.applyWorkloads([doc('web', { replicas: 10 + i })])));
      assert.ok(outs.every(([o]) => o?.action === 'configured'));
      assert.deepEqual(outs.map(([o]) => o?.revision).sort(), [2, 3, 4, 5]);
      assert.equal((await f.store.getWorkload('web')).status?.revision, 5);
    });
  });

  describe('listWorkloads', () => {
    it('filters by every label of the selector', async () => {
      await f.store.applyWorkloads([doc('web', {}, { app: 'web', tier: 'front' }), doc('api', {}, { app: 'api', tier: 'front' }), doc('db', {}, { app: 'db' })]);
      const names = async (sel: Record<string, string>): Promise<string[]> => (await f.store.listWorkloads(sel)).map((w) => w.metadata?.name ?? '');
      assert.deepEqual(await names({ tier: 'front' }), ['api', 'web']);
      assert.deepEqual(await names({ tier: 'front', app: 'web' }), ['web']);
      assert.deepEqual(await names({}), ['api', 'db', 'web']);
      assert.deepEqual(await names({ app: 'nope' }), []);
    });
  });

  describe('deleteWorkloads', () => {
    it('deletes workloads with their history when every name exists', async () => {
      await f.store.applyWorkloads([doc('web'), doc('api'), doc('db')]);
      assert.deepEqual(await f.store.deleteWorkloads(['web', 'db']), ['web', 'db']);
      assert.deepEqual((await f.store.listWorkloads()).map((w) => w.metadata?.name), ['api']);
      await rejects(f.store.workloadHistory('web'), 'not_found', /workload "web" not found/);
      // Re-created, it starts again at revision 1 with a fresh history.
      const [again] = await f.store.applyWorkloads([doc('web')]);
      assert.equal(again?.action, 'created');
      assert.equal((await f.store.workloadHistory('web')).length, 1);
    });

    it('deletes nothing when a name is unknown, unless told to ignore it', async () => {
      await f.store.applyWorkloads([doc('web')]);
      await rejects(f.store.deleteWorkloads(['web', 'nope']), 'not_found', /workload "nope" not found/);
      assert.equal((await f.store.listWorkloads()).length, 1);
      assert.deepEqual(await f.store.deleteWorkloads(['web', 'nope'], { ignoreNotFound: true }), ['web']);
      assert.equal((await f.store.listWorkloads()).length, 0);
    });
  });

  describe('scaleWorkload', () => {
    it('makes a revision with cause "scale" when the count changes and none when it does not', async () => {
      await f.store.applyWorkloads([doc('web')]);
      const w = await f.store.scaleWorkload('web', 5);
      assert.equal(w.spec?.replicas, 5);
      assert.equal(w.status?.revision, 2);
      assert.equal(w.status?.desired, 5);
      const same = await f.store.scaleWorkload('web', 5);
      assert.equal(same.status?.revision, 2);
      assert.deepEqual((await f.store.workloadHistory('web')).map((r) => r.cause), ['apply', 'scale']);
      // Applying the file again restores its replica count as a new revision.
      const [o] = await f.store.applyWorkloads([doc('web')]);
      assert.equal(o?.action, 'configured');
      assert.equal(o?.revision, 3);
    });

    it('rejects counts out of range and unknown workloads', async () => {
      await f.store.applyWorkloads([doc('web')]);
      await rejects(f.store.scaleWorkload('web', 10001), 'invalid_argument', /replicas: expected a whole number from 0 to 10000, got "10001"/);
      await rejects(f.store.scaleWorkload('web', -1), 'invalid_argument', /replicas/);
      await rejects(f.store.scaleWorkload('nope', 2), 'not_found', /workload "nope" not found/);
    });
  });

  describe('watchWorkloads', () => {
    it('yields the current workloads, then each change, and ends when cancelled', async () => {
      await f.store.applyWorkloads([doc('web')]);
      const ctrl = new AbortController();
      const seen: WorkloadChange[] = [];
      const guard = setTimeout(() => ctrl.abort(), 15000);
      const done = (async () => {
        for await (const c of f.store.watchWorkloads({ signal: ctrl.signal })) {
          seen.push(c);
          if (seen.length === 4) ctrl.abort();
        }
      })();
      const waitSeen = async (n: number): Promise<void> => {
        for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 25));
      };
      await waitSeen(1);
      await f.other.applyWorkloads([doc('api')]);
      await waitSeen(2);
      await f.other.scaleWorkload('web', 3);
      await waitSeen(3);
      await f.other.deleteWorkloads(['api']);
      await done;
      clearTimeout(guard);
      assert.deepEqual(seen.map((c) => [c.type, c.workload.metadata?.name]), [
        ['added', 'web'], ['added', 'api'], ['modified', 'web'], ['deleted', 'api'],
      ]);
      assert.equal(seen[2]?.workload.spec?.replicas, 3);
    });
  });

  describe('clusterId', () => {
    it('returns one id to every store on the same data', async () => {
      const a = await f.store.clusterId();
      assert.match(a, /^[0-9a-f-]{36}$/);
      assert.equal(await f.other.clusterId(), a);
      assert.equal(await f.store.clusterId(), a);
    });
  });

  describe('nodes', () => {
    it('registers a node as NotReady and keeps cordon and status across re-registration', async () => {
      const n = await f.store.registerNode(nodeSpec('n1'));
      assert.equal(n.spec?.name, 'n1');
      assert.equal(n.status?.state, NodeState.NODE_STATE_NOT_READY);
      assert.ok((n.status?.registeredUnixMs ?? 0) > 0);
      await f.store.setNodeCordoned('n1', true);
      await f.store.setNodeStatus('n1', { ...(n.status as NonNullable<typeof n.status>), state: NodeState.NODE_STATE_READY, reason: '' });
      const again = await f.store.registerNode(nodeSpec('n1', { address: '127.0.0.1:9999', cordoned: false }));
      assert.equal(again.spec?.address, '127.0.0.1:9999');
      assert.equal(again.spec?.cordoned, true);
      assert.equal(again.status?.state, NodeState.NODE_STATE_READY);
      await f.store.registerNode(nodeSpec('n0'));
      assert.deepEqual((await f.store.listNodes()).map((x) => x.spec?.name), ['n0', 'n1']);
      assert.equal((await f.store.getNode('n1')).spec?.cordoned, true);
    });

    it('drains a node (cordoned, the drain mark kept across re-registration) and ends the drain on uncordon', async () => {
      await f.store.registerNode(nodeSpec('n1'));
      await f.store.registerNode(nodeSpec('n0'));
      assert.deepEqual(await f.store.listDrainingNodes(), []);
      const d = await f.store.drainNode('n1');
      assert.equal(d.spec?.cordoned, true);
      assert.deepEqual(await f.other.listDrainingNodes(), ['n1']);
      const again = await f.store.registerNode(nodeSpec('n1', { cordoned: false }));
      assert.equal(again.spec?.cordoned, true);
      assert.deepEqual(await f.store.listDrainingNodes(), ['n1']);
      await f.store.setNodeCordoned('n1', true);
      assert.deepEqual(await f.store.listDrainingNodes(), ['n1'], 'cordoning again keeps the drain');
      const u = await f.other.setNodeCordoned('n1', false);
      assert.equal(u.spec?.cordoned, false);
      assert.deepEqual(await f.store.listDrainingNodes(), []);
      await rejects(f.store.drainNode('ghost'), 'not_found', /node "ghost" not found/);
    });

    it('fails with NotFound for an unknown node', async () => {
      await rejects(f.store.getNode('ghost'), 'not_found', /node "ghost" not found/);
      await rejects(f.store.setNodeCordoned('ghost', true), 'not_found', /node "ghost" not found/);
    });
  });

  describe('container records', () => {
    it('writes, lists by workload and node, updates and deletes records', async () => {
      const a = record('aa', { node: 'n1' });
      const b = record('bb', { node: 'n2' });
      const c = record('cc', { node: 'n1', workload: 'api', name: 'api-cc' });
      await f.store.writeContainerRecords({ put: [c, a, b] });
      assert.deepEqual((await f.other.listContainerRecords()).map((r) => r.id), [a.id, b.id, c.id]);
      assert.deepEqual((await f.store.listContainerRecords({ workload: 'web' })).map((r) => r.id), [a.id, b.id]);
      assert.deepEqual((await f.store.listContainerRecords({ node: 'n1' })).map((r) => r.id), [a.id, c.id]);
      assert.deepEqual((await f.store.listContainerRecords({ workload: 'web', node: 'n1' })).map((r) => r.id), [a.id]);
      await f.store.writeContainerRecords({ put: [{ ...a, desiredState: ContainerState.CONTAINER_STATE_REMOVED }], delete: [b.id] });
      assert.equal((await f.other.getContainerRecord(a.id)).desiredState, ContainerState.CONTAINER_STATE_REMOVED);
      await rejects(f.store.getContainerRecord(b.id), 'not_found', /container "b{2}0+" not found/);
      assert.equal((await f.store.listContainerRecords()).length, 2);
    });

    it('writes many records at once when the change is larger than one transaction', async () => {
      const many = Array.from({ length: 250 }, (_, i) => record(i.toString(16).padStart(4, '0')));
      await f.store.writeContainerRecords({ put: many });
      assert.equal((await f.store.listContainerRecords()).length, 250);
      await f.store.writeContainerRecords({ delete: many.map((r) => r.id) });
      assert.equal((await f.store.listContainerRecords()).length, 0);
    });

    it('refuses a record whose id is not 64 hex characters and writes nothing', async () => {
      await rejects(
        f.store.writeContainerRecords({ put: [record('aa'), { ...record('bb'), id: '../../workloads/web' }] }),
        'invalid_argument',
        /put\[1\]\.id: expected a container id of 64 lowercase hex characters, got "\.\.\/\.\.\/workloads\/web"/,
      );
      assert.equal((await f.store.listContainerRecords()).length, 0);
      await rejects(f.store.getContainerRecord('ABC'), 'invalid_argument', /expected a container id/);
    });
  });

  describe('workload status', () => {
    it('keeps the status apart from the workload and deletes it with the workload', async () => {
      await f.store.applyWorkloads([doc('web', { replicas: 3 })]);
      assert.equal(await f.store.getWorkloadStatus('web'), undefined);
      await f.store.setWorkloadStatus('web', { revision: 1, desired: 3, running: 2, ready: 2, pending: 1, conditions: [{ type: 'Available', status: false, reason: 'Unschedulable', message: '0/3 nodes: 3 insufficient memory', sinceUnixMs: 5 }] });
      const s = await f.other.getWorkloadStatus('web');
      assert.equal(s?.running, 2);
      assert.equal(s?.conditions[0]?.message, '0/3 nodes: 3 insufficient memory');
      // An apply does not conflict with or overwrite the status.
      await f.store.applyWorkloads([doc('web', { replicas: 4 })]);
      assert.equal((await f.store.getWorkloadStatus('web'))?.running, 2);
      await f.store.deleteWorkloads(['web']);
      assert.equal(await f.store.getWorkloadStatus('web'), undefined);
    });
  });

  describe('events', () => {
    const ev = (i: number, patch: Partial<Event> = {}): Event => ({
      unixMs: 1_700_000_000_000 + i, kind: 'container', name: `web-${i}`, reason: 'Scheduled', message: `placed ${i}`, node: 'n1', severity: 'normal', workload: 'web', ...patch,
    });

    it('lists events oldest first, filtered by time, workload, kind and limit', async () => {
      await f.store.appendEvents([ev(1), ev(2, { workload: 'api', name: 'api-2' }), ev(3, { kind: 'node', workload: '', name: 'n1', reason: 'NodeNotReady' })]);
      await f.other.appendEvents([ev(4), ev(4, { name: 'same-ms' })]);
      assert.deepEqual((await f.store.listEvents()).map((e) => e.name), ['web-1', 'api-2', 'n1', 'web-4', 'same-ms']);
      assert.deepEqual((await f.store.listEvents({ workload: 'web' })).map((e) => e.name), ['web-1', 'web-4', 'same-ms']);
      assert.deepEqual((await f.store.listEvents({ kind: 'node' })).map((e) => e.reason), ['NodeNotReady']);
      assert.deepEqual((await f.store.listEvents({ sinceUnixMs: 1_700_000_000_003 })).map((e) => e.name), ['n1', 'web-4', 'same-ms']);
      assert.deepEqual((await f.store.listEvents({ limit: 2 })).map((e) => e.name), ['web-4', 'same-ms']);
    });

    it('keeps a bounded history of the newest events', async () => {
      await f.store.appendEvents(Array.from({ length: 1200 }, (_, i) => ev(i)));
      const kept = await f.store.listEvents();
      assert.equal(kept.length, 1000);
      assert.equal(kept[0]?.name, 'web-200');
      assert.equal(kept[999]?.name, 'web-1199');
    });
  });
}
