/**
 * ImageService: the node's images as one API (pull, list, remove, prune,
 * search), over the puller, the content store, the snapshotter and the image
 * records.
 *
 * Lifecycle and consistency: pulls run concurrently; prune runs alone (it waits
 * for running pulls and holds new ones back), so it never deletes a blob or
 * snapshot a pull has committed but not yet recorded. `remove` deletes the
 * record only; `prune` then frees every blob and snapshot no record and no
 * container snapshot refers to.
 */
import { FailedPreconditionError, formatImageReference, parseImageReference, repositoryProblem } from '../../lib/index.js';
import type { ContentStore } from '../content/index.js';
import type { Snapshotter } from '../snapshots/index.js';
import { ManifestError } from './errors.js';
import type { ImagePuller, PullOptions } from './pull.js';
import type { ImageRecord, ImageRecordStore } from './records.js';
import type { RegistryClient } from './registry.js';

/** Says which containers use an image (by ID); injected by the runtime. */
export type InUseChecker = (image: ImageRecord) => Promise<string[]>;

export interface PruneResult {
  blobs: number;
  snapshots: number;
  bytesFreed: number;
}

export interface SearchResult {
  registry: string;
  repository: string;
  tags: string[];
}

export interface ImageServiceOptions {
  puller: ImagePuller;
  records: ImageRecordStore;
  content: ContentStore;
  snapshotter: Snapshotter;
  client: RegistryClient;
  defaultRegistry?: string;
  inUse?: InUseChecker;
}

/** Many shared holders or one exclusive holder. */
class SharedLock {
  private shared = 0;
  private exclusive: Promise<void> | undefined;
  private idle: (() => void)[] = [];

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    this.shared++;
    try {
      return await fn();
    } finally {
      if (--this.shared === 0) for (const w of this.idle.splice(0)) w();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise((r) => (release = r));
    try {
      while (this.shared > 0) await new Promise<void>((r) => this.idle.push(r));
      return await fn();
    } finally {
      this.exclusive = undefined;
      release();
    }
  }
}

export class ImageService {
  private readonly lock = new SharedLock();

  constructor(private readonly opts: ImageServiceOptions) {}

  pull(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    return this.lock.withShared(() => this.opts.puller.pull(ref, opts));
  }

  /** The manifest digest a reference resolves to on this node, without pulling layers. */
  async resolve(ref: string, opts: { signal?: AbortSignal } = {}): Promise<{ reference: string; digest: string; indexDigest?: string }> {
    const r = await this.opts.puller.resolve(ref, opts);
    return { reference: r.image, digest: r.digest, ...(r.index ? { indexDigest: r.index.digest } : {}) };
  }

  list(): Promise<ImageRecord[]> {
    return this.opts.records.list();
  }

  /** Finds a record by reference (short names allowed) or manifest digest. */
  async get(ref: string): Promise<ImageRecord | undefined> {
    const images = await this.list();
    if (/^sha256:[a-f0-9]{64}$/.test(ref)) return images.find((i) => i.digest === ref);
    const p = parseImageReference(ref, { defaultRegistry: this.opts.defaultRegistry });
    if (p.tag === undefined && p.digest === undefined) p.tag = 'latest';
    const want = formatImageReference(p);
    return images.find((i) => i.reference === want) ??
      (p.digest !== undefined ? images.find((i) => i.registry === p.registry && i.repository === p.repository && i.digest === p.digest) : undefined);
  }

  /** Containers using an image: from the injected checker and from mounted container snapshots. */
  async users(image: ImageRecord): Promise<string[]> {
    const ids = new Set(await (this.opts.inUse?.(image) ?? Promise.resolve([])));
    for (const c of await this.opts.snapshotter.listContainers()) if (c.chainId === image.chainId) ids.add(c.id);
    return [...ids];
  }

  /** Deletes an image record; refuses while containers use it unless `force`. */
  async remove(ref: string, opts: { force?: boolean } = {}): Promise<ImageRecord> {
    const rec = await this.get(ref);
    if (!rec) throw new ManifestError(ref, `image "${ref}" not found on this node`, { code: 'not_found' });
    if (!opts.force) {
      const users = await this.users(rec);
      if (users.length > 0) {
        throw new FailedPreconditionError(`failed to remove image "${rec.reference}": in use by container${users.length > 1 ? 's' : ''} ${users.map((u) => `"${u}"`).join(', ')} (stop them or use --force)`);
      }
    }
    await this.opts.records.update((images) => ({ images: images.filter((i) => i.reference !== rec.reference), result: undefined }));
    return rec;
  }

  /** Deletes blobs and snapshots that no image record and no container refers to. */
  prune(): Promise<PruneResult> {
    return this.lock.withExclusive(async () => {
      const { content, snapshotter } = this.opts;
      const images = await this.list();
      const blobs = new Set<string>();
      const chains = new Set<string>();
      for (const i of images) {
        blobs.add(i.digest);
        blobs.add(i.configDigest);
        if (i.indexDigest) blobs.add(i.indexDigest);
        for (const l of i.layers) {
          blobs.add(l.digest);
          chains.add(l.chainId);
        }
      }
      const layers = await snapshotter.listLayers();
      const parentOf = new Map(layers.map((l) => [l.chainId, l.parent]));
      for (const c of await snapshotter.listContainers()) {
        let cur: string | undefined = c.chainId;
        while (cur !== undefined && !chains.has(cur)) {
          chains.add(cur);
          cur = parentOf.get(cur);
        }
      }
      const out: PruneResult = { blobs: 0, snapshots: 0, bytesFreed: 0 };
      for (const b of await content.list()) {
        if (blobs.has(b.digest)) continue;
        out.bytesFreed += await content.delete(b.digest);
        out.blobs++;
      }
      for (const l of layers) {
        if (chains.has(l.chainId)) continue;
        out.bytesFreed += await snapshotter.removeLayer(l.chainId);
        out.snapshots++;
      }
      return out;
    });
  }

  /** Repositories in a registry's catalog whose name contains `term`, with their tags. */
  async search(term: string, opts: { registry?: string; signal?: AbortSignal } = {}): Promise<SearchResult[]> {
    const registry = opts.registry ?? this.opts.defaultRegistry;
    if (!registry) throw new FailedPreconditionError('failed to search: no registry given and no default registry configured');
    // Names from the registry are input too: only valid repository names are used in URLs.
    const repos = (await this.opts.client.catalog(registry, { signal: opts.signal })).filter((r) => r.includes(term) && repositoryProblem(r) === undefined);
    const out: SearchResult[] = [];
    for (const repository of repos.slice(0, 100)) {
      out.push({ registry, repository, tags: (await this.opts.client.tags(registry, repository, { signal: opts.signal })).sort() });
    }
    return out;
  }
}
