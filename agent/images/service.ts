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
import { ErrorCode, FailedPreconditionError, InvalidArgumentError, formatImageReference, parseImageReference, repositoryProblem } from '../../lib/index.js';
import type { ContentStore } from '../content/index.js';
import type { Snapshotter } from '../snapshots/index.js';
import { ManifestError, RegistryError } from './errors.js';
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

export interface RemoveResult extends PruneResult {
  /** The records removed (or, for a dry run, that would be). */
  images: ImageRecord[];
  /** References this node has no image for. */
  missing: string[];
}

/** Blobs an image record refers to: manifest, config, index, layers. */
function imageBlobs(i: ImageRecord): string[] {
  return [i.digest, i.configDigest, ...(i.indexDigest ? [i.indexDigest] : []), ...i.layers.map((l) => l.digest)];
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

  /**
   * The records a reference names: by reference (short names allowed), by full
   * manifest digest, or by a digest prefix of at least 12 hex digits (as
   * `berth images` shows it) when no reference matches. Every record with a
   * matching digest is returned; an ambiguous prefix is an error.
   */
  async find(ref: string): Promise<ImageRecord[]> {
    const images = await this.list();
    const hex = /^(?:sha256:)?([a-f0-9]{12,64})$/.exec(ref)?.[1];
    if (ref.startsWith('sha256:')) {
      if (hex === undefined) throw new InvalidArgumentError(`invalid image digest "${ref}": expected "sha256:" and 12 to 64 hex digits`, { field: 'reference' });
    } else {
      const byRef = await this.get(ref).catch((err: unknown) => {
        if (hex === undefined) throw err;
        return undefined;
      });
      if (byRef) return [byRef];
      if (hex === undefined) return [];
    }
    const hits = images.filter((i) => i.digest.slice('sha256:'.length).startsWith(hex));
    const digests = new Set(hits.map((i) => i.digest));
    if (digests.size > 1) {
      throw new InvalidArgumentError(`image digest prefix "${ref}" is ambiguous: it matches ${[...digests].sort().map((d) => `"${d}"`).join(', ')}; give more digits`, { field: 'reference' });
    }
    return hits;
  }

  /**
   * Removes the images the references name, then deletes the blobs and layer
   * snapshots only they used (a layer another image or a container still uses
   * stays). Every reference is checked before anything changes: one that is in
   * use (unless `force`) fails the whole call with `failed_precondition`
   * naming the containers. References this node does not have are returned
   * in `missing`. `dryRun` checks and reports without changing anything.
   */
  removeMany(refs: string[], opts: { force?: boolean; dryRun?: boolean } = {}): Promise<RemoveResult> {
    return this.lock.withExclusive(async () => {
      const chosen = new Map<string, ImageRecord>();
      const missing: string[] = [];
      for (const ref of refs) {
        const recs = await this.find(ref);
        if (recs.length === 0) missing.push(ref);
        for (const r of recs) chosen.set(r.reference, r);
      }
      const images = [...chosen.values()];
      if (!opts.force) {
        for (const rec of images) {
          const users = await this.users(rec);
          if (users.length > 0) {
            throw new FailedPreconditionError(`failed to remove image "${rec.reference}": in use by container${users.length > 1 ? 's' : ''} ${users.sort().map((u) => `"${u}"`).join(', ')} (remove ${users.length > 1 ? 'them' : 'it'} first, or use --force)`);
          }
        }
      }
      const out: RemoveResult = { images, missing, blobs: 0, snapshots: 0, bytesFreed: 0 };
      if (opts.dryRun || images.length === 0) return out;
      await this.opts.records.update((all) => ({ images: all.filter((i) => !chosen.has(i.reference)), result: undefined }));
      const freed = await this.collect(images);
      return { ...out, ...freed };
    });
  }

  /** Deletes an image record and what only it used; refuses while containers use it unless `force`. */
  async remove(ref: string, opts: { force?: boolean } = {}): Promise<ImageRecord> {
    const r = await this.removeMany([ref], opts);
    const rec = r.images[0];
    if (!rec) throw new ManifestError(ref, `image "${ref}" not found on this node`, { code: 'not_found' });
    return rec;
  }

  /**
   * Deletes blobs and snapshots that no image record and no container refers
   * to; with `all`, first removes every image no container uses.
   */
  prune(opts: { all?: boolean } = {}): Promise<PruneResult & { images: ImageRecord[] }> {
    return this.lock.withExclusive(async () => {
      const removed: ImageRecord[] = [];
      if (opts.all) {
        for (const rec of await this.list()) if ((await this.users(rec)).length === 0) removed.push(rec);
        const gone = new Set(removed.map((r) => r.reference));
        if (gone.size > 0) await this.opts.records.update((all) => ({ images: all.filter((i) => !gone.has(i.reference)), result: undefined }));
      }
      return { images: removed, ...(await this.collect(undefined)) };
    });
  }

  /**
   * Garbage collection (caller holds the exclusive lock): deletes blobs and
   * layer snapshots that no remaining record and no container snapshot (with
   * its parents) refers to. With `only`, just the blobs and snapshots of those
   * (removed) records are candidates; otherwise everything on disk is.
   */
  private async collect(only: ImageRecord[] | undefined): Promise<PruneResult> {
    const { content, snapshotter } = this.opts;
    const keepBlobs = new Set<string>();
    const keepChains = new Set<string>();
    for (const i of await this.list()) {
      for (const b of imageBlobs(i)) keepBlobs.add(b);
      for (const l of i.layers) keepChains.add(l.chainId);
    }
    const layers = await snapshotter.listLayers();
    const parentOf = new Map(layers.map((l) => [l.chainId, l.parent]));
    for (const c of await snapshotter.listContainers()) {
      let cur: string | undefined = c.chainId;
      while (cur !== undefined && cur !== '' && !keepChains.has(cur)) {
        keepChains.add(cur);
        cur = parentOf.get(cur);
      }
    }
    const candBlobs = only ? new Set(only.flatMap(imageBlobs)) : undefined;
    const candChains = only ? new Set(only.flatMap((i) => i.layers.map((l) => l.chainId))) : undefined;
    const out: PruneResult = { blobs: 0, snapshots: 0, bytesFreed: 0 };
    for (const b of await content.list()) {
      if (keepBlobs.has(b.digest) || (candBlobs && !candBlobs.has(b.digest))) continue;
      out.bytesFreed += await content.delete(b.digest);
      out.blobs++;
    }
    for (const l of layers) {
      if (keepChains.has(l.chainId) || (candChains && !candChains.has(l.chainId))) continue;
      out.bytesFreed += await snapshotter.removeLayer(l.chainId);
      out.snapshots++;
    }
    return out;
  }

  /**
   * Repositories in a registry's catalog whose name contains `term`, with
   * their sorted tags; at most `limit` (default 25, at most 100) repositories.
   * A registry that does not offer its catalog (many public ones answer 401,
   * 403 or 404) fails with `failed_precondition` saying so.
   */
  async search(term: string, opts: { registry?: string; limit?: number; signal?: AbortSignal } = {}): Promise<SearchResult[]> {
    const registry = opts.registry || this.opts.defaultRegistry;
    if (!registry) throw new FailedPreconditionError('failed to search: no registry given and no default registry configured');
    if (!/^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/.test(registry)) {
      throw new InvalidArgumentError(`registry: expected a registry host such as "registry.example.com" or "127.0.0.1:5000", got "${registry.slice(0, 100)}"`, { field: 'registry' });
    }
    if (term.length > 255) throw new InvalidArgumentError(`term: expected at most 255 characters, got ${term.length}`, { field: 'term' });
    const limit = opts.limit ?? 25;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new InvalidArgumentError(`limit: expected 1 to 100, got ${limit}`, { field: 'limit' });
    let catalog: string[];
    try {
      catalog = await this.opts.client.catalog(registry, { signal: opts.signal });
    } catch (err) {
      if (err instanceof RegistryError && err.status !== undefined && [401, 403, 404, 405].includes(err.status)) {
        throw new FailedPreconditionError(`failed to search registry "${registry}": it does not offer its catalog to us (GET /v2/_catalog answered ${err.status}: ${err.message}); search needs a registry that lists its repositories`, { cause: err });
      }
      if (err instanceof SyntaxError) throw new RegistryError(registry, ErrorCode.Unavailable, `failed to search registry "${registry}": its catalog is not valid JSON`, { cause: err });
      throw err;
    }
    // Names from the registry are input too: only valid repository names are used in URLs.
    const repos = catalog.filter((r) => r.includes(term) && repositoryProblem(r) === undefined).sort().slice(0, limit);
    const out: SearchResult[] = [];
    for (const repository of repos) {
      let tags: string[];
      try {
        tags = await this.opts.client.tags(registry, repository, { signal: opts.signal });
      } catch (err) {
        if (err instanceof SyntaxError) throw new RegistryError(registry, ErrorCode.Unavailable, `failed to list tags of "${registry}/${repository}": the answer is not valid JSON`, { cause: err });
        throw err;
      }
      out.push({ registry, repository, tags: tags.sort() });
    }
    return out;
  }
}
