/**
 * A digest-addressed blob store on local disk (containerd's content store is
 * the model).
 *
 * Vocabulary:
 * - blob: immutable bytes named by their sha256 digest (`sha256:<64 hex>`).
 * - descriptor: what a manifest says about a blob: media type, digest, size.
 * - ingest: a blob being written; it lives under `ingest/` and becomes visible
 *   only when committed, after its size and sha256 matched the descriptor
 *   (checked while the bytes stream in, never by re-reading).
 *
 * On-disk layout under `<root>/content`:
 *   sha256/<hex>        committed blobs (read-only once there)
 *   ingest/<hex>-<rand> blobs being written (removed on abort and at open)
 *
 * Lifecycle: `ingest(desc, produce)` is single-flight per digest: when the blob
 * is present it returns "exists" at once; when another caller is already
 * ingesting it, it waits for that ingest and returns "shared"; otherwise it
 * calls `produce` with a writer and commits it. Concurrent pulls of one blob
 * therefore download it once.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, createReadStream, openSync, writeSync, type ReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentMismatchError, ContentNotFoundError, InvalidDigestError } from './errors.js';

/** What a manifest says about a blob. */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<64 lowercase hex>`. */
  digest: string;
  size: number;
}

export interface BlobInfo {
  digest: string;
  size: number;
}

/** A blob being written: bytes go in, `commit` checks and publishes them. */
export interface ContentWriter {
  readonly digest: string;
  /** Bytes written so far. */
  readonly offset: number;
  /** Appends bytes; throws ContentMismatchError once more than the expected size arrived. */
  write(chunk: Buffer): void;
  /** Checks size and digest (throws ContentMismatchError) without committing. */
  verify(): void;
  /** Checks size and digest and moves the blob into place. */
  commit(): Promise<void>;
  /** Deletes the partial blob. Safe to call more than once or after commit. */
  abort(): Promise<void>;
}

/** Read side. */
export interface ContentProvider {
  info(digest: string): Promise<BlobInfo | undefined>;
  /** Absolute path of a committed blob (throws ContentNotFoundError). */
  path(digest: string): Promise<string>;
  readStream(digest: string, opts?: { highWaterMark?: number }): Promise<ReadStream>;
  readBytes(digest: string): Promise<Buffer>;
}

export type IngestOutcome = 'written' | 'exists' | 'shared';

/** Write side. */
export interface Ingester {
  /** Single-flight ingest of one blob (see the module comment). */
  ingest(desc: Descriptor, produce: (writer: ContentWriter) => Promise<void>): Promise<IngestOutcome>;
  /** Stores bytes already in memory (manifests, configs) after checking them. */
  putBytes(desc: Descriptor, bytes: Buffer): Promise<void>;
}

/** Management side. */
export interface ContentManager {
  list(): Promise<BlobInfo[]>;
  /** Removes a blob; returns the bytes freed (0 when absent). */
  delete(digest: string): Promise<number>;
}

export type ContentStore = ContentProvider & Ingester & ContentManager;

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/** The hex part of a sha256 digest; throws InvalidDigestError otherwise. */
export function digestHex(digest: string): string {
  const m = DIGEST.exec(digest);
  if (m === null || m[1] === undefined) throw new InvalidDigestError(digest);
  return m[1];
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

class FileWriter implements ContentWriter {
  private readonly hash: Hash = createHash('sha256');
  private fd: number | undefined;
  offset = 0;
  private done = false;

  constructor(
    private readonly desc: Descriptor,
    private readonly tmpPath: string,
    private readonly finalPath: string,
  ) {
    this.fd = openSync(tmpPath, 'wx', 0o644);
  }

  get digest(): string {
    return this.desc.digest;
  }

  write(chunk: Buffer): void {
    if (this.fd === undefined) throw new Error(`write to a closed ingest of "${this.desc.digest}"`);
    if (this.offset + chunk.length > this.desc.size) {
      throw new ContentMismatchError(
        this.desc.digest,
        `blob "${this.desc.digest}" is larger than the ${this.desc.size} bytes its descriptor declares`,
      );
    }
    this.hash.update(chunk);
    let off = 0;
    while (off < chunk.length) off += writeSync(this.fd, chunk, off, chunk.length - off);
    this.offset += chunk.length;
  }

  private closeFd(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private actual: string | undefined;

  verify(): void {
    if (this.offset !== this.desc.size) {
      throw new ContentMismatchError(
        this.desc.digest,
        `blob "${this.desc.digest}" is truncated: got ${this.offset} bytes, expected ${this.desc.size}`,
      );
    }
    this.actual ??= `sha256:${this.hash.digest('hex')}`;
    if (this.actual !== this.desc.digest) {
      throw new ContentMismatchError(this.desc.digest, `blob digest mismatch: expected "${this.desc.digest}", got "${this.actual}"`);
    }
  }

  async commit(): Promise<void> {
    this.closeFd();
    this.verify();
    await rename(this.tmpPath, this.finalPath);
    this.done = true;
  }

  async abort(): Promise<void> {
    this.closeFd();
    if (!this.done) await rm(this.tmpPath, { force: true });
  }
}

/** ContentStore keeping blobs as files under `<root>/content`. */
export class LocalContentStore implements ContentStore {
  private readonly blobsDir: string;
  private readonly ingestDir: string;
  private readonly inflight = new Map<string, Promise<void>>();
  private ready: Promise<void> | undefined;

  constructor(root: string) {
    this.blobsDir = join(root, 'content', 'sha256');
    this.ingestDir = join(root, 'content', 'ingest');
  }

  /** Creates the directories and removes ingests left by a crash. Called lazily. */
  init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.blobsDir, { recursive: true });
      await rm(this.ingestDir, { recursive: true, force: true });
      await mkdir(this.ingestDir, { recursive: true });
    })();
    return this.ready;
  }

  private blobPath(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }

  async info(digest: string): Promise<BlobInfo | undefined> {
    await this.init();
    try {
      const st = await stat(this.blobPath(digest));
      return { digest, size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async path(digest: string): Promise<string> {
    if ((await this.info(digest)) === undefined) throw new ContentNotFoundError(digest);
    return this.blobPath(digest);
  }

  async readStream(digest: string, opts: { highWaterMark?: number } = {}): Promise<ReadStream> {
    const p = await this.path(digest);
    return createReadStream(p, { highWaterMark: opts.highWaterMark ?? 256 * 1024 });
  }

  async readBytes(digest: string): Promise<Buffer> {
    await this.init();
    try {
      return await readFile(this.blobPath(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContentNotFoundError(digest);
      throw err;
    }
  }

  async ingest(desc: Descriptor, produce: (writer: ContentWriter) => Promise<void>): Promise<IngestOutcome> {
    const hex = digestHex(desc.digest);
    await this.init();
    for (;;) {
      const running = this.inflight.get(desc.digest);
      if (running !== undefined) {
        await running;
        if ((await this.info(desc.digest)) !== undefined) return 'shared';
        continue;
      }
      if ((await this.info(desc.digest)) !== undefined) return 'exists';
      if (this.inflight.has(desc.digest)) continue;
      const job = (async () => {
        const tmp = join(this.ingestDir, `${hex}-${randomBytes(6).toString('hex')}`);
        const writer = new FileWriter(desc, tmp, join(this.blobsDir, hex));
        try {
          await produce(writer);
          await writer.commit();
        } finally {
          await writer.abort();
        }
      })();
      // Waiters only need to know it finished; the producer sees the error.
      const settled = job.then(() => undefined, () => undefined);
      this.inflight.set(desc.digest, settled);
      try {
        await job;
      } finally {
        this.inflight.delete(desc.digest);
      }
      return 'written';
    }
  }

  async putBytes(desc: Descriptor, bytes: Buffer): Promise<void> {
    await this.ingest(desc, async (w) => {
      w.write(bytes);
    });
  }

  async list(): Promise<BlobInfo[]> {
    await this.init();
    const out: BlobInfo[] = [];
    for (const name of await readdir(this.blobsDir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      try {
        const st = await stat(join(this.blobsDir, name));
        out.push({ digest: `sha256:${name}`, size: st.size });
      } catch {
        // deleted meanwhile
      }
    }
    return out;
  }

  async delete(digest: string): Promise<number> {
    const info = await this.info(digest);
    if (info === undefined) return 0;
    await rm(this.blobPath(digest), { force: true });
    return info.size;
  }
}
