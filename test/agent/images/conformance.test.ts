import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { buildImage, LAYERED_IMAGE_FACTS, pushTestImage, TEST_IMAGE_CONFIG } from '../../harness/images.js';
import { makeStack, type Stack } from './stack.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..', '..', '..');

type Tree = Record<string, Record<string, unknown>>;

function dumpTree(dir: string): Tree {
  const script = join(repoRoot, 'test', 'agent', 'images', 'treedump.py');
  return JSON.parse(execFileSync('python3', [script, dir], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })) as Tree;
}

describe('ImagePuller against images made with real tools', () => {
  let registry: RegistryService;
  let stack: Stack | undefined;
  let scratch: string | undefined;

  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    await registry?.stop();
  });
  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  });

  for (const mode of ['sync', 'parallel'] as const) it(`unpacks the layered umoci image exactly like umoci unpack, file by file, when files are created ${mode === 'sync' ? 'on the main thread' : 'by the writer threads'}`, async function () {
    this.timeout(180000);
    const built = await buildImage('layered');
    const pushed = await pushTestImage(registry.host, 'layered');
    stack = makeStack({ layerWriteMode: mode });
    const rec = await stack.puller.pull(pushed.reference);
    assert.equal(rec.digest, pushed.digest);
    assert.equal(rec.layers.length, TEST_IMAGE_CONFIG.layered.layers);
    const c = await stack.snapshotter.mountContainer('layered', rec.chainId);

    scratch = mkdtempSync(join(tmpdir(), 'berth-umoci-'));
    execFileSync('cp', ['-a', built.layout, join(scratch, 'layout')]);
    execFileSync('umoci', ['unpack', '--image', `${join(scratch, 'layout')}:latest`, join(scratch, 'bundle')]);
    const theirs = dumpTree(join(scratch, 'bundle', 'rootfs'));
    const ours = dumpTree(c.rootfs);
    assert.ok(Object.keys(theirs).length > 100, 'umoci unpacked a real tree');
    assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
    for (const path of Object.keys(theirs)) assert.deepEqual(ours[path], theirs[path], `entry ${path}`);

    // And the facts the image was built to show.
    for (const [p, text] of Object.entries(LAYERED_IMAGE_FACTS.files)) assert.equal(readFileSync(join(c.rootfs, p), 'utf8'), text, p);
    for (const p of LAYERED_IMAGE_FACTS.absent) assert.equal(ours[p], undefined, `${p} is whited out`);
    assert.equal(statSync(join(c.rootfs, LAYERED_IMAGE_FACTS.setuid.path)).mode & 0o7777, LAYERED_IMAGE_FACTS.setuid.mode);
    assert.equal(statSync(join(c.rootfs, LAYERED_IMAGE_FACTS.hardlink.path)).ino, statSync(join(c.rootfs, LAYERED_IMAGE_FACTS.hardlink.target)).ino);
    assert.equal(ours[LAYERED_IMAGE_FACTS.fifo]?.type, 'fifo');
    assert.deepEqual(ours[LAYERED_IMAGE_FACTS.xattr.path]?.xattrs, { [LAYERED_IMAGE_FACTS.xattr.name]: Buffer.from(LAYERED_IMAGE_FACTS.xattr.value).toString('hex') });
  });

  it('pulls busybox and whalesay, sharing the busybox layer on disk, and whalesay runs', async function () {
    this.timeout(180000);
    const bb = await pushTestImage(registry.host, 'busybox');
    const ws = await pushTestImage(registry.host, 'whalesay');
    stack = makeStack();
    const rb = await stack.puller.pull(bb.reference);
    const rw = await stack.puller.pull(ws.reference);
    assert.equal(rw.layers[0]!.digest, rb.layers[0]!.digest);
    assert.equal(rw.layers[0]!.chainId, rb.layers[0]!.chainId);
    const c = await stack.snapshotter.mountContainer('whalesay', rw.chainId);
    const out = execFileSync('chroot', [c.rootfs, '/usr/bin/env', 'PATH=/usr/games:/usr/bin:/bin', 'LC_ALL=C', 'cowsay', 'hi'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(out, /< hi >/);
  });
});
