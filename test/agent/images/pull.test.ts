import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { LayerPhase, type LayerProgress } from '../../../proto/gen/berth/v1/types.js';
import { diskUsage } from '../../../agent/snapshots/index.js';
import { busyboxLayer, makeTar, pushImage, pushIndex } from './fixtures.js';
import { startProxy, type Proxy } from './proxy.js';
import { makeStack, type Stack } from './stack.js';

describe('ImagePuller', () => {
  let registry: RegistryService;
  let stack: Stack | undefined;
  let proxy: Proxy | undefined;
  let busybox: Buffer;

  before(async () => {
    registry = await startRegistry();
    busybox = busyboxLayer();
  });
  after(async () => {
    await registry?.stop();
  });
  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
    await proxy?.stop();
    proxy = undefined;
  });

  it('pulls busybox by short name and the rootfs runs a shell when mounted', async () => {
    const pushed = await pushImage(registry.url, 'busybox', 'latest', [busybox]);
    stack = makeStack({ defaultRegistry: registry.host });
    const events: LayerProgress[][] = [];
    const rec = await stack.service.pull('busybox', { onProgress: (l) => events.push(l) });
    assert.equal(rec.reference, `${registry.host}/busybox:latest`);
    assert.equal(rec.digest, pushed.digest);
    assert.deepEqual(rec.config.Cmd, ['/bin/sh']);
    assert.equal(rec.layers.length, 1);
    assert.ok(existsSync(join(stack.root, 'content', 'sha256', pushed.layerDigests[0]!.slice(7))));
    const last = events[events.length - 1]!;
    assert.equal(last[0]!.phase, LayerPhase.LAYER_PHASE_DONE);
    assert.ok(events.some((e) => e[0]!.phase === LayerPhase.LAYER_PHASE_DOWNLOADING));
    const c = await stack.snapshotter.mountContainer('bb1', rec.chainId);
    const out = execFileSync('chroot', [c.rootfs, '/bin/sh', '-c', 'echo hello from $(cat /etc/passwd | head -c 4)'], { encoding: 'utf8' });
    assert.equal(out.trim(), 'hello from root');
    assert.equal(statSync(join(c.rootfs, 'tmp')).mode & 0o7777, 0o1777);
    assert.deepEqual((await stack.service.list()).map((i) => i.reference), [rec.reference]);
  });

  it('reports already exists and downloads nothing when the image is present', async () => {
    await pushImage(registry.url, 'again', 'v1', [busybox]);
    proxy = await startProxy(registry.url);
    stack = makeStack();
    await stack.service.pull(`${proxy.host}/again:v1`);
    const blobGets = (): number => proxy!.requests.filter((r) => r.path.includes('/blobs/sha256:')).length;
    const before = blobGets();
    let lastEvent: LayerProgress[] = [];
    await stack.service.pull(`${proxy.host}/again:v1`, { onProgress: (l) => (lastEvent = l) });
    assert.equal(blobGets(), before);
    assert.equal(lastEvent[0]?.phase, LayerPhase.LAYER_PHASE_ALREADY_EXISTS);
  });

  it('fetches only the missing layer when an image shares its base with a present one, and containers share the base by inode', async () => {
    const base = await pushImage(registry.url, 'shared-a', 'v1', [busybox]);
    const extra = makeTar([{ name: 'app/', type: '5' }, { name: 'app/hello.txt', data: 'hello\n' }]);
    const b = await pushImage(registry.url, 'shared-b', 'v1', [busybox, extra]);
    proxy = await startProxy(registry.url);
    stack = makeStack();
    const a = await stack.service.pull(`${proxy.host}/shared-a:v1`);
    const mark = proxy.requests.length;
    const progress: LayerProgress[][] = [];
    const rb = await stack.service.pull(`${proxy.host}/shared-b:v1`, { onProgress: (l) => progress.push(l) });
    const layerGets = proxy.requests.slice(mark).filter((r) => r.method === 'GET' && b.layerDigests.some((d) => r.path.endsWith(d)));
    assert.deepEqual(layerGets.map((r) => r.path.split('/').pop()), [b.layerDigests[1]]);
    assert.equal(progress.at(-1)![0]!.phase, LayerPhase.LAYER_PHASE_ALREADY_EXISTS);
    assert.equal(progress.at(-1)![1]!.phase, LayerPhase.LAYER_PHASE_DONE);
    assert.equal(rb.layers[0]!.chainId, a.layers[0]!.chainId);
    assert.equal(base.layerDigests[0], b.layerDigests[0]);
    // One copy: two containers of each image see the same inode for /bin/busybox,
    // and mounting them adds only their (empty) upper and work dirs to the disk usage.
    const usageBefore = await diskUsage(join(stack.root, 'snapshots'));
    const c1 = await stack.snapshotter.mountContainer('c1', a.chainId);
    const c2 = await stack.snapshotter.mountContainer('c2', a.chainId);
    const c3 = await stack.snapshotter.mountContainer('c3', rb.chainId);
    const lower = (await stack.snapshotter.stat(a.layers[0]!.chainId))!.dir;
    const ino = statSync(join(lower, 'bin', 'busybox')).ino;
    for (const c of [c1, c2, c3]) assert.equal(statSync(join(c.rootfs, 'bin', 'busybox')).ino, ino);
    const grown = (await diskUsage(join(stack.root, 'snapshots', 'layers'))) + (await diskUsage(join(stack.root, 'snapshots', 'containers'))) - usageBefore;
    assert.ok(grown < 64 * 1024, `three containers added ${grown} bytes (busybox alone is ${statSync(join(lower, 'bin', 'busybox')).size})`);
    assert.equal(readFileSync(join(c3.rootfs, 'app', 'hello.txt'), 'utf8'), 'hello\n');
    assert.equal(readdirSync(join(stack.root, 'snapshots', 'layers')).length, 2);
    assert.equal(readdirSync(join(stack.root, 'content', 'sha256')).filter((n) => b.layerDigests.includes(`sha256:${n}`)).length, 2);
  });

  it('downloads a blob once when two pulls of the same image run at the same time', async () => {
    await pushImage(registry.url, 'twice', 'v1', [busybox, makeTar([{ name: 'x', data: 'x' }])]);
    proxy = await startProxy(registry.url);
    stack = makeStack();
    const [r1, r2] = await Promise.all([stack.service.pull(`${proxy.host}/twice:v1`), stack.service.pull(`${proxy.host}/twice:v1`)]);
    assert.equal(r1.digest, r2.digest);
    for (const l of r1.layers) {
      assert.equal(proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(l.digest)).length, 1, `layer ${l.digest} downloaded once`);
    }
  });

  it('unpacks a layer blob that is already stored on a different parent from the local copy', async () => {
    const shared = makeTar([{ name: 'shared.txt', data: 'same blob\n' }]);
    const x = await pushImage(registry.url, 'onparent-x', 'v1', [makeTar([{ name: 'x', data: 'x' }]), shared]);
    const y = await pushImage(registry.url, 'onparent-y', 'v1', [makeTar([{ name: 'y', data: 'y' }]), shared]);
    assert.equal(x.layerDigests[1], y.layerDigests[1]);
    proxy = await startProxy(registry.url);
    stack = makeStack();
    const rx = await stack.puller.pull(`${proxy.host}/onparent-x:v1`);
    const progress: LayerProgress[][] = [];
    const ry = await stack.puller.pull(`${proxy.host}/onparent-y:v1`, { onProgress: (l) => progress.push(l) });
    assert.notEqual(rx.layers[1]!.chainId, ry.layers[1]!.chainId);
    assert.equal(proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(x.layerDigests[1]!)).length, 1, 'shared blob downloaded once');
    assert.ok(progress.some((e) => e[1]!.phase === LayerPhase.LAYER_PHASE_EXTRACTING));
    const c = await stack.snapshotter.mountContainer('onparent', ry.chainId);
    assert.equal(readFileSync(join(c.rootfs, 'shared.txt'), 'utf8'), 'same blob\n');
    assert.equal(readFileSync(join(c.rootfs, 'y'), 'utf8'), 'y');
    assert.ok(!existsSync(join(c.rootfs, 'x')));
  });

  it('pulls zstd layers through the zstd decoder and rejects a corrupt one cleanly', async () => {
    const layer = makeTar([{ name: 'z/', type: '5' }, { name: 'z/data', data: Buffer.alloc(300000, 4) }, { name: 'z/.wh.gone', data: '' }]);
    const pushed = await pushImage(registry.url, 'zstd-ok', 'v1', [layer], { zstd: true });
    stack = makeStack({ zstd: true });
    const rec = await stack.puller.pull(`${registry.host}/zstd-ok:v1`);
    assert.equal(rec.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    assert.equal(rec.layers[0]!.digest, pushed.layerDigests[0]);
    const snap = (await stack.snapshotter.stat(rec.chainId))!;
    assert.equal(statSync(join(snap.dir, 'z', 'data')).size, 300000);
    assert.ok(statSync(join(snap.dir, 'z', 'gone')).isCharacterDevice());
    const bad = await pushImage(registry.url, 'zstd-bad', 'v1', [makeTar([{ name: 'a', data: 'a' }])], { gzip: false, layerMediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' });
    await assert.rejects(stack.puller.pull(`${registry.host}/zstd-bad:v1`), (e: Error) => {
      assert.match(e.message, /zstd/);
      assert.ok(e.message.includes(bad.layerDigests[0]!));
      return true;
    });
    await stack.destroy();
    stack = makeStack({ zstd: true, maxLayerSize: 4 * 1024 * 1024 });
    await pushImage(registry.url, 'zstd-bomb', 'v1', [makeTar([{ name: 'zeros', data: Buffer.alloc(64 * 1024 * 1024) }])], { zstd: true });
    await assert.rejects(stack.puller.pull(`${registry.host}/zstd-bomb:v1`), /decompressed size exceeds the limit of 4194304 bytes/);
    assert.deepEqual(readdirSync(join(stack.root, 'snapshots', 'tmp')), []);
    assert.deepEqual(readdirSync(join(stack.root, 'content', 'sha256')), []);
  });

  it('handles the same layer blob twice in one image (empty layers of converted images)', async () => {
    const empty = makeTar([]);
    const pushed = await pushImage(registry.url, 'repeated', 'v1', [makeTar([{ name: 'a', data: 'a' }]), empty, makeTar([{ name: 'b', data: 'b' }]), empty]);
    assert.equal(pushed.layerDigests[1], pushed.layerDigests[3]);
    stack = makeStack();
    const rec = await stack.puller.pull(`${registry.host}/repeated:v1`);
    assert.equal(new Set(rec.layers.map((l) => l.chainId)).size, 4);
    const c = await stack.snapshotter.mountContainer('repeated', rec.chainId);
    assert.deepEqual(readdirSync(c.rootfs).sort(), ['a', 'b']);
  });

  it('downloads at most 3 layers at once by default', async () => {
    const layers = Array.from({ length: 7 }, (_, i) => makeTar([{ name: `f${i}`, data: `${i}` }]));
    await pushImage(registry.url, 'parallel', 'v1', layers);
    proxy = await startProxy(registry.url, { blobDelayMs: 150 });
    stack = makeStack();
    const rec = await stack.puller.pull(`${proxy.host}/parallel:v1`);
    assert.equal(rec.layers.length, 7);
    assert.equal(proxy.maxConcurrentBlobs, 3);
  });

  it('pulls and mounts a 60-layer image with the top layer winning', async () => {
    const layers: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      layers.push(makeTar([{ name: `layers/layer-${i}`, data: `${i}\n` }, { name: 'shared', data: `from ${i}\n` }]));
    }
    await pushImage(registry.url, 'sixty', 'v1', layers);
    stack = makeStack();
    const rec = await stack.service.pull(`${registry.host}/sixty:v1`);
    assert.equal(rec.layers.length, 60);
    const c = await stack.snapshotter.mountContainer('sixty', rec.chainId);
    assert.equal(readdirSync(join(c.rootfs, 'layers')).length, 60);
    assert.equal(readFileSync(join(c.rootfs, 'shared'), 'utf8'), 'from 59\n');
    assert.equal(readFileSync(join(c.rootfs, 'layers', 'layer-0'), 'utf8'), '0\n');
  });

  for (const docker of [false, true]) {
    it(`picks the linux/amd64 manifest from ${docker ? 'a Docker manifest list' : 'an OCI index'}`, async () => {
      const mt = docker ? 'docker' : 'oci';
      const amd = await pushImage(registry.url, `multi-${mt}`, 'amd64', [makeTar([{ name: 'arch', data: 'amd64\n' }])], { manifestMediaType: mt });
      const arm = await pushImage(registry.url, `multi-${mt}`, 'arm64', [makeTar([{ name: 'arch', data: 'arm64\n' }])], { manifestMediaType: mt, architecture: 'arm64' });
      const index = await pushIndex(registry.url, `multi-${mt}`, 'latest', [{ image: arm, architecture: 'arm64', variant: 'v8' }, { image: amd, architecture: 'amd64' }], docker);
      stack = makeStack();
      const rec = await stack.puller.pull(`${registry.host}/multi-${mt}:latest`);
      assert.equal(rec.digest, amd.digest);
      assert.equal(rec.indexDigest, index);
      const c = await stack.snapshotter.mountContainer(`multi-${mt}`, rec.chainId);
      assert.equal(readFileSync(join(c.rootfs, 'arch'), 'utf8'), 'amd64\n');
      const byDigest = await stack.puller.pull(`${registry.host}/multi-${mt}@${index}`);
      assert.equal(byDigest.digest, amd.digest);
      assert.deepEqual(await stack.service.resolve(`${registry.host}/multi-${mt}`), { reference: `${registry.host}/multi-${mt}:latest`, digest: amd.digest, indexDigest: index });
      assert.deepEqual(await stack.service.resolve(`${registry.host}/multi-${mt}:amd64`), { reference: `${registry.host}/multi-${mt}:amd64`, digest: amd.digest });
    });
  }

  it('refuses an index with no manifest for this platform, naming what it offers', async () => {
    const arm = await pushImage(registry.url, 'armonly', 'arm64', [makeTar([{ name: 'a', data: 'a' }])], { architecture: 'arm64' });
    await pushIndex(registry.url, 'armonly', 'latest', [{ image: arm, architecture: 'arm64' }]);
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/armonly:latest`), /no manifest for platform linux\/amd64 \(it offers: linux\/arm64\)/);
  });

  it('resumes a blob download with a Range request after the connection drops', async () => {
    const big = makeTar([{ name: 'big', data: Buffer.alloc(3 * 1024 * 1024, 7) }, { name: 'rand', data: Buffer.from(Array.from({ length: 100000 }, (_, i) => (i * 7919) % 251)) }]);
    const pushed = await pushImage(registry.url, 'resume', 'v1', [big], { gzip: false });
    let dropped = false;
    proxy = await startProxy(registry.url, {
      transform: (req, up) => {
        if (!dropped && req.method === 'GET' && req.path.endsWith(pushed.layerDigests[0]!) && up.status === 200) {
          dropped = true;
          return { dropAfter: 1024 * 1024 };
        }
        return undefined;
      },
    });
    stack = makeStack();
    const rec = await stack.puller.pull(`${proxy.host}/resume:v1`);
    assert.ok(dropped);
    const ranged = proxy.requests.filter((r) => r.path.endsWith(pushed.layerDigests[0]!) && r.range !== undefined);
    assert.equal(ranged.length, 1);
    assert.match(ranged[0]!.range!, /^bytes=\d+-$/);
    const c = await stack.snapshotter.mountContainer('resume', rec.chainId);
    assert.equal(statSync(join(c.rootfs, 'big')).size, 3 * 1024 * 1024);
  });

  it('gives up after the configured attempts when the registry keeps failing', async () => {
    proxy = await startProxy(registry.url, { transform: () => ({ status: 502, body: Buffer.from('bad gateway') }) });
    stack = makeStack({ client: { attempts: 3 } });
    await assert.rejects(stack.puller.pull(`${proxy.host}/whatever:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'unavailable');
      assert.match(e.message, /registry ".*" answered 502 for GET \/v2\/whatever\/manifests\/v1: bad gateway/);
      return true;
    });
    assert.equal(proxy.requests.length, 3);
  });

  it('follows a blob redirect to another origin without sending credentials there', async () => {
    const pushed = await pushImage(registry.url, 'redirected', 'v1', [makeTar([{ name: 'r', data: 'r' }])]);
    const storage = await startProxy(registry.url);
    try {
      proxy = await startProxy(registry.url, {
        bearer: { username: 'u', password: 'p' },
        transform: (req) => (req.path.includes('/blobs/') ? { status: 307, headers: { location: `${storage.url}${req.path}` }, body: Buffer.alloc(0) } : undefined),
      });
      stack = makeStack({ client: { credentials: () => ({ username: 'u', password: 'p' }) } });
      const rec = await stack.puller.pull(`${proxy.host}/redirected:v1`);
      assert.equal(rec.layers[0]!.digest, pushed.layerDigests[0]);
      const atStorage = storage.requests.filter((r) => r.path.includes('/blobs/'));
      assert.ok(atStorage.length >= 2, 'config and layer fetched from the redirect target');
      assert.ok(proxy.requests.some((r) => r.path.includes('/blobs/') && r.authorization?.startsWith('Bearer ')), 'the registry itself got the token');
      assert.ok(atStorage.every((r) => r.authorization === undefined), 'the redirect target got no credentials');
    } finally {
      await storage.stop();
    }
  });

  it('retries a 5xx answer and a dropped connection, then succeeds', async () => {
    await pushImage(registry.url, 'flaky', 'v1', [makeTar([{ name: 'f', data: 'f' }])]);
    let failures = 0;
    proxy = await startProxy(registry.url, {
      transform: (req) => {
        if (!req.path.includes('/manifests/')) return undefined;
        failures++;
        if (failures === 1) return { status: 503, body: Buffer.from('busy') };
        if (failures === 2) return { dropAfter: 0 }; // connection closed before the body
        return undefined;
      },
    });
    stack = makeStack();
    const rec = await stack.puller.pull(`${proxy.host}/flaky:v1`);
    assert.equal(rec.layers.length, 1);
    assert.equal(failures, 3);
  });
});
