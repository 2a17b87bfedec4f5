import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { isCode } from '../../../lib/index.js';
import { Workload } from '../../../proto/gen/berth/v1/types.js';
import { ConflictError, EtcdStore } from '../../../controller/store/index.js';
import { startEtcd, type Service } from '../../harness/index.js';
import { doc, storeSuite } from './suite.js';

describe('EtcdStore', () => {
  let etcd: Service;
  let raw: Etcd3;
  const open: EtcdStore[] = [];

  before(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: etcd.url });
  });
  after(async () => {
    raw?.close();
    await etcd?.stop();
  });

  function newPrefix(): string {
    return `/test-${randomBytes(4).toString('hex')}/berth/v1/`;
  }
  function newStore(prefix: string, extra: Partial<ConstructorParameters<typeof EtcdStore>[0]> = {}): EtcdStore {
    const s = new EtcdStore({ endpoints: [etcd.url], prefix, ...extra });
    open.push(s);
    return s;
  }
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  describe('shared store suite', () => {
    storeSuite(
      async () => {
        const prefix = newPrefix();
        return { store: newStore(prefix), other: newStore(prefix) };
      },
      async (f) => {
        const prefix = (f.store as EtcdStore).keys.prefix;
        await f.store.close();
        await f.other.close();
        await raw.delete().prefix(prefix);
      },
    );
  });

  describe('etcd specifics', () => {
    let prefix: string;
    beforeEach(() => {
      prefix = newPrefix();
    });
    afterEach(async () => {
      await raw.delete().prefix(prefix);
    });

    it('writes nothing to etcd when one document of a file is invalid', async () => {
      const store = newStore(prefix);
      await assert.rejects(store.applyWorkloads([doc('web'), doc('api', { replicas: 10001 })]), /document 2: spec\.replicas/);
      assert.deepEqual(await raw.getAll().prefix(prefix).keys(), []);
    });

    it('stores protobuf values under the documented keys', async () => {
      const store = newStore(prefix);
      await store.applyWorkloads([doc('web')]);
      await store.applyWorkloads([doc('web', { replicas: 2 })]);
      const keys = (await raw.getAll().prefix(prefix).keys()).sort();
      assert.deepEqual(keys, [
        `${prefix}revisions/web/000000000001`,
        `${prefix}revisions/web/000000000002`,
        `${prefix}workloads/web`,
      ]);
      const value = await raw.get(`${prefix}workloads/web`).buffer();
      assert.ok(value);
      const w = Workload.decode(value);
      assert.equal(w.metadata?.name, 'web');
      assert.equal(w.status?.revision, 2);
    });

    it('retries a write that lost a race and gives up with a conflict after repeated races', async () => {
      await newStore(prefix).applyWorkloads([doc('web')]);
      const other = newStore(prefix);
      let n = 0;
      // Another writer changes the key between our read and write on the first attempt only.
      const once = newStore(prefix, {
        beforeCommit: async (attempt) => {
          if (attempt === 1) await other.applyWorkloads([doc('web', { replicas: 50 + n++ })]);
        },
      });
      const [o] = await once.applyWorkloads([doc('web', { replicas: 7 })]);
      assert.equal(o?.revision, 3);
      assert.equal((await other.getWorkload('web')).spec?.replicas, 7);

      const always = newStore(prefix, {
        beforeCommit: async () => {
          await other.applyWorkloads([doc('web', { replicas: 100 + n++ })]);
        },
      });
      await assert.rejects(always.applyWorkloads([doc('web', { replicas: 9 })]), (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.ok(isCode(err, 'conflict'));
        assert.match(err.message, /failed to apply workload "web": other writers kept changing ".*workloads\/web"; tried 5 times/);
        return true;
      });
      assert.notEqual((await other.getWorkload('web')).spec?.replicas, 9);
    });

    it('fails with Unavailable naming the endpoint when etcd cannot be reached', async () => {
      const store = new EtcdStore({ endpoints: ['http://127.0.0.1:1'], prefix, timeoutMs: 1000 });
      open.push(store);
      await assert.rejects(store.listWorkloads(), (err: unknown) => {
        assert.ok(isCode(err, 'unavailable'), String(err));
        assert.match((err as Error).message, /failed to reach etcd at "http:\/\/127\.0\.0\.1:1"/);
        return true;
      });
    });

    it('stops waiting when the caller cancels', async () => {
      const store = newStore(prefix);
      const ctrl = new AbortController();
      ctrl.abort();
      await assert.rejects(store.listWorkloads(undefined, { signal: ctrl.signal }), (err: unknown) => isCode(err, 'cancelled'));
    });
  });
});
