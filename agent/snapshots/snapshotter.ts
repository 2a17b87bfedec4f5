/**
 * Snapshots: unpacked layers and the overlayfs root filesystems built from
 * them (containerd's snapshotter is the model).
 *
 * Vocabulary:
 * - chain ID: the identity of a layer *on top of its parents*:
 *   chain(L1) = diffID(L1); chain(Ln) = sha256(chain(Ln-1) + " " + diffID(Ln)).
 *   Two images that share a base share its chain IDs and so its snapshots.
 * - layer snapshot: one layer unpacked on its own into a directory (an overlay
 *   lower dir: whiteouts are 0:0 char devices, opaque dirs carry
 *   trusted.overlay.opaque=y). Immutable once committed.
 * - container snapshot: an overlay mount of an image's layer snapshots (lower
 *   dirs) with a per-container upper and work dir.
 *
 * On-disk layout under `<root>/snapshots` (short names keep 60+ lower dirs
 * inside the one page of mount data):
 *   layers/<first 12 hex of chain ID>/fs        the unpacked layer
 *   layers/<...>/chainid, parent                full chain ID, parent chain ID ("" for a base)
 *   tmp/<random>/                               layers being unpacked (deleted on failure and at start)
 *   containers/<id>/{upper,work,rootfs,chainid} per-container overlay
 * Mounts run with cwd = `<root>/snapshots` and relative paths.
 *
 * Lifecycle: `prepareLayer` hands out a temp dir; `commit` renames it into
 * place atomically (a concurrent commit of the same chain ID keeps the first),
 * `abort` deletes it, so a failed unpack leaves nothing behind.
 * `mountContainer` creates and mounts; `removeContainer` unmounts and deletes
 * the upper dir. `removeLayer` deletes a layer snapshot (callers check use).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OverlayMounter } from '../sys/overlay.js';
import { SnapshotError, SnapshotNotFoundError } from './errors.js';

export interface LayerSnapshot {
  chainId: string;
  /** Chain ID of the parent, undefined for a base layer. */
  parent: string | undefined;
  /** Absolute path of the unpacked layer. */
  dir: string;
}

/** A layer snapshot being written. */
export interface PreparedLayer {
  /** Absolute path of the (empty) directory to unpack into. */
  readonly dir: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface ContainerSnapshot {
  id: string;
  chainId: string;
  /** Absolute path of the mounted root filesystem. */
  rootfs: string;
  upperdir: string;
}

export interface Snapshotter {
  stat(chainId: string): Promise<LayerSnapshot | undefined>;
  prepareLayer(chainId: string, parent: string | undefined): Promise<PreparedLayer>;
  listLayers(): Promise<LayerSnapshot[]>;
  /** Deletes a layer snapshot; returns bytes freed. */
  removeLayer(chainId: string): Promise<number>;
  /** The lower dirs of a chain, topmost first (absolute paths). */
  lowerDirs(chainId: string): Promise<string[]>;
  mountContainer(id: string, chainId: string, opts?: { signal?: AbortSignal }): Promise<ContainerSnapshot>;
  removeContainer(id: string, opts?: { signal?: AbortSignal }): Promise<void>;
  listContainers(): Promise<ContainerSnapshot[]>;
}

const CHAIN = /^sha256:([a-f0-9]{64})$/;
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function shortName(chainId: string): string {
  const m = CHAIN.exec(chainId);
  if (m === null || m[1] === undefined) throw new SnapshotError(chainId, `invalid chain ID ${JSON.stringify(chainId.slice(0, 100))}: expected sha256:<64 hex>`);
  return m[1].slice(0, 12);
}

/** Bytes used by a tree (allocated blocks, each inode counted once, not crossing mount points). */
export async function diskUsage(path: string, seen = new Set<string>(), dev?: bigint): Promise<number> {
  let st;
  try {
    st = await lstat(path, { bigint: true });
  } catch {
    return 0;
  }
  if (dev !== undefined && st.dev !== dev) return 0;
  const key = `${st.dev}:${st.ino}`;
  let total = 0;
  if (!seen.has(key)) {
    seen.add(key);
    total += Number(st.blocks) * 512;
  }
  if (st.isDirectory()) {
    for (const name of await readdir(path)) total += await diskUsage(join(path, name), seen, st.dev);
  }
  return total;
}

export interface OverlaySnapshotterOptions {
  root: string;
  mounter: OverlayMounter;
}

export class OverlaySnapshotter implements Snapshotter {
  private readonly base: string;
  private ready: Promise<void> | undefined;

  constructor(private readonly opts: OverlaySnapshotterOptions) {
    this.base = join(opts.root, 'snapshots');
  }

  init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(join(this.base, 'layers'), { recursive: true });
      await mkdir(join(this.base, 'containers'), { recursive: true });
      await rm(join(this.base, 'tmp'), { recursive: true, force: true });
      await mkdir(join(this.base, 'tmp'), { recursive: true });
    })();
    return this.ready;
  }

  private layerDir(chainId: string): string {
    return join(this.base, 'layers', shortName(chainId));
  }

  async stat(chainId: string): Promise<LayerSnapshot | undefined> {
    await this.init();
    const dir = this.layerDir(chainId);
    let recorded: string;
    try {
      recorded = (await readFile(join(dir, 'chainid'), 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (recorded !== chainId) {
      throw new SnapshotError(chainId, `snapshot directory "${dir}" holds chain "${recorded}", not "${chainId}" (12-hex prefix collision)`);
    }
    const parent = (await readFile(join(dir, 'parent'), 'utf8')).trim();
    return { chainId, parent: parent === '' ? undefined : parent, dir: join(dir, 'fs') };
  }

  async prepareLayer(chainId: string, parent: string | undefined): Promise<PreparedLayer> {
    await this.init();
    const finalDir = this.layerDir(chainId);
    const tmp = join(this.base, 'tmp', randomBytes(8).toString('hex'));
    await mkdir(join(tmp, 'fs'), { recursive: true });
    await writeFile(join(tmp, 'chainid'), chainId + '\n');
    await writeFile(join(tmp, 'parent'), (parent ?? '') + '\n');
    let done = false;
    return {
      dir: join(tmp, 'fs'),
      commit: async () => {
        try {
          await rename(tmp, finalDir);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
          // Someone else committed the same chain first; theirs is identical.
          if ((await this.stat(chainId)) === undefined) throw err;
          await rm(tmp, { recursive: true, force: true });
        }
        done = true;
      },
      abort: async () => {
        if (!done) await rm(tmp, { recursive: true, force: true });
        done = true;
      },
    };
  }

  async listLayers(): Promise<LayerSnapshot[]> {
    await this.init();
    const out: LayerSnapshot[] = [];
    for (const name of await readdir(join(this.base, 'layers'))) {
      try {
        const chainId = (await readFile(join(this.base, 'layers', name, 'chainid'), 'utf8')).trim();
        const s = await this.stat(chainId);
        if (s) out.push(s);
      } catch {
        // half-deleted entry; ignore
      }
    }
    return out;
  }

  async removeLayer(chainId: string): Promise<number> {
    const s = await this.stat(chainId);
    if (s === undefined) return 0;
    const dir = this.layerDir(chainId);
    const bytes = await diskUsage(dir);
    // Rename first so a half-deleted snapshot is never mistaken for a whole one.
    const doomed = join(this.base, 'tmp', `rm-${randomBytes(8).toString('hex')}`);
    await rename(dir, doomed);
    await rm(doomed, { recursive: true, force: true });
    return bytes;
  }

  private async chain(chainId: string): Promise<LayerSnapshot[]> {
    const out: LayerSnapshot[] = [];
    let cur: string | undefined = chainId;
    while (cur !== undefined) {
      const s = await this.stat(cur);
      if (s === undefined) throw new SnapshotNotFoundError('snapshot', cur);
      out.push(s);
      if (out.length > 1000) throw new SnapshotError(chainId, `snapshot chain of "${chainId}" is longer than 1000 layers`);
      cur = s.parent;
    }
    return out;
  }

  async lowerDirs(chainId: string): Promise<string[]> {
    return (await this.chain(chainId)).map((s) => s.dir);
  }

  private containerDir(id: string): string {
    if (!CONTAINER_ID.test(id)) {
      throw new SnapshotError(id, `invalid container ID ${JSON.stringify(id.slice(0, 100))}: expected letters, digits, "_", "." and "-" (at most 128)`);
    }
    return join(this.base, 'containers', id);
  }

  async mountContainer(id: string, chainId: string, opts: { signal?: AbortSignal } = {}): Promise<ContainerSnapshot> {
    await this.init();
    const dir = this.containerDir(id);
    const layers = await this.chain(chainId);
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SnapshotError(id, `container snapshot "${id}" already exists`);
      throw err;
    }
    const rel = `containers/${id}`;
    try {
      await mkdir(join(dir, 'upper'));
      await mkdir(join(dir, 'work'));
      await mkdir(join(dir, 'rootfs'));
      await writeFile(join(dir, 'chainid'), chainId + '\n');
      await this.opts.mounter.mount({
        cwd: this.base,
        lowerdirs: layers.map((s) => `layers/${shortName(s.chainId)}/fs`),
        upperdir: `${rel}/upper`,
        workdir: `${rel}/work`,
        target: join(dir, 'rootfs'),
        signal: opts.signal,
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw new SnapshotError(id, `failed to mount the root filesystem of container "${id}": ${(err as Error).message}`, { cause: err });
    }
    return { id, chainId, rootfs: join(dir, 'rootfs'), upperdir: join(dir, 'upper') };
  }

  async removeContainer(id: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.init();
    const dir = this.containerDir(id);
    const rootfs = join(dir, 'rootfs');
    if (await this.opts.mounter.isMounted(rootfs)) await this.opts.mounter.unmount(rootfs, opts);
    await rm(dir, { recursive: true, force: true });
  }

  async listContainers(): Promise<ContainerSnapshot[]> {
    await this.init();
    const out: ContainerSnapshot[] = [];
    for (const id of await readdir(join(this.base, 'containers'))) {
      const dir = join(this.base, 'containers', id);
      try {
        const chainId = (await readFile(join(dir, 'chainid'), 'utf8')).trim();
        out.push({ id, chainId, rootfs: join(dir, 'rootfs'), upperdir: join(dir, 'upper') });
      } catch {
        // being created or removed
      }
    }
    return out;
  }
}
