/**
 * Test images built with real tools from Debian packages, cached on disk and
 * pushed to a test registry with skopeo.
 *
 * Vocabulary:
 * - recipe: how one named image is made (busybox, whalesay, layered); its
 *   hash (recipe version, package names, the host's busybox binary) names the
 *   cache entry, so a changed recipe builds a new image.
 * - layout: an OCI image layout directory (oci-layout, index.json, blobs/)
 *   with the image tagged "latest"; what skopeo pushes as `oci:DIR:latest`.
 *
 * Lifecycle: buildImage() returns the cached layout, building it first when
 * missing (into a temp dir renamed into place, so concurrent runs never see
 * half an image). pushTestImage() builds if needed and copies the layout to a
 * registry. Nothing here needs the internet beyond Debian's apt mirror, and
 * only on a cold cache (.deb files are cached too).
 *
 * The images:
 * - busybox: one layer; Debian's static /bin/busybox with a symlink for every
 *   applet, /etc/passwd and /etc/group (root, nobody), /tmp 1777; Cmd ["sh"].
 * - whalesay: two layers; the busybox layer (the very same blob, so stores
 *   can share it) plus perl-base, cowsay, bash and the libraries they need
 *   from Debian's .debs. Runs `cowsay hi`, `date`, `hostname`, `bash`.
 * - layered: four layers made with umoci; see LAYERED_IMAGE_FACTS for what
 *   the final filesystem must look like (whiteouts, an opaque directory, a
 *   hardlink, a symlink, a setuid file, a fifo, a uid-1000 file, an xattr).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import {
  chmod, chown, copyFile, link, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { run } from './exec.js';

/** Bump when a recipe changes in a way the hash inputs below do not capture. */
const RECIPE_VERSION = 4;

export const TEST_IMAGE_NAMES = ['busybox', 'whalesay', 'layered'] as const;
export type TestImageName = (typeof TEST_IMAGE_NAMES)[number];

export const MEDIA_TYPES = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** PATH of every test image (whalesay adds /usr/games). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What each image's config says; tests compare against these. */
export const TEST_IMAGE_CONFIG: Record<TestImageName, { cmd: string[]; env: string[]; layers: number }> = {
  busybox: { cmd: ['sh'], env: [`PATH=${DEFAULT_PATH}`], layers: 1 },
  whalesay: { cmd: ['bash'], env: [`PATH=${DEFAULT_PATH}:/usr/games`], layers: 2 },
  layered: { cmd: ['sh'], env: [`PATH=${DEFAULT_PATH}`], layers: 4 },
};

/** Debian packages unpacked into whalesay's second layer (perl-modules-5.xx is added: only Getopt/Std.pm is taken from it). */
const WHALESAY_DEBS = ['libc6', 'libcrypt1', 'libtinfo6', 'perl-base', 'bash', 'cowsay', 'libtext-charwidth-perl'] as const;
/** Files cowsay loads from perl-modules (found with %INC); paths under /usr/share/perl/<version>/. */
const PERL_MODULE_FILES = ['Getopt/Std.pm'] as const;
/** Dropped from whalesay to keep the layer small. */
const WHALESAY_PRUNE = ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian', 'usr/lib/x86_64-linux-gnu/gconv', 'usr/lib/aarch64-linux-gnu/gconv'];

/**
 * The final filesystem of the `layered` image, layer by layer:
 * 1. busybox base + /data/{keep.txt, gone.txt, gonedir/inner.txt, opaque/{old1.txt, sub/old2.txt}}
 * 2. (umoci repack) deletes gone.txt and gonedir (per-file whiteouts), adds the
 *    hardlink, symlink, setuid file, fifo, uid-1000 file and xattr file
 * 3. (hand-made tar, `umoci raw add-layer`) /data/opaque/.wh..wh..opq + new.txt
 * 4. (hand-made tar) a plain file replaced by a directory and a directory
 *    replaced by a symlink: /data/replaced-file/ and /data/replaced-dir -> keep.txt
 */
export const LAYERED_IMAGE_FACTS = {
  files: {
    '/data/keep.txt': 'keep\n',
    '/data/opaque/new.txt': 'new\n',
    '/data/hardlink-target.txt': 'linked\n',
    '/data/hardlink.txt': 'linked\n',
    '/data/owned-by-1000': 'uid 1000\n',
    '/data/setuid': '#!/bin/sh\necho setuid\n',
    '/data/xattr.txt': 'has an xattr\n',
    '/data/replaced-file/inside.txt': 'dir now\n',
  } as Record<string, string>,
  absent: ['/data/gone.txt', '/data/gonedir', '/data/opaque/old1.txt', '/data/opaque/sub'],
  /** Every entry of this directory after all layers (opaque whiteout hid the rest). */
  opaqueDir: { path: '/data/opaque', entries: ['new.txt'] },
  hardlink: { path: '/data/hardlink.txt', target: '/data/hardlink-target.txt' },
  symlink: { path: '/data/symlink', target: 'keep.txt' },
  replacedBySymlink: { path: '/data/replaced-dir', target: 'keep.txt' },
  setuid: { path: '/data/setuid', mode: 0o4755 },
  fifo: '/data/fifo',
  owned: { path: '/data/owned-by-1000', uid: 1000, gid: 1000 },
  xattr: { path: '/data/xattr.txt', name: 'user.berth', value: 'layered' },
} as const;

export interface BuiltImage {
  name: TestImageName;
  /** OCI layout directory (read-only: it is the shared cache entry). */
  layout: string;
  tag: 'latest';
  manifestDigest: string;
}

export interface PushedImage {
  /** HOST:PORT/NAME:TAG */
  reference: string;
  /** Manifest digest (sha256:...), as the registry serves it. */
  digest: string;
}

export interface BuildOptions {
  signal?: AbortSignal;
}

/** Root of the on-disk cache (images and .debs); BERTH_TEST_CACHE overrides. */
export function testCacheDir(): string {
  return process.env.BERTH_TEST_CACHE ?? '/var/cache/berth-test';
}

export function isTestImageName(name: string): name is TestImageName {
  return (TEST_IMAGE_NAMES as readonly string[]).includes(name);
}

function checkName(name: string): TestImageName {
  if (!isTestImageName(name)) {
    throw new Error(`unknown test image "${name}": expected one of ${TEST_IMAGE_NAMES.map((n) => `"${n}"`).join(', ')}`);
  }
  return name;
}

const BUSYBOX_BINARY = ['/bin/busybox', '/usr/bin/busybox'];

function busyboxPath(): string {
  const found = BUSYBOX_BINARY.find((p) => existsSync(p));
  if (!found) throw new Error('failed to find busybox: expected /bin/busybox from Debian\'s busybox-static (apt-get install busybox-static)');
  return found;
}

let busyboxHash: string | undefined;
function hostBusyboxHash(): string {
  busyboxHash ??= createHash('sha256').update(readFileSync(busyboxPath())).digest('hex');
  return busyboxHash;
}

function recipeHash(name: TestImageName): string {
  const inputs: Record<TestImageName, () => unknown> = {
    busybox: () => ({ busybox: hostBusyboxHash() }),
    whalesay: () => ({ base: recipeHash('busybox'), debs: WHALESAY_DEBS, perl: PERL_MODULE_FILES, prune: WHALESAY_PRUNE }),
    layered: () => ({ busybox: hostBusyboxHash(), facts: LAYERED_IMAGE_FACTS }),
  };
  return createHash('sha256')
    .update(JSON.stringify({ v: RECIPE_VERSION, name, config: TEST_IMAGE_CONFIG[name], inputs: inputs[name](), arch: process.arch }))
    .digest('hex')
    .slice(0, 16);
}

function ociArch(): string {
  switch (process.arch) {
    case 'x64': return 'amd64';
    case 'arm64': return 'arm64';
    default: return process.arch;
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface LayerBlob {
  descriptor: Descriptor;
  diffId: string;
  createdBy: string;
}

/** Minimal writer of an OCI image layout with one tagged image. */
class LayoutWriter {
  readonly blobs: string;
  constructor(readonly dir: string) {
    this.blobs = join(dir, 'blobs', 'sha256');
  }

  async init(): Promise<void> {
    await mkdir(this.blobs, { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  }

  async addJson(mediaType: string, value: unknown): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(value));
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(this.blobs, hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  }

  /** Tars `root` (its top-level entries, sorted, numeric owners), gzips it and stores the blob. */
  async addLayerFromDir(root: string, work: string, createdBy: string, tarArgs: string[] = []): Promise<LayerBlob> {
    const entries = (await readdir(root)).sort();
    const tarFile = join(work, `layer-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`);
    await run('tar', ['--numeric-owner', '--sort=name', '--xattrs', '--xattrs-include=*', ...tarArgs, '-C', root, '-cf', tarFile, '--', ...entries]);
    return this.addLayerFromTar(tarFile, createdBy);
  }

  async addLayerFromTar(tarFile: string, createdBy: string): Promise<LayerBlob> {
    const diffId = await sha256File(tarFile);
    const gzFile = `${tarFile}.gz`;
    await pipeline(createReadStream(tarFile), createGzip({ level: 6 }), createWriteStream(gzFile));
    const hex = await sha256File(gzFile);
    const size = (await stat(gzFile)).size;
    await rename(gzFile, join(this.blobs, hex));
    await rm(tarFile, { force: true });
    return { descriptor: { mediaType: MEDIA_TYPES.layerGzip, digest: `sha256:${hex}`, size }, diffId: `sha256:${diffId}`, createdBy };
  }

  async copyBlobFrom(otherLayout: string, digest: string): Promise<void> {
    const hex = digest.replace(/^sha256:/, '');
    await copyFile(join(otherLayout, 'blobs', 'sha256', hex), join(this.blobs, hex));
  }

  async finish(layers: LayerBlob[], config: { cmd: string[]; env: string[] }): Promise<Descriptor> {
    const created = '2024-01-01T00:00:00Z';
    const configDesc = await this.addJson(MEDIA_TYPES.config, {
      created,
      architecture: ociArch(),
      os: 'linux',
      config: { Env: config.env, Cmd: config.cmd, WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((l) => ({ created, created_by: l.createdBy })),
    });
    const manifest = await this.addJson(MEDIA_TYPES.manifest, {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: configDesc,
      layers: layers.map((l) => l.descriptor),
    });
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.index,
      manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }));
    return manifest;
  }
}

interface ManifestJson {
  config: Descriptor;
  layers: Descriptor[];
}

/** The manifest descriptor tagged "latest" in a layout. */
export function layoutManifest(layout: string): { digest: string; manifest: ManifestJson } {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  const desc = index.manifests?.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest');
  if (!desc) throw new Error(`failed to read OCI layout "${layout}": index.json has no manifest tagged "latest"`);
  const manifest = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', desc.digest.replace(/^sha256:/, '')), 'utf8')) as ManifestJson;
  return { digest: desc.digest, manifest };
}

// ---------------------------------------------------------------- .deb cache

function debCacheDir(): string {
  return join(testCacheDir(), 'debs');
}

function cachedDeb(name: string): string | undefined {
  const dir = debCacheDir();
  if (!existsSync(dir)) return undefined;
  const hits = readdirSync(dir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort();
  const last = hits.at(-1);
  return last ? join(dir, last) : undefined;
}

/** Paths of the .debs for `names`, downloading the missing ones with `apt-get download`. */
export async function fetchDebs(names: readonly string[], opts: BuildOptions = {}): Promise<Record<string, string>> {
  const missing = names.filter((n) => !cachedDeb(n));
  if (missing.length > 0) {
    await mkdir(debCacheDir(), { recursive: true });
    const tmp = await mkdtemp(join(debCacheDir(), '.download-'));
    try {
      try {
        await run('apt-get', ['-q', '-o', 'APT::Sandbox::User=root', 'download', ...missing], { cwd: tmp, signal: opts.signal, timeoutMs: 300_000 });
      } catch (err) {
        throw new Error(`failed to download Debian packages ${missing.join(', ')} (has \`apt-get update\` been run?): ${(err as Error).message}`, { cause: err });
      }
      for (const f of await readdir(tmp)) {
        if (f.endsWith('.deb')) await rename(join(tmp, f), join(debCacheDir(), f));
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const out: Record<string, string> = {};
  for (const n of names) {
    const p = cachedDeb(n);
    if (!p) throw new Error(`failed to download Debian package "${n}": apt-get download left no ${n}_*.deb`);
    out[n] = p;
  }
  return out;
}

// ---------------------------------------------------------------- recipes

async function populateBusybox(root: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'dev', 'proc', 'sys', 'var', 'home']) {
    await mkdir(join(root, d), { recursive: true, mode: 0o755 });
  }
  await mkdir(join(root, 'root'), { mode: 0o700 });
  await mkdir(join(root, 'tmp'));
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(busyboxPath(), join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  const { stdout } = await run(busyboxPath(), ['--list-full']);
  const applets = stdout.split('\n').map((l) => l.trim()).filter((l) => l && l !== 'bin/busybox');
  if (applets.length < 50) throw new Error(`failed to list busybox applets: expected hundreds, got ${applets.length}`);
  for (const rel of applets) {
    if (rel.includes('..') || rel.startsWith('/')) throw new Error(`unexpected busybox applet path "${rel}"`);
    const at = join(root, rel);
    await mkdir(dirname(at), { recursive: true });
    await symlink('/bin/busybox', at);
  }
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nnobody:x:65534:\n');
  await writeFile(join(root, 'etc/hostname'), 'busybox\n');
}

async function buildBusybox(out: string, work: string): Promise<void> {
  const root = join(work, 'rootfs');
  await mkdir(root);
  await populateBusybox(root);
  const layout = new LayoutWriter(out);
  await layout.init();
  const layer = await layout.addLayerFromDir(root, work, 'berth test harness: busybox-static with applet links', ['--mtime=@1704067200']);
  await layout.finish([layer], TEST_IMAGE_CONFIG.busybox);
}

/** "5.36" from perl-base_5.36.0-7+deb12u4_amd64.deb: perl-modules-<that> goes with it. */
function perlVersion(perlBaseDeb: string): string {
  const m = /perl-base_(?:\d+%3a)?(\d+\.\d+)\./.exec(perlBaseDeb);
  if (!m?.[1]) throw new Error(`failed to find the perl version in "${perlBaseDeb}": expected perl-base_5.x.y-...deb`);
  return m[1];
}

async function buildWhalesay(out: string, work: string, opts: BuildOptions): Promise<void> {
  const base = await buildImage('busybox', opts);
  const debs = await fetchDebs(WHALESAY_DEBS, opts);
  const perl = perlVersion(debs['perl-base'] as string);
  const modulesPkg = `perl-modules-${perl}`;
  Object.assign(debs, await fetchDebs([modulesPkg], opts));
  const root = join(work, 'rootfs');
  await mkdir(root);
  // dpkg-deb | tar in parallel (GNU tar tolerates directories another extraction made), skipping docs and locales.
  const excludes = WHALESAY_PRUNE.flatMap((p) => [`--exclude=./${p}`]);
  await Promise.all(WHALESAY_DEBS.map((name) => run('bash', ['-c', 'set -eo pipefail; deb=$1; root=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" "$@"', 'bash', debs[name] as string, root, ...excludes], { signal: opts.signal })));
  const modules = join(work, 'perl-modules');
  await run('dpkg', ['-x', debs[modulesPkg] as string, modules], { signal: opts.signal });
  for (const rel of PERL_MODULE_FILES) {
    const from = join(modules, 'usr/share/perl', perl, rel);
    const to = join(root, 'usr/share/perl', perl, rel);
    await mkdir(dirname(to), { recursive: true });
    await copyFile(from, to);
  }
  for (const rel of WHALESAY_PRUNE) await rm(join(root, rel), { recursive: true, force: true });
  if (!existsSync(join(root, 'usr/games/cowsay'))) throw new Error('failed to build test image "whalesay": the cowsay .deb has no /usr/games/cowsay');

  const layout = new LayoutWriter(out);
  await layout.init();
  const { manifest } = layoutManifest(base.layout);
  const baseLayer = manifest.layers[0];
  if (!baseLayer) throw new Error('failed to build test image "whalesay": the busybox image has no layer');
  await layout.copyBlobFrom(base.layout, baseLayer.digest);
  const baseConfig = JSON.parse(readFileSync(join(base.layout, 'blobs', 'sha256', manifest.config.digest.replace(/^sha256:/, '')), 'utf8')) as { rootfs: { diff_ids: string[] } };
  const first: LayerBlob = { descriptor: baseLayer, diffId: baseConfig.rootfs.diff_ids[0] as string, createdBy: 'berth test harness: busybox-static with applet links' };
  const second = await layout.addLayerFromDir(root, work, `berth test harness: dpkg -x ${[...WHALESAY_DEBS, modulesPkg].join(' ')}`);
  await layout.finish([first, second], TEST_IMAGE_CONFIG.whalesay);
}

/** setxattr(2) through perl-base (no attr package needed); syscall numbers for the architectures we run on. */
async function setXattr(path: string, name: string, value: string): Promise<boolean> {
  const nr = process.arch === 'x64' ? 188 : process.arch === 'arm64' ? 5 : undefined;
  if (nr === undefined) return false;
  await run('perl', ['-e', `syscall(${nr}, $ARGV[0], $ARGV[1], $ARGV[2], length($ARGV[2]), 0) == 0 or die "setxattr: $!\\n"`, path, name, value]);
  return true;
}

async function buildLayered(out: string, work: string, opts: BuildOptions): Promise<void> {
  const F = LAYERED_IMAGE_FACTS;
  const image = `${out}:latest`;
  const bundle = join(work, 'bundle');
  const umoci = (...args: string[]) => run('umoci', args, { signal: opts.signal });
  await umoci('init', '--layout', out);
  await umoci('new', '--image', image);
  await umoci('unpack', '--image', image, bundle);
  const root = join(bundle, 'rootfs');
  const at = (p: string) => join(root, p);

  // Layer 1: busybox base and files that later layers delete or hide.
  await populateBusybox(root);
  await mkdir(at('data/gonedir'), { recursive: true });
  await mkdir(at('data/opaque/sub'), { recursive: true });
  await mkdir(at('data/replaced-dir'), { recursive: true });
  await writeFile(at('data/keep.txt'), 'keep\n');
  await writeFile(at('data/gone.txt'), 'gone\n');
  await writeFile(at('data/gonedir/inner.txt'), 'inner\n');
  await writeFile(at('data/opaque/old1.txt'), 'old1\n');
  await writeFile(at('data/opaque/sub/old2.txt'), 'old2\n');
  await writeFile(at('data/replaced-file'), 'file now\n');
  await writeFile(at('data/replaced-dir/x.txt'), 'x\n');
  await umoci('repack', '--refresh-bundle', '--history.created_by', 'berth test harness: layer 1 (busybox + data)', '--image', image, bundle);

  // Layer 2: deletions (umoci writes per-file whiteouts) and special files.
  await rm(at('data/gone.txt'));
  await rm(at('data/gonedir'), { recursive: true });
  await writeFile(at('data/hardlink-target.txt'), 'linked\n');
  await link(at('data/hardlink-target.txt'), at('data/hardlink.txt'));
  await symlink(F.symlink.target, at('data/symlink'));
  await writeFile(at('data/setuid'), F.files['/data/setuid'] as string);
  await chmod(at('data/setuid'), F.setuid.mode);
  await run('mkfifo', ['-m', '0644', at('data/fifo')]);
  await writeFile(at('data/owned-by-1000'), 'uid 1000\n');
  await chown(at('data/owned-by-1000'), F.owned.uid, F.owned.gid);
  await writeFile(at('data/xattr.txt'), F.files['/data/xattr.txt'] as string);
  await setXattr(at('data/xattr.txt'), F.xattr.name, F.xattr.value);
  await umoci('repack', '--refresh-bundle', '--history.created_by', 'berth test harness: layer 2 (whiteouts and special files)', '--image', image, bundle);

  // Layer 3: an opaque directory (umoci repack never writes one), hand-made.
  const stage3 = join(work, 'stage3');
  await mkdir(join(stage3, 'data/opaque'), { recursive: true });
  await writeFile(join(stage3, 'data/opaque/.wh..wh..opq'), '');
  await writeFile(join(stage3, 'data/opaque/new.txt'), 'new\n');
  const tar3 = join(work, 'layer3.tar');
  await run('tar', ['--numeric-owner', '--sort=name', '-C', stage3, '-cf', tar3, 'data']);
  await umoci('raw', 'add-layer', '--history.created_by', 'berth test harness: layer 3 (opaque whiteout)', '--image', image, tar3);

  // Layer 4: a file replaced by a directory, a directory replaced by a symlink.
  const stage4 = join(work, 'stage4');
  await mkdir(join(stage4, 'data/replaced-file'), { recursive: true });
  await writeFile(join(stage4, 'data/replaced-file/inside.txt'), 'dir now\n');
  await symlink(F.replacedBySymlink.target, join(stage4, 'data/replaced-dir'));
  const tar4 = join(work, 'layer4.tar');
  await run('tar', ['--numeric-owner', '--sort=name', '-C', stage4, '-cf', tar4, 'data']);
  await umoci('raw', 'add-layer', '--history.created_by', 'berth test harness: layer 4 (type changes)', '--image', image, tar4);

  const cfg = TEST_IMAGE_CONFIG.layered;
  await umoci('config', '--image', image, '--clear=config.cmd', '--clear=config.env',
    ...cfg.cmd.flatMap((c) => ['--config.cmd', c]), ...cfg.env.flatMap((e) => ['--config.env', e]),
    '--config.workingdir', '/', '--os', 'linux', '--architecture', ociArch(), '--no-history');
  await umoci('gc', '--layout', out);
}

// ---------------------------------------------------------------- build + push

const building = new Map<string, Promise<BuiltImage>>();

/** The cached OCI layout of a test image, built first if missing. */
export function buildImage(name: string, opts: BuildOptions = {}): Promise<BuiltImage> {
  const image = checkName(name);
  const dir = join(testCacheDir(), 'images', `${image}-${recipeHash(image)}`);
  let p = building.get(dir);
  if (!p) {
    p = buildInto(image, dir, opts);
    building.set(dir, p);
    p.catch(() => building.delete(dir));
  }
  return p;
}

function describeBuilt(name: TestImageName, layout: string): BuiltImage {
  return { name, layout, tag: 'latest', manifestDigest: layoutManifest(layout).digest };
}

/** Removes build temp dirs that crashed runs left in the cache (older than an hour, so never a live build's). */
async function pruneStaleTemps(parent: string): Promise<void> {
  const cutoff = Date.now() - 3600_000;
  for (const e of await readdir(parent).catch(() => [] as string[])) {
    if (!e.startsWith('.build-')) continue;
    const st = await stat(join(parent, e)).catch(() => undefined);
    if (st && st.mtimeMs < cutoff) await rm(join(parent, e), { recursive: true, force: true });
  }
}

async function buildInto(name: TestImageName, dir: string, opts: BuildOptions): Promise<BuiltImage> {
  if (existsSync(join(dir, '.complete'))) return describeBuilt(name, dir);
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  await pruneStaleTemps(parent);
  const tmp = await mkdtemp(join(parent, `.build-${name}-`));
  try {
    const out = join(tmp, 'layout');
    const work = join(tmp, 'work');
    await mkdir(work);
    try {
      switch (name) {
        case 'busybox': await mkdir(out); await buildBusybox(out, work); break;
        case 'whalesay': await mkdir(out); await buildWhalesay(out, work, opts); break;
        case 'layered': await buildLayered(out, work, opts); break;
      }
    } catch (err) {
      throw new Error(`failed to build test image "${name}": ${(err as Error).message}`, { cause: err });
    }
    await writeFile(join(out, '.complete'), `${new Date().toISOString()}\n`);
    try {
      await rename(out, dir);
    } catch (err) {
      // Another run finished the same recipe first: use its copy.
      if (!existsSync(join(dir, '.complete'))) throw err;
    }
    return describeBuilt(name, dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface PushOptions extends BuildOptions {
  /** Repository name in the registry; default: the image name. */
  repository?: string;
  tag?: string;
  /** For a registry started with htpasswd auth. */
  credentials?: { username: string; password: string };
}

/** Builds (or takes from the cache) a test image and pushes it to `registryHost` (HOST:PORT, plain HTTP). */
export async function pushTestImage(registryHost: string, name: string, opts: PushOptions = {}): Promise<PushedImage> {
  const built = await buildImage(name, opts);
  const reference = `${registryHost}/${opts.repository ?? built.name}:${opts.tag ?? 'latest'}`;
  const tmp = await mkdtemp(join(testCacheDir(), '.push-'));
  try {
    const digestFile = join(tmp, 'digest');
    await run('skopeo', [
      '--insecure-policy', 'copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false',
      ...(opts.credentials ? ['--dest-creds', `${opts.credentials.username}:${opts.credentials.password}`] : []),
      '--digestfile', digestFile, `oci:${built.layout}:${built.tag}`, `docker://${reference}`,
    ], { signal: opts.signal }).catch((err: Error) => {
      throw new Error(`failed to push test image "${name}" to "${reference}": ${err.message}`, { cause: err });
    });
    const digest = (await readFile(digestFile, 'utf8')).trim();
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`failed to push test image "${name}": skopeo wrote digest "${digest}", expected sha256:<64 hex>`);
    return { reference, digest };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Unpacks a test image with umoci (the reference unpacker) into `bundleDir`
 * (which must not exist yet) and returns the rootfs path: a known-good tree
 * to compare Berth's own layer applier against. The caller removes bundleDir.
 */
export async function unpackTestImage(name: string, bundleDir: string, opts: BuildOptions = {}): Promise<string> {
  const built = await buildImage(name, opts);
  await run('umoci', ['unpack', '--image', `${built.layout}:${built.tag}`, bundleDir], { signal: opts.signal });
  return join(bundleDir, 'rootfs');
}
