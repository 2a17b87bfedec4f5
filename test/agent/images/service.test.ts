import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { busyboxLayer, makeTar, pushImage } from './fixtures.js';
import { makeStack, type Stack } from './stack.js';
import { pullWithProgress, toProtoImageRecord } from '../../../agent/images/index.js';
import type { PullProgress } from '../../../proto/gen/berth/v1/types.js';

describe('ImageService', () => {
  let registry: RegistryService;
  let stack: Stack | undefined;
  let busybox: Buffer;

  before(async () => {
    registry = await startRegistry();
    busybox = busyboxLayer();
    await pushImage(registry.url, 'library/busybox', 'latest', [busybox]);
    await pushImage(registry.url, 'library/busybox', '1.35', [busybox]);
    await pushImage(registry.url, 'tools/app', 'v1', [busybox, makeTar([{ name: 'app', data: 'app\n' }])]);
    await pushImage(registry.url, 'tools/other', 'v2', [makeTar([{ name: 'other', data: Buffer.alloc(100000, 5) }])]);
  });
  after(async () => {
    await registry?.stop();
  });
  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
  });

  it('lists pulled images with reference, digest, size and created', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const a = await stack.service.pull('library/busybox');
    const b = await stack.service.pull('tools/app:v1');
    const list = await stack.service.list();
    assert.deepEqual(list.map((i) => i.reference).sort(), [a.reference, b.reference].sort());
    const app = list.find((i) => i.reference.endsWith('tools/app:v1'))!;
    assert.equal(app.created, '2026-01-02T03:04:05Z');
    const manifestSize = (await stack.content.info(app.digest))!.size;
    const configSize = (await stack.content.info(app.configDigest))!.size;
    assert.equal(app.size, manifestSize + configSize + app.layers.reduce((n, l) => n + l.size, 0));
    assert.match(app.digest, /^sha256:[a-f0-9]{64}$/);
    assert.equal((await stack.service.get('tools/app:v1'))?.digest, b.digest);
    assert.equal((await stack.service.get(b.digest))?.reference, b.reference);
    assert.deepEqual(toProtoImageRecord(app, 'node-1'), {
      reference: `${registry.host}/tools/app:v1`, repository: `${registry.host}/tools/app`, tag: 'v1', digest: app.digest,
      sizeBytes: app.size, createdUnixMs: Date.UTC(2026, 0, 2, 3, 4, 5), node: 'node-1',
    });
  });

  it('refuses to remove an image a container uses unless forced, then prune frees its blobs and snapshots', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const app = await stack.service.pull('tools/app:v1');
    const other = await stack.service.pull('tools/other:v2');
    await stack.snapshotter.mountContainer('user1', app.chainId);
    await assert.rejects(stack.service.remove('tools/app:v1'), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'failed_precondition');
      assert.match(e.message, /failed to remove image ".*tools\/app:v1": in use by container "user1"/);
      return true;
    });
    // Remove "other", prune: its blobs and snapshot go; app's stay (record + container).
    await stack.service.remove('tools/other:v2');
    const freed = await stack.service.prune();
    assert.equal(freed.snapshots, 1);
    assert.equal(freed.blobs, 3); // manifest, config, layer
    assert.ok(freed.bytesFreed > 100000, `freed ${freed.bytesFreed} bytes`);
    assert.ok(!existsSync(join(stack.root, 'content', 'sha256', other.layers[0]!.digest.slice(7))));
    assert.ok(existsSync(join(stack.root, 'content', 'sha256', app.layers[0]!.digest.slice(7))));
    // Forced removal of app: the container keeps its snapshots alive through prune.
    await stack.service.remove('tools/app:v1', { force: true });
    const second = await stack.service.prune();
    assert.equal(second.snapshots, 0);
    assert.equal(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 2);
    await stack.snapshotter.removeContainer('user1');
    const third = await stack.service.prune();
    assert.equal(third.snapshots, 2);
    assert.equal(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 0);
    assert.equal(readdirSync(join(stack.root, 'content', 'sha256')).length, 0);
    assert.deepEqual(await stack.service.list(), []);
  });

  it('uses the injected in-use checker', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const { ImageService } = await import('../../../agent/images/index.js');
    const svc = new ImageService({
      puller: stack.puller, records: stack.records, content: stack.content, snapshotter: stack.snapshotter, client: stack.client,
      defaultRegistry: registry.host, inUse: async (img) => (img.repository === 'library/busybox' ? ['web-1', 'web-2'] : []),
    });
    await svc.pull('library/busybox:1.35');
    await assert.rejects(svc.remove('library/busybox:1.35'), /in use by containers "web-1", "web-2"/);
    await assert.rejects(svc.remove('library/busybox:9.9'), /image "library\/busybox:9.9" not found on this node/);
  });

  it('turns a pull into PullProgress messages ending with one finished message', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const messages: PullProgress[] = [];
    const ok = await pullWithProgress(stack.service, 'tools/app:v1', 'node-a', (m) => messages.push(m));
    assert.ok(ok.record);
    const last = messages.at(-1)!;
    assert.equal(messages.filter((m) => m.finished).length, 1);
    assert.deepEqual([last.finished, last.error, last.digest, last.node, last.reference], [true, '', ok.record.digest, 'node-a', `${registry.host}/tools/app:v1`]);
    assert.equal(last.layers.length, 2);
    const failed: PullProgress[] = [];
    const bad = await pullWithProgress(stack.service, 'tools/nosuch:v1', 'node-a', (m) => failed.push(m));
    assert.ok(bad.error);
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.finished, true);
    assert.match(failed[0]!.error, /404/);
  });

  it('searches the registry catalog and lists tags', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const found = await stack.service.search('busy');
    assert.deepEqual(found, [{ registry: registry.host, repository: 'library/busybox', tags: ['1.35', 'latest'] }]);
    const tools = await stack.service.search('tools/');
    assert.deepEqual(tools.map((t) => t.repository).sort(), ['tools/app', 'tools/other']);
    // The catalog is followed across pages.
    assert.deepEqual(await stack.client.catalog(registry.host, { pageSize: 1 }), ['library/busybox', 'tools/app', 'tools/other']);
  });
});
