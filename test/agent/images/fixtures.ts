/**
 * Test image builders: a tar writer that can write anything (including the
 * hostile entries real tools refuse to make) and a pusher that uploads blobs,
 * manifests and indexes to a real registry over the distribution API.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export interface TarItem {
  name: string;
  /** Tar type flag; default '0' (or '5' when the name ends in '/'). */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  data?: Buffer | string;
  devmajor?: number;
  devminor?: number;
  /** Pax records written in an 'x' header before the entry. */
  pax?: Record<string, string | Buffer>;
  /** Use a GNU 'L' long-name header instead of truncating. */
  gnuLongName?: boolean;
  /** Size written in the header (default: data length); lets a test lie. */
  sizeOverride?: number;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, type: string, size: number, item: Partial<TarItem>, linkname = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write(octal(item.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100);
  h.write(octal(item.uid ?? 0, 8), 108);
  h.write(octal(item.gid ?? 0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(Math.floor(item.mtime ?? 1700000000), 12), 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write(linkname.slice(0, 100), 157, 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263);
  h.write(octal(item.devmajor ?? 0, 8), 329);
  h.write(octal(item.devminor ?? 0, 8), 337);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148);
  return h;
}

function pad(n: number): Buffer {
  return Buffer.alloc((512 - (n % 512)) % 512);
}

function paxBody(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(records)) {
    const value = Buffer.isBuffer(v) ? v : Buffer.from(v);
    const rest = Buffer.concat([Buffer.from(` ${k}=`), value, Buffer.from('\n')]);
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), rest]));
  }
  return Buffer.concat(parts);
}

/** Builds an uncompressed tar from items (end-of-archive blocks included). */
export function makeTar(items: TarItem[], opts: { noTrailer?: boolean } = {}): Buffer {
  const out: Buffer[] = [];
  for (const item of items) {
    const data = item.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(item.data) ? item.data : Buffer.from(item.data);
    const type = item.type ?? (item.name.endsWith('/') ? '5' : '0');
    if (item.pax) {
      const body = paxBody(item.pax);
      out.push(header('PaxHeaders/x', 'x', body.length, {}), body, pad(body.length));
    }
    let name = item.name;
    if (item.gnuLongName) {
      const body = Buffer.from(item.name + '\0');
      out.push(header('././@LongLink', 'L', body.length, {}), body, pad(body.length));
      name = item.name.slice(0, 99);
    }
    const size = item.sizeOverride ?? data.length;
    out.push(header(name, type, size, item, item.linkname ?? ''), data, pad(data.length));
  }
  if (!opts.noTrailer) out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

export function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export async function pushBlob(registryUrl: string, repo: string, blob: Buffer, headers: Record<string, string> = {}): Promise<string> {
  const digest = sha256(blob);
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  await start.arrayBuffer();
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
  const loc = new URL(start.headers.get('location') ?? '', registryUrl);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: blob, headers: { ...headers, 'Content-Type': 'application/octet-stream' } });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${text}`);
  return digest;
}

export async function pushManifest(registryUrl: string, repo: string, ref: string, body: Buffer, mediaType: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { ...headers, 'Content-Type': mediaType } });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`manifest upload: ${res.status} ${text}`);
  return sha256(body);
}

export interface PushImageOptions {
  /** gzip layers (default true). */
  gzip?: boolean;
  /** Compress layers with the zstd CLI instead (media type +zstd). */
  zstd?: boolean;
  layerMediaType?: string;
  manifestMediaType?: 'oci' | 'docker';
  architecture?: string;
  /** Replaces the config's diff IDs. */
  diffIds?: string[];
  /** Replaces a layer descriptor's fields after upload. */
  tamper?: (layers: { mediaType: string; digest: string; size: number }[]) => void;
  annotations?: Record<string, string>;
  headers?: Record<string, string>;
  cmd?: string[];
}

export interface PushedImage {
  digest: string;
  manifest: Buffer;
  manifestMediaType: string;
  layerDigests: string[];
  diffIds: string[];
}

/** Pushes an image made of the given uncompressed layer tars; returns its manifest digest. */
export async function pushImage(registryUrl: string, repo: string, tag: string, layers: Buffer[], opts: PushImageOptions = {}): Promise<PushedImage> {
  const docker = opts.manifestMediaType === 'docker';
  const gzip = opts.gzip ?? true;
  const headers = opts.headers ?? {};
  const descs: { mediaType: string; digest: string; size: number }[] = [];
  for (const l of layers) {
    const blob = opts.zstd ? execFileSync('zstd', ['-c', '-q', '-3'], { input: l, maxBuffer: 1 << 30 }) : gzip ? gzipSync(l, { level: 1 }) : l;
    const digest = await pushBlob(registryUrl, repo, blob, headers);
    descs.push({
      mediaType: opts.layerMediaType ?? (opts.zstd ? 'application/vnd.oci.image.layer.v1.tar+zstd' : docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : gzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'),
      digest,
      size: blob.length,
    });
  }
  opts.tamper?.(descs);
  const diffIds = opts.diffIds ?? layers.map(sha256);
  const config = Buffer.from(JSON.stringify({
    architecture: opts.architecture ?? 'amd64',
    os: 'linux',
    created: '2026-01-02T03:04:05Z',
    config: { Cmd: opts.cmd ?? ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const configDigest = await pushBlob(registryUrl, repo, config, headers);
  const manifestMediaType = docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: { mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: descs,
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  }));
  const digest = await pushManifest(registryUrl, repo, tag, manifest, manifestMediaType, headers);
  return { digest, manifest, manifestMediaType, layerDigests: descs.map((d) => d.digest), diffIds };
}

/** Pushes an index (manifest list) pointing at already pushed manifests. */
export async function pushIndex(registryUrl: string, repo: string, tag: string, entries: { image: PushedImage; architecture: string; variant?: string }[], docker = false): Promise<string> {
  const mediaType = docker ? 'application/vnd.docker.distribution.manifest.list.v2+json' : 'application/vnd.oci.image.index.v1+json';
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({
      mediaType: e.image.manifestMediaType,
      digest: e.image.digest,
      size: e.image.manifest.length,
      platform: { os: 'linux', architecture: e.architecture, ...(e.variant ? { variant: e.variant } : {}) },
    })),
  }));
  return pushManifest(registryUrl, repo, tag, body, mediaType);
}

/** A busybox root filesystem layer from Debian's busybox-static: /bin/busybox plus applet symlinks. */
export function busyboxLayer(): Buffer {
  const bin = execFileSync('cat', ['/bin/busybox'], { maxBuffer: 64 * 1024 * 1024 });
  const applets = ['sh', 'ls', 'cat', 'echo', 'true', 'sleep', 'wget'];
  return makeTar([
    { name: 'bin/', type: '5' },
    { name: 'bin/busybox', data: bin, mode: 0o755 },
    ...applets.map((a) => ({ name: `bin/${a}`, type: '2', linkname: 'busybox' })),
    { name: 'etc/', type: '5' },
    { name: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\n' },
    { name: 'tmp/', type: '5', mode: 0o1777 },
    { name: 'root/', type: '5', mode: 0o700 },
  ]);
}

/**
 * Path of a binary that serves `fsops ROOT`: the runtime's berth-helper when it
 * is built, else fsops.c compiled on its own into the build dir.
 */
export function fsopsHelperPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // here = <repo>/.build-x/test/agent/images
  const buildDir = join(here, '..', '..', '..');
  const repo = join(buildDir, '..');
  const helper = join(repo, 'agent', 'sys', 'native', 'build', 'berth-helper');
  if (existsSync(helper) && process.env.BERTH_FSOPS_STANDALONE !== '1') {
    try {
      execFileSync(helper, ['fsops', '/'], { input: '', stdio: ['pipe', 'ignore', 'ignore'] });
      return helper;
    } catch {
      // built without fsops.c (or stale): use the standalone build below
    }
  }
  const out = join(buildDir, 'native', 'fsops-standalone');
  mkdirSync(dirname(out), { recursive: true });
  execFileSync('cc', ['-O2', '-Wall', '-DBERTH_FSOPS_STANDALONE', '-o', out, join(repo, 'agent', 'sys', 'native', 'fsops.c')]);
  return out;
}
