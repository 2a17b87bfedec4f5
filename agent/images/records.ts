/**
 * Image records: what this node knows about each pulled image, kept in one
 * JSON file `<root>/images/records.json` (version 1), replaced atomically
 * (write temp file, rename) under an in-process lock.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageRecord as ProtoImageRecord, ImageRemoval } from '../../proto/gen/berth/v1/types.js';

export interface LayerRecord {
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
  chainId: string;
}

export interface ImageRecord {
  /** Fully qualified reference as pulled: `registry/repository:tag` or `...@sha256:...`. */
  reference: string;
  registry: string;
  repository: string;
  tag?: string;
  /** Digest of the platform manifest. */
  digest: string;
  /** Digest of the index the manifest was chosen from, when there was one. */
  indexDigest?: string;
  mediaType: string;
  configDigest: string;
  architecture: string;
  os: string;
  /** The image config's `config` section (Env, Cmd, Entrypoint, ...). */
  config: Record<string, unknown>;
  layers: LayerRecord[];
  /** Chain ID of the top layer: the snapshot a container mounts. */
  chainId: string;
  /** Compressed bytes: manifest + config + layers. */
  size: number;
  /** From the image config (ISO 8601), or "" when absent. */
  created: string;
  pulledAt: string;
}

interface RecordsFile {
  version: 1;
  images: ImageRecord[];
}

export class ImageRecordStore {
  private readonly file: string;
  private lock: Promise<unknown> = Promise.resolve();

  constructor(root: string) {
    this.file = join(root, 'images', 'records.json');
  }

  async list(): Promise<ImageRecord[]> {
    try {
      const j = JSON.parse(await readFile(this.file, 'utf8')) as RecordsFile;
      if (j.version !== 1 || !Array.isArray(j.images)) throw new Error(`unknown image records format in "${this.file}"`);
      return j.images;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Runs `fn` on the records under the lock and saves what it returns. */
  update<T>(fn: (images: ImageRecord[]) => { images: ImageRecord[]; result: T }): Promise<T> {
    const run = this.lock.then(async () => {
      const { images, result } = fn(await this.list());
      await mkdir(join(this.file, '..'), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      const body: RecordsFile = { version: 1, images };
      await writeFile(tmp, JSON.stringify(body, null, 1));
      await rename(tmp, this.file);
      return result;
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  async put(rec: ImageRecord): Promise<void> {
    await this.update((images) => ({ images: [...images.filter((i) => i.reference !== rec.reference), rec], result: undefined }));
  }
}

/** The wire form (proto berth.v1.ImageRecord) of a record, for ListImages. */
export function toProtoImageRecord(rec: ImageRecord, node: string): ProtoImageRecord {
  const created = Date.parse(rec.created);
  return {
    reference: rec.reference,
    repository: `${rec.registry}/${rec.repository}`,
    tag: rec.tag ?? '',
    digest: rec.digest,
    sizeBytes: rec.size,
    createdUnixMs: Number.isFinite(created) ? created : 0,
    node,
  };
}

/** A removal or prune result in its wire form (proto berth.v1.ImageRemoval). */
export function toProtoImageRemoval(
  r: { images: ImageRecord[]; missing?: string[]; blobs: number; snapshots: number; bytesFreed: number },
  node: string,
): ImageRemoval {
  return {
    node,
    images: r.images.map((i) => toProtoImageRecord(i, node)),
    missing: r.missing ?? [],
    blobsDeleted: r.blobs,
    snapshotsDeleted: r.snapshots,
    bytesFreed: r.bytesFreed,
    error: '',
  };
}
