import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { busyboxLayer, makeTar, pushImage } from './fixtures.js';
import { makeStack, type Stack } from './stack.js';
import { startProxy } from './proxy.js';
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
    // Removing "other" deletes its blobs and snapshot at once; app's stay (record + container).
    const removed = await stack.service.removeMany(['tools/other:v2']);
    assert.deepEqual(removed.images.map((i) => i.reference), [other.reference]);
    assert.equal(removed.snapshots, 1);
    assert.equal(removed.blobs, 3); // manifest, config, layer
    assert.ok(removed.bytesFreed > 100000, `freed ${removed.bytesFreed} bytes`);
    assert.ok(!existsSync(join(stack.root, 'content', 'sha256', other.layers[0]!.digest.slice(7))));
    assert.ok(existsSync(join(stack.root, 'content', 'sha256', app.layers[0]!.digest.slice(7))));
    assert.deepEqual(await stack.service.prune(), { images: [], blobs: 0, snapshots: 0, bytesFreed: 0 });
    // Forced removal of app: the container keeps its snapshots alive through prune.
    await stack.service.remove('tools/app:v1', { force: true });
    const second = await stack.service.prune();
    assert.equal(second.snapshots, 0);
    assert.ok(readdirSync(join(stack.root, 'content', 'sha256')).length < 5, 'the forced removal deleted the blobs');
    assert.equal(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 2);
    await stack.snapshotter.removeContainer('user1');
    const third = await stack.service.prune();
    assert.equal(third.snapshots, 2);
    assert.ok(third.bytesFreed > 0);
    assert.equal(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 0);
    assert.equal(readdirSync(join(stack.root, 'content', 'sha256')).length, 0);
    assert.deepEqual(await stack.service.list(), []);
  });

  it('keeps layers another image shares when an image is removed, and reports missing references', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const bb = await stack.service.pull('library/busybox:latest');
    const app = await stack.service.pull('tools/app:v1');
    assert.equal(app.layers[0]!.chainId, bb.layers[0]!.chainId);
    const r = await stack.service.removeMany(['tools/app:v1', 'tools/nosuch:v1']);
    assert.deepEqual(r.images.map((i) => i.reference), [app.reference]);
    assert.deepEqual(r.missing, ['tools/nosuch:v1']);
    assert.equal(r.snapshots, 1); // only the app layer: the busybox base stays
    assert.equal(r.blobs, 3); // manifest, config, app layer
    assert.deepEqual(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 1);
    assert.ok(existsSync(join(stack.root, 'content', 'sha256', bb.layers[0]!.digest.slice(7))));
    assert.deepEqual((await stack.service.list()).map((i) => i.reference), [bb.reference]);
    // The busybox image still mounts.
    const c = await stack.snapshotter.mountContainer('after-rm', bb.chainId);
    assert.ok(existsSync(join(c.rootfs, 'bin', 'busybox')));
    assert.ok(!existsSync(join(c.rootfs, 'app')));
    await stack.snapshotter.removeContainer('after-rm');
  });

  it('removes by digest or a 12-digit digest prefix, refuses a malformed digest, and changes nothing on a dry run', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const a = await stack.service.pull('library/busybox:latest');
    const b = await stack.service.pull('library/busybox:1.35');
    const other = await stack.service.pull('tools/other:v2');
    assert.equal(a.digest, b.digest);
    await assert.rejects(stack.service.removeMany(['sha256:12']), /invalid image digest "sha256:12": expected "sha256:" and 12 to 64 hex digits/);
    const dry = await stack.service.removeMany([other.digest.slice(7, 19)], { dryRun: true });
    assert.deepEqual([dry.images.map((i) => i.reference), dry.blobs, dry.bytesFreed], [[other.reference], 0, 0]);
    assert.equal((await stack.service.list()).length, 3);
    // A digest names every record with it (both busybox tags).
    const r = await stack.service.removeMany([a.digest]);
    assert.deepEqual(r.images.map((i) => i.reference).sort(), [a.reference, b.reference].sort());
    assert.equal(r.snapshots, 1);
    const r2 = await stack.service.removeMany([other.digest.slice(7, 19)]);
    assert.deepEqual(r2.images.map((i) => i.reference), [other.reference]);
    assert.deepEqual(readdirSync(join(stack.root, 'content', 'sha256')), []);
  });

  it('refuses every removal when one image is in use, and prune --all keeps used images', async () => {
    stack = makeStack({ defaultRegistry: registry.host });
    const app = await stack.service.pull('tools/app:v1');
    const other = await stack.service.pull('tools/other:v2');
    await stack.snapshotter.mountContainer('user2', app.chainId);
    await assert.rejects(stack.service.removeMany(['tools/other:v2', 'tools/app:v1']), /failed to remove image ".*tools\/app:v1": in use by container "user2" \(remove it first, or use --force\)/);
    assert.equal((await stack.service.list()).length, 2, 'nothing removed');
    const pruned = await stack.service.prune({ all: true });
    assert.deepEqual(pruned.images.map((i) => i.reference), [other.reference]);
    assert.equal(pruned.snapshots, 1);
    assert.ok(pruned.bytesFreed > 100000);
    assert.deepEqual((await stack.service.list()).map((i) => i.reference), [app.reference]);
    await stack.snapshotter.removeContainer('user2');
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
    assert.deepEqual((await stack.service.search('', { limit: 2 })).map((t) => t.repository), ['library/busybox', 'tools/app']);
    assert.deepEqual(await stack.service.search('nothing-like-this'), []);
    await assert.rejects(stack.service.search('x', { limit: 0 }), /limit: expected 1 to 100, got 0/);
    await assert.rejects(stack.service.search('x', { registry: 'evil/path?x' }), /registry: expected a registry host/);
  });

  it('says clearly when a registry refuses its catalog', async () => {
    const proxy = await startProxy(registry.url, {
      transform: (req) => (req.path.startsWith('/v2/_catalog')
        ? { status: 404, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}') }
        : undefined),
    });
    try {
      stack = makeStack({ defaultRegistry: proxy.host });
      await assert.rejects(stack.service.search('busy'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'failed_precondition');
        assert.match(e.message, /failed to search registry "127\.0\.0\.1:\d+": it does not offer its catalog to us \(GET \/v2\/_catalog answered 404: .*unsupported/);
        return true;
      });
    } finally {
      await proxy.stop();
    }
  });
});
