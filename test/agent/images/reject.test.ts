import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { makeTar, pushImage, sha256, type TarItem } from './fixtures.js';
import { startProxy, type Proxy } from './proxy.js';
import { makeStack, type Stack } from './stack.js';

/** Asserts that a failed pull left no record, no partial blob and no snapshot behind. */
function assertNothingLeft(stack: Stack, layerDigests: string[]): void {
  const dir = (p: string): string[] => (existsSync(join(stack.root, p)) ? readdirSync(join(stack.root, p)) : []);
  assert.deepEqual(dir('snapshots/layers'), [], 'no layer snapshot');
  assert.deepEqual(dir('snapshots/tmp'), [], 'no temp unpack dir');
  assert.deepEqual(dir('content/ingest'), [], 'no partial blob');
  for (const d of layerDigests) assert.ok(!dir('content/sha256').includes(d.slice(7)), `no blob ${d}`);
  assert.deepEqual(dir('content/sha256'), [], 'no blob at all (config and manifest are stored only on success)');
  assert.ok(!existsSync(join(stack.root, 'images', 'records.json')), 'no image record');
}

describe('ImagePuller rejects bad input', () => {
  let registry: RegistryService;
  let stack: Stack | undefined;
  let proxy: Proxy | undefined;
  let n = 0;

  before(async () => {
    registry = await startRegistry();
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

  const hostile: { what: string; items: TarItem[]; entry: string; message: RegExp }[] = [
    { what: 'an absolute name', items: [{ name: '/etc/evil', data: 'x' }], entry: '/etc/evil', message: /is absolute/ },
    { what: 'a ".." name', items: [{ name: 'a/../../evil', data: 'x' }], entry: 'a/../../evil', message: /contains "\.\."/ },
    {
      what: 'a write through a symlink',
      items: [{ name: 'link', type: '2', linkname: '/tmp' }, { name: 'link/evil', data: 'x' }],
      entry: 'link/evil',
      message: /parent "link" is a symlink/,
    },
    {
      what: 'a symlinked parent pointing outside the root',
      items: [{ name: 'up', type: '2', linkname: '../../../..' }, { name: 'up/etc/', type: '5' }],
      entry: 'up/etc/',
      message: /parent "up" is a symlink/,
    },
    { what: 'an absolute hard link', items: [{ name: 'pw', type: '1', linkname: '/etc/passwd' }], entry: 'pw', message: /hard link target .* is absolute/ },
    { what: 'a hard link escaping with ".."', items: [{ name: 'pw', type: '1', linkname: '../../etc/passwd' }], entry: 'pw', message: /hard link target .* contains "\.\."/ },
    {
      what: 'a hard link through a symlinked parent',
      items: [{ name: 'etc', type: '2', linkname: '/etc' }, { name: 'pw', type: '1', linkname: 'etc/passwd' }],
      entry: 'pw',
      message: /hard link target "etc\/passwd" is not an earlier entry of this layer/,
    },
    { what: 'a whiteout of ".."', items: [{ name: 'd/', type: '5' }, { name: 'd/.wh..', data: '' }], entry: 'd/.wh..', message: /whiteout "\.wh\.\." does not name a file/ },
    { what: 'a whiteout of "."', items: [{ name: '.wh..', data: '' }], entry: '.wh..', message: /whiteout/ },
    { what: 'an unknown entry type', items: [{ name: 'sparse', type: 'S', data: 'x' }], entry: 'sparse', message: /unsupported entry type "S"/ },
    { what: 'a duplicate entry', items: [{ name: 'f', data: 'one' }, { name: 'f', data: 'two' }], entry: 'f', message: /duplicate entry for "f"/ },
    { what: 'a file replacing a directory', items: [{ name: 'd/', type: '5' }, { name: 'd', data: 'x' }], entry: 'd', message: /duplicate entry/ },
    { what: 'a file under a file', items: [{ name: 'f', data: 'x' }, { name: 'f/g', data: 'y' }], entry: 'f/g', message: /parent "f" is not a directory/ },
  ];

  for (const h of hostile) {
    it(`rejects a layer with ${h.what}, naming image, layer and entry, and leaves nothing behind`, async () => {
      const repo = `hostile-${n++}`;
      const tar = makeTar([{ name: 'ok', data: 'fine' }, ...h.items]);
      const pushed = await pushImage(registry.url, repo, 'v1', [tar]);
      stack = makeStack();
      const image = `${registry.host}/${repo}:v1`;
      const err = await stack.puller.pull(image).then(() => undefined, (e: unknown) => e as Error);
      assert.ok(err, 'pull must fail');
      assert.match(err.message, h.message);
      assert.ok(err.message.includes(`"${image}"`), `names the image: ${err.message}`);
      assert.ok(err.message.includes(pushed.layerDigests[0]!), `names the layer: ${err.message}`);
      assert.ok(err.message.includes(JSON.stringify(h.entry)), `names the entry: ${err.message}`);
      assertNothingLeft(stack, pushed.layerDigests);
    });
  }

  it('rejects a decompression bomb over the size cap', async () => {
    const tar = makeTar([{ name: 'zeros', data: Buffer.alloc(64 * 1024 * 1024) }]);
    const pushed = await pushImage(registry.url, 'bomb', 'v1', [tar]);
    assert.ok(gzipSync(tar, { level: 1 }).length < 1024 * 1024);
    stack = makeStack({ maxLayerSize: 8 * 1024 * 1024 });
    await assert.rejects(stack.puller.pull(`${registry.host}/bomb:v1`), (e: Error) => {
      assert.match(e.message, /decompressed size exceeds the limit of 8388608 bytes/);
      assert.ok(e.message.includes(pushed.layerDigests[0]!));
      return true;
    });
    assertNothingLeft(stack, pushed.layerDigests);
  });

  it('rejects a truncated tar and a corrupt header', async () => {
    const full = makeTar([{ name: 'a', data: Buffer.alloc(5000, 1) }], { noTrailer: true });
    const cut = await pushImage(registry.url, 'cut', 'v1', [full.subarray(0, 2048)]);
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/cut:v1`), /archive is truncated inside entry "a"/);
    assertNothingLeft(stack, cut.layerDigests);
    const bad = makeTar([{ name: 'a', data: 'x' }]);
    bad[0] = 0x62; // changes the name, not the checksum
    const corrupt = await pushImage(registry.url, 'corrupt', 'v1', [bad]);
    await assert.rejects(stack.puller.pull(`${registry.host}/corrupt:v1`), /header checksum mismatch/);
    assertNothingLeft(stack, corrupt.layerDigests);
  });

  it('rejects a blob whose bytes do not match its digest', async () => {
    const pushed = await pushImage(registry.url, 'wrongdigest', 'v1', [makeTar([{ name: 'a', data: 'aaaa' }])], { gzip: false });
    proxy = await startProxy(registry.url, {
      transform: (req, up) => {
        if (!req.path.endsWith(pushed.layerDigests[0]!) || up.status !== 200) return undefined;
        const body = Buffer.from(up.body);
        body[512] = 0x62; // 'a' -> 'b' in the file content
        return { body };
      },
    });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${proxy.host}/wrongdigest:v1`), (e: Error) => {
      assert.match(e.message, new RegExp(`blob digest mismatch: expected "${pushed.layerDigests[0]}", got "sha256:[a-f0-9]{64}"`));
      assert.match(e.message, /wrongdigest:v1/);
      return true;
    });
    assertNothingLeft(stack, pushed.layerDigests);
  });

  it('rejects a truncated blob', async () => {
    const pushed = await pushImage(registry.url, 'truncated', 'v1', [makeTar([{ name: 'a', data: Buffer.alloc(100000, 3) }])]);
    proxy = await startProxy(registry.url, {
      transform: (req, up) => (req.path.endsWith(pushed.layerDigests[0]!) && up.status === 200 ? { body: up.body.subarray(0, up.body.length - 10) } : undefined),
    });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${proxy.host}/truncated:v1`), /truncated/);
    assertNothingLeft(stack, pushed.layerDigests);
  });

  it('rejects layer content that does not match the config diff ID', async () => {
    const tar = makeTar([{ name: 'a', data: 'a' }]);
    const pushed = await pushImage(registry.url, 'diffid', 'v1', [tar], { diffIds: [sha256(Buffer.from('other'))] });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/diffid:v1`), /uncompressed content has digest "sha256:[a-f0-9]{64}", but the image config says/);
    assertNothingLeft(stack, pushed.layerDigests);
  });

  it('rejects a layer that claims gzip but is not', async () => {
    const pushed = await pushImage(registry.url, 'notgzip', 'v1', [makeTar([{ name: 'a', data: 'a' }])], { gzip: false, layerMediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/notgzip:v1`), /invalid gzip stream/);
    assertNothingLeft(stack, pushed.layerDigests);
  });

  it('rejects a manifest larger than the limit before reading it all', async () => {
    await pushImage(registry.url, 'bigmanifest', 'v1', [makeTar([{ name: 'a', data: 'a' }])], { annotations: { pad: 'x'.repeat(20000) } });
    stack = makeStack({ client: { maxManifestSize: 16 * 1024 } });
    await assert.rejects(stack.puller.pull(`${registry.host}/bigmanifest:v1`), /manifest ".*bigmanifest:v1" is larger than the limit of 16384 bytes/);
    assertNothingLeft(stack, []);
  });

  it('rejects unknown and zstd layer media types before downloading layers', async () => {
    const a = await pushImage(registry.url, 'unknownlayer', 'v1', [makeTar([{ name: 'a', data: 'a' }])], { layerMediaType: 'application/x-berth-mystery' });
    const z = await pushImage(registry.url, 'zstdlayer', 'v1', [makeTar([{ name: 'a', data: 'b' }])], { layerMediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/unknownlayer:v1`), /unknown layer media type "application\/x-berth-mystery"/);
    await assert.rejects(stack.puller.pull(`${registry.host}/zstdlayer:v1`), /zstd-compressed layers cannot be unpacked/);
    assertNothingLeft(stack, [...a.layerDigests, ...z.layerDigests]);
  });

  it('rejects a manifest of an unknown media type', async () => {
    await pushImage(registry.url, 'weird', 'v1', [makeTar([{ name: 'a', data: 'a' }])]);
    proxy = await startProxy(registry.url, {
      transform: (req, up) => {
        if (!req.path.includes('/manifests/') || up.status !== 200) return undefined;
        const j = JSON.parse(up.body.toString('utf8')) as Record<string, unknown>;
        j.mediaType = 'application/vnd.example.thing+json';
        return { body: Buffer.from(JSON.stringify(j)), headers: { 'content-type': 'application/vnd.example.thing+json' } };
      },
    });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${proxy.host}/weird:v1`), /has unknown media type "application\/vnd\.example\.thing\+json"/);
    assertNothingLeft(stack, []);
  });

  it('rejects a manifest whose digest differs from the one asked for', async () => {
    const pushed = await pushImage(registry.url, 'pinned', 'v1', [makeTar([{ name: 'a', data: 'a' }])]);
    proxy = await startProxy(registry.url, {
      transform: (req, up) => (req.path.includes('/manifests/') && up.status === 200 ? { body: Buffer.concat([up.body, Buffer.from(' ')]) } : undefined),
    });
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${proxy.host}/pinned@${pushed.digest}`), new RegExp(`expected "${pushed.digest}"`));
  });

  it('reports a missing image as not found', async () => {
    stack = makeStack();
    await assert.rejects(stack.puller.pull(`${registry.host}/nosuch:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'not_found');
      assert.match(e.message, /404/);
      return true;
    });
  });

  it('stops when the signal aborts and leaves nothing behind', async () => {
    const pushed = await pushImage(registry.url, 'slow', 'v1', [makeTar([{ name: 'a', data: Buffer.alloc(4 * 1024 * 1024, 9) }])], { gzip: false });
    const ac = new AbortController();
    proxy = await startProxy(registry.url, {
      transform: (req, up) => {
        if (req.path.endsWith(pushed.layerDigests[0]!) && up.status === 200) {
          setTimeout(() => ac.abort(), 50);
          return { dropAfter: 1024 * 1024 };
        }
        return undefined;
      },
    });
    stack = makeStack({ client: { backoffMs: 2000 } });
    await assert.rejects(stack.puller.pull(`${proxy.host}/slow:v1`, { signal: ac.signal }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'cancelled');
      return true;
    });
    assertNothingLeft(stack, pushed.layerDigests);
  });
});
