import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run, tryRun } from './exec.js';
import {
  buildImage, LAYERED_IMAGE_FACTS, makeTempDir, MEDIA_TYPES, pushTestImage, startRegistry, startRegistryWithImages,
  TEST_IMAGE_CONFIG, TEST_IMAGE_NAMES, unpackTestImage, type RegistryService, type TestImageName,
} from './index.js';

interface Manifest {
  mediaType?: string;
  config: { mediaType: string; digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
}

interface ImageConfig {
  architecture: string;
  os: string;
  config: { Cmd?: string[]; Env?: string[] };
  rootfs: { type: string; diff_ids: string[] };
}

const ACCEPT = [MEDIA_TYPES.manifest, MEDIA_TYPES.index, 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');

async function getManifest(registry: RegistryService, name: string, ref: string): Promise<{ manifest: Manifest; contentType: string; digest: string }> {
  const res = await fetch(`${registry.url}/v2/${name}/manifests/${ref}`, { headers: { Accept: ACCEPT } });
  assert.equal(res.status, 200, `GET manifest ${name}:${ref}`);
  const manifest = (await res.json()) as Manifest;
  return { manifest, contentType: res.headers.get('content-type') ?? '', digest: res.headers.get('docker-content-digest') ?? '' };
}

async function getBlob(registry: RegistryService, name: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${registry.url}/v2/${name}/blobs/${digest}`);
  assert.equal(res.status, 200, `GET blob ${digest}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Unpacks a built image with umoci (the reference OCI unpacker) into a temp bundle; returns the rootfs path. */
async function unpack(name: TestImageName, dirs: string[]): Promise<string> {
  const dir = makeTempDir(`unpack-${name}`);
  dirs.push(dir);
  return unpackTestImage(name, join(dir, 'bundle'));
}

function chroot(rootfs: string, args: string[]) {
  return tryRun('chroot', [rootfs, ...args], { env: { PATH: TEST_IMAGE_CONFIG.whalesay.env[0]?.slice(5) } });
}

describe('test harness images', function () {
  this.timeout(180_000);
  let registry: RegistryService | undefined;
  const dirs: string[] = [];

  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  for (const name of TEST_IMAGE_NAMES) {
    it(`pushes ${name} with the expected manifest, layers and config when built from real tools`, async () => {
      registry = await startRegistry();
      const pushed = await pushTestImage(registry.host, name);
      assert.equal(pushed.reference, `${registry.host}/${name}:latest`);
      assert.match(pushed.digest, /^sha256:[0-9a-f]{64}$/);

      const { manifest, contentType, digest } = await getManifest(registry, name, 'latest');
      assert.equal(contentType, MEDIA_TYPES.manifest);
      assert.equal(digest, pushed.digest);
      const expected = TEST_IMAGE_CONFIG[name];
      assert.equal(manifest.layers.length, expected.layers);
      for (const layer of manifest.layers) assert.equal(layer.mediaType, MEDIA_TYPES.layerGzip);
      assert.equal(manifest.config.mediaType, MEDIA_TYPES.config);

      const configBytes = await getBlob(registry, name, manifest.config.digest);
      const config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
      assert.deepEqual(config.config.Cmd, expected.cmd);
      assert.deepEqual(config.config.Env, expected.env);
      assert.equal(config.os, 'linux');
      assert.equal(config.rootfs.diff_ids.length, expected.layers);

      // The same manifest by digest, and every layer blob present with its size.
      const byDigest = await getManifest(registry, name, pushed.digest);
      assert.deepEqual(byDigest.manifest, manifest);
      for (const layer of manifest.layers) {
        const res = await fetch(`${registry.url}/v2/${name}/blobs/${layer.digest}`, { method: 'HEAD' });
        assert.equal(res.status, 200);
        assert.equal(Number(res.headers.get('content-length')), layer.size);
      }
    });
  }

  it('returns the cached layout when an image is built a second time', async () => {
    const first = await buildImage('busybox');
    const second = await buildImage('busybox');
    assert.equal(second.layout, first.layout);
    assert.equal(second.manifestDigest, first.manifestDigest);
    assert.ok(statSync(join(first.layout, '.complete')).isFile());
  });

  it('shares the busybox layer blob between busybox and whalesay', async () => {
    registry = await startRegistry();
    const [bb, ws] = await Promise.all([pushTestImage(registry.host, 'busybox'), pushTestImage(registry.host, 'whalesay')]);
    const a = await getManifest(registry, 'busybox', bb.digest);
    const b = await getManifest(registry, 'whalesay', ws.digest);
    assert.equal(b.manifest.layers[0]?.digest, a.manifest.layers[0]?.digest);
  });

  it('runs cowsay, date and bash from the whalesay rootfs when chrooted', async () => {
    const rootfs = await unpack('whalesay', dirs);
    const cow = await chroot(rootfs, ['/usr/games/cowsay', 'hi']);
    assert.equal(cow.code, 0, cow.stderr);
    assert.match(cow.stdout, /< hi >/);
    assert.match(cow.stdout, /\(oo\)/);
    const byPath = await chroot(rootfs, ['/bin/sh', '-c', 'cowsay "Hello, berth"']);
    assert.equal(byPath.code, 0, byPath.stderr);
    assert.match(byPath.stdout, /< Hello, berth >/);
    const date = await chroot(rootfs, ['date', '+%Y']);
    assert.equal(date.code, 0, date.stderr);
    assert.equal(date.stdout.trim(), String(new Date().getUTCFullYear()));
    const bash = await chroot(rootfs, ['bash', '-c', 'echo "bash $BASH_VERSION"; hostname >/dev/null 2>&1; echo done']);
    assert.equal(bash.code, 0, bash.stderr);
    assert.match(bash.stdout, /^bash 5\./);
  });

  it('runs sh with root and nobody known when the busybox rootfs is chrooted', async () => {
    const rootfs = await unpack('busybox', dirs);
    const res = await chroot(rootfs, ['/bin/sh', '-c', 'id -un; id -u nobody; ls /bin | wc -l']);
    assert.equal(res.code, 0, res.stderr);
    const [user, nobody, count] = res.stdout.trim().split('\n');
    assert.equal(user, 'root');
    assert.equal(nobody, '65534');
    assert.ok(Number(count) > 50, `bin has ${count} entries`);
    assert.equal((statSync(join(rootfs, 'tmp')).mode & 0o7777), 0o1777);
  });

  it('unpacks layered to the documented tree when whiteouts, opaque dirs and special files are applied', async () => {
    const rootfs = await unpack('layered', dirs);
    const F = LAYERED_IMAGE_FACTS;
    const at = (p: string) => join(rootfs, p);
    for (const [path, content] of Object.entries(F.files)) assert.equal(readFileSync(at(path), 'utf8'), content, path);
    for (const path of F.absent) assert.throws(() => lstatSync(at(path)), { code: 'ENOENT' }, `${path} should be gone`);
    assert.deepEqual(readdirSync(at(F.opaqueDir.path)).sort(), [...F.opaqueDir.entries]);
    assert.equal(statSync(at(F.hardlink.path)).ino, statSync(at(F.hardlink.target)).ino);
    assert.equal(readlinkSync(at(F.symlink.path)), F.symlink.target);
    assert.equal(readlinkSync(at(F.replacedBySymlink.path)), F.replacedBySymlink.target);
    assert.equal(statSync(at(F.setuid.path)).mode & 0o7777, F.setuid.mode);
    assert.ok(lstatSync(at(F.fifo)).isFIFO());
    const owned = statSync(at(F.owned.path));
    assert.equal(owned.uid, F.owned.uid);
    assert.equal(owned.gid, F.owned.gid);
    // getxattr(2) through perl-base, as the image builder sets it.
    if (process.arch === 'x64') {
      const x = await run('perl', ['-e', 'my $b = "\\0" x 256; my $n = syscall(191, $ARGV[0], $ARGV[1], $b, 256); die "getxattr: $!\\n" if $n < 0; print substr($b, 0, $n)', at(F.xattr.path), F.xattr.name]);
      assert.equal(x.stdout, F.xattr.value);
    }
  });

  it('starts a registry holding every requested image when asked for several', async () => {
    const provisioned = await startRegistryWithImages(['busybox', 'whalesay']);
    registry = provisioned.registry;
    assert.deepEqual(Object.keys(provisioned.images).sort(), ['busybox', 'whalesay']);
    for (const [name, img] of Object.entries(provisioned.images)) {
      assert.equal(img.reference, `${registry.host}/${name}:latest`);
      const { digest } = await getManifest(registry, name, 'latest');
      assert.equal(digest, img.digest);
    }
  });

  it('rejects an unknown image name with the names it knows', async () => {
    await assert.rejects(async () => buildImage('nosuch'), /unknown test image "nosuch": expected one of "busybox", "whalesay", "layered"/);
  });
});
