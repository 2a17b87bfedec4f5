/**
 * Pull orchestration: reference -> manifest -> config -> layers -> record.
 *
 * Each missing layer is downloaded, verified and unpacked in one streaming
 * pass: registry bytes are hashed and written to the content store's ingest
 * file while the same bytes go through gunzip into the tar applier, which
 * writes the layer snapshot and hashes the uncompressed stream (the diff ID).
 * Only when the blob digest, its size and the diff ID all match are the blob
 * and the snapshot committed (renamed into place); on any failure both are
 * deleted, so a rejected image leaves nothing half-unpacked behind.
 *
 * Up to `concurrency` layers (default 3) are fetched at once. Work is
 * single-flight per chain ID (and per blob digest in the content store), so
 * two pulls of the same layer at the same time download and unpack it once.
 * Layers whose snapshot already exists are reported as "already exists" and
 * not fetched.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BerthError, CancelledError, ErrorCode, formatImageReference, messageOf, parseImageReference, type ImageReference, type Logger } from '../../lib/index.js';
import { LayerPhase, type LayerProgress } from '../../proto/gen/berth/v1/types.js';
import { sha256Digest, type ContentStore, type Descriptor } from '../content/index.js';
import { LayerApplier, LayerRejectedError, type Snapshotter } from '../snapshots/index.js';
import type { LayerDecoder, NodeMaker } from '../sys/index.js';
import { ManifestError, PullError } from './errors.js';
import { chainIds, nodePlatform, parseConfig, parseIndex, parseManifest, selectPlatform, type Platform } from './manifest.js';
import { isIndex, isManifest, layerCompression, type LayerCompression } from './mediatypes.js';
import type { ImageRecord, ImageRecordStore, LayerRecord } from './records.js';
import type { RegistryClient } from './registry.js';

/** Compressed bytes per decoder write, and how many such buffers a layer's pipeline reuses. */
const INPUT_BATCH = 256 * 1024;
const INPUT_BUFFERS = 4;

export interface PullOptions {
  onProgress?: (layers: LayerProgress[]) => void;
  signal?: AbortSignal;
}

export interface PullerOptions {
  client: RegistryClient;
  content: ContentStore;
  snapshotter: Snapshotter;
  nodeMaker: NodeMaker;
  /** Decoder for zstd layers (e.g. ZstdCliDecoder); without one they are refused. */
  zstd?: LayerDecoder;
  records: ImageRecordStore;
  logger: Logger;
  /** Registry for short names such as `busybox`. */
  defaultRegistry?: string;
  /** Layers fetched at once; default 3. */
  concurrency?: number;
  /** Largest uncompressed size of one layer; default 32 GiB. */
  maxLayerSize?: number;
  /** Largest image config; default 8 MiB. */
  maxConfigSize?: number;
  platform?: Platform;
  /** Smallest interval between two byte-count progress reports; default 100 ms. */
  progressIntervalMs?: number;
  /** Where layer files are created (ApplyOptions.writeMode); default 'auto'. */
  layerWriteMode?: 'auto' | 'sync' | 'parallel';
}

/** What a reference resolves to on this node. */
export interface ResolvedImage {
  /** Fully qualified reference (`latest` added when it had no tag or digest). */
  image: string;
  parsed: ImageReference;
  /** Digest, media type and bytes of the platform manifest. */
  digest: string;
  mediaType: string;
  bytes: Buffer;
  /** The index the manifest was picked from, when the reference named one. */
  index?: { digest: string; mediaType: string; bytes: Buffer };
}

interface LayerJob {
  image: string;
  desc: Descriptor;
  compression: LayerCompression;
  diffId: string;
  chainId: string;
  parent: string | undefined;
}

export class ImagePuller {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly log: Logger;

  constructor(private readonly opts: PullerOptions) {
    this.log = opts.logger.child({ component: 'images' });
  }

  /**
   * Resolves a reference to the manifest this node would pull: fetches it
   * (through an index when the reference names one, picking this node's
   * platform) and checks digests, sizes and media types. Downloads no layers.
   */
  async resolve(ref: string, opts: { signal?: AbortSignal } = {}): Promise<ResolvedImage> {
    const parsed = parseImageReference(ref, { defaultRegistry: this.opts.defaultRegistry });
    if (parsed.tag === undefined && parsed.digest === undefined) parsed.tag = 'latest';
    const image = formatImageReference(parsed);
    const { registry, repository } = parsed;
    const { signal } = opts;
    const client = this.opts.client;
    const first = await client.getManifest(registry, repository, parsed.digest ?? (parsed.tag as string), { signal });
    if (parsed.digest !== undefined && first.digest !== parsed.digest) {
      throw new ManifestError(image, `manifest of "${image}" has digest "${first.digest}", expected "${parsed.digest}"`, { digest: parsed.digest });
    }
    const out: ResolvedImage = { image, parsed, digest: first.digest, mediaType: first.mediaType, bytes: first.bytes };
    if (isIndex(first.mediaType)) {
      const entry = selectPlatform(image, parseIndex(image, first.bytes, first.digest), this.opts.platform ?? nodePlatform(), first.digest);
      if (!isManifest(entry.mediaType)) {
        throw new ManifestError(image, `index of "${image}" points to "${entry.digest}" of media type "${entry.mediaType}" (expected an image manifest)`, { digest: entry.digest });
      }
      const m = await client.getManifest(registry, repository, entry.digest, { signal });
      if (m.digest !== entry.digest || m.bytes.length !== entry.size) {
        throw new ManifestError(image, `manifest "${entry.digest}" of "${image}" does not match its index entry (got digest "${m.digest}", ${m.bytes.length} bytes; expected ${entry.size} bytes)`, { digest: entry.digest });
      }
      out.index = { digest: first.digest, mediaType: first.mediaType, bytes: first.bytes };
      out.digest = m.digest;
      out.mediaType = m.mediaType || entry.mediaType;
      out.bytes = m.bytes;
    }
    if (!isManifest(out.mediaType)) {
      throw new ManifestError(image, `manifest of "${image}" has unknown media type "${out.mediaType}" (expected an OCI or Docker schema 2 manifest or index)`, { digest: out.digest });
    }
    return out;
  }

  /** Pulls an image and records it; returns the record. */
  async pull(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    const signal = opts.signal;
    const client = this.opts.client;
    const content = this.opts.content;
    const resolved = await this.resolve(ref, { signal });
    const { image, parsed } = resolved;
    const { registry, repository } = parsed;
    const manifestBytes = resolved.bytes;
    const manifestDigest = resolved.digest;
    const manifestType = resolved.mediaType;
    const indexDigest = resolved.index?.digest;
    const manifest = parseManifest(image, manifestBytes, manifestDigest);
    const compressions = manifest.layers.map((l) => {
      const c = layerCompression(l.mediaType, this.opts.zstd !== undefined);
      if (typeof c === 'object') throw new ManifestError(image, `failed to pull "${image}": layer "${l.digest}": ${c.problem}`, { digest: l.digest });
      return c;
    });

    // Config.
    let configBytes: Buffer;
    if (await content.info(manifest.config.digest)) configBytes = await content.readBytes(manifest.config.digest);
    else {
      const limit = this.opts.maxConfigSize ?? 8 * 1024 * 1024;
      if (manifest.config.size > limit) throw new ManifestError(image, `config of "${image}" is ${manifest.config.size} bytes (expected at most ${limit})`, { digest: manifest.config.digest });
      configBytes = await client.blobBytes(registry, repository, manifest.config.digest, manifest.config.size, { signal });
      const actual = sha256Digest(configBytes);
      if (actual !== manifest.config.digest || configBytes.length !== manifest.config.size) {
        throw new ManifestError(image, `failed to pull config of "${image}": got ${configBytes.length} bytes with digest "${actual}", expected ${manifest.config.size} bytes with digest "${manifest.config.digest}"`, { digest: manifest.config.digest });
      }
    }
    const config = parseConfig(image, configBytes, manifest.config.digest);
    if (config.diffIds.length !== manifest.layers.length) {
      throw new ManifestError(image, `config of "${image}" lists ${config.diffIds.length} diff IDs for ${manifest.layers.length} layers`, { digest: manifest.config.digest });
    }
    const chains = chainIds(config.diffIds);
    const jobs: LayerJob[] = manifest.layers.map((desc, i) => ({
      image,
      desc,
      compression: compressions[i] as LayerCompression,
      diffId: config.diffIds[i] as string,
      chainId: chains[i] as string,
      parent: i > 0 ? chains[i - 1] : undefined,
    }));

    // Layers.
    const progress: LayerProgress[] = jobs.map((j) => ({ digest: j.desc.digest, phase: LayerPhase.LAYER_PHASE_WAITING, doneBytes: 0, totalBytes: j.desc.size }));
    const report = this.reporter(progress, opts.onProgress);
    report(true);
    const concurrency = Math.max(1, this.opts.concurrency ?? 3);
    let next = 0;
    let failure: unknown;
    const inner = new AbortController();
    const onAbort = (): void => inner.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < jobs.length) {
        const i = next++;
        const job = jobs[i] as LayerJob;
        const p = progress[i] as LayerProgress;
        try {
          await this.ensureLayer(image, registry, repository, job, p, report, inner.signal);
        } catch (err) {
          if (failure === undefined) failure = err;
          inner.abort();
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    if (failure !== undefined) {
      if (signal?.aborted) throw new CancelledError(`pull of "${image}" cancelled`, { cause: failure });
      if (failure instanceof BerthError) throw failure;
      throw new PullError(image, ErrorCode.Internal, `failed to pull "${image}": ${messageOf(failure)}`, { cause: failure });
    }
    report(true);

    // Config, manifest (and index) blobs, then the record: a failed pull stores none of them.
    await content.putBytes(manifest.config, configBytes);
    await content.putBytes({ mediaType: manifestType, digest: manifestDigest, size: manifestBytes.length }, manifestBytes);
    if (resolved.index !== undefined) {
      await content.putBytes({ mediaType: resolved.index.mediaType, digest: resolved.index.digest, size: resolved.index.bytes.length }, resolved.index.bytes);
    }
    const layers: LayerRecord[] = jobs.map((j) => ({ digest: j.desc.digest, mediaType: j.desc.mediaType, size: j.desc.size, diffId: j.diffId, chainId: j.chainId }));
    const record: ImageRecord = {
      reference: image,
      registry,
      repository,
      ...(parsed.tag !== undefined ? { tag: parsed.tag } : {}),
      digest: manifestDigest,
      ...(indexDigest !== undefined ? { indexDigest } : {}),
      mediaType: manifestType,
      configDigest: manifest.config.digest,
      architecture: config.architecture,
      os: config.os,
      config: config.config,
      layers,
      chainId: chains[chains.length - 1] ?? '',
      size: manifestBytes.length + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
      created: config.created ?? '',
      pulledAt: new Date().toISOString(),
    };
    await this.opts.records.put(record);
    this.log.info('image pulled', { image, digest: manifestDigest, layers: layers.length });
    return record;
  }

  private reporter(progress: LayerProgress[], cb: PullOptions['onProgress']): (force: boolean) => void {
    let last = 0;
    const interval = this.opts.progressIntervalMs ?? 100;
    return (force: boolean) => {
      if (!cb) return;
      const now = Date.now();
      if (!force && now - last < interval) return;
      last = now;
      try {
        cb(progress.map((p) => ({ ...p })));
      } catch (err) {
        this.log.warn('progress callback failed', { error: messageOf(err) });
      }
    };
  }

  /** Makes sure the snapshot of one layer exists, single-flight per chain ID. */
  private async ensureLayer(image: string, registry: string, repository: string, job: LayerJob, p: LayerProgress, report: (force: boolean) => void, signal: AbortSignal): Promise<void> {
    const setPhase = (phase: LayerPhase): void => {
      p.phase = phase;
      report(true);
    };
    for (;;) {
      const running = this.inflight.get(job.chainId);
      if (running !== undefined) {
        await running.catch(() => undefined);
        continue;
      }
      if (await this.opts.snapshotter.stat(job.chainId)) {
        p.doneBytes = p.totalBytes;
        setPhase(LayerPhase.LAYER_PHASE_ALREADY_EXISTS);
        return;
      }
      // Another pull may have started this layer while we looked.
      if (!this.inflight.has(job.chainId)) break;
    }
    const work = this.fetchAndUnpack(image, registry, repository, job, p, report, setPhase, signal);
    this.inflight.set(job.chainId, work);
    try {
      await work;
    } finally {
      this.inflight.delete(job.chainId);
    }
    setPhase(LayerPhase.LAYER_PHASE_DONE);
  }

  private async fetchAndUnpack(image: string, registry: string, repository: string, job: LayerJob, p: LayerProgress, report: (force: boolean) => void, setPhase: (phase: LayerPhase) => void, signal: AbortSignal): Promise<void> {
    const { content, snapshotter, client } = this.opts;
    const prepared = await snapshotter.prepareLayer(job.chainId, job.parent);
    const applier = new LayerApplier({
      dir: prepared.dir,
      nodeMaker: this.opts.nodeMaker,
      maxSize: this.opts.maxLayerSize ?? 32 * 1024 ** 3,
      ...(this.opts.layerWriteMode !== undefined ? { writeMode: this.opts.layerWriteMode } : {}),
      image,
      digest: job.desc.digest,
    });
    const finishUnpack = async (): Promise<void> => {
      setPhase(LayerPhase.LAYER_PHASE_EXTRACTING);
      const result = await applier.finish();
      if (result.diffId !== job.diffId) {
        throw new LayerRejectedError(`uncompressed content has digest "${result.diffId}", but the image config says "${job.diffId}"`, { image, digest: job.desc.digest });
      }
    };
    try {
      // The blob is committed (digest and size checked) only after the unpack
      // finished and its diff ID matched; the snapshot only after both.
      const outcome = await content.ingest(job.desc, async (writer) => {
        setPhase(LayerPhase.LAYER_PHASE_DOWNLOADING);
        const source = client.blob(registry, repository, job.desc.digest, { signal });
        await this.unpackStream(source, job, applier, (chunk) => {
          writer.write(chunk);
          p.doneBytes = writer.offset;
          report(false);
        });
        setPhase(LayerPhase.LAYER_PHASE_VERIFYING);
        writer.verify();
        await finishUnpack();
      });
      if (outcome !== 'written') {
        // Another pull stored the blob meanwhile (or it was already here): unpack the local copy.
        setPhase(LayerPhase.LAYER_PHASE_EXTRACTING);
        const stream = await content.readStream(job.desc.digest);
        let done = 0;
        await this.unpackStream(stream as AsyncIterable<Buffer>, job, applier, (chunk) => {
          done += chunk.length;
          p.doneBytes = done;
          report(false);
        });
        if (done !== job.desc.size) throw new LayerRejectedError(`local blob is ${done} bytes, expected ${job.desc.size}`, { image, digest: job.desc.digest });
        await finishUnpack();
      }
      await prepared.commit();
    } catch (err) {
      await applier.abort();
      await prepared.abort();
      if (signal.aborted && !(err instanceof LayerRejectedError)) throw new CancelledError(`pull of "${image}" cancelled`, { cause: err });
      if (err instanceof BerthError) {
        if (err.message.includes(job.desc.digest) && err.message.includes(image)) throw err;
        throw new PullError(image, err.code, `failed to pull layer "${job.desc.digest}" of "${image}": ${err.message}`, { digest: job.desc.digest, cause: err });
      }
      throw new PullError(image, ErrorCode.Internal, `failed to pull layer "${job.desc.digest}" of "${image}": ${messageOf(err)}`, { digest: job.desc.digest, cause: err });
    }
  }

  /**
   * Streams compressed bytes through `onCompressed` (hash + store) and, via
   * gunzip when compressed, into the applier, with backpressure.
   */
  private async unpackStream(source: AsyncIterable<Buffer>, job: LayerJob, applier: LayerApplier, onCompressed: (chunk: Buffer) => void): Promise<void> {
    if (job.compression === 'none') {
      for await (const chunk of source) {
        onCompressed(chunk);
        applier.write(chunk);
        if (applier.saturated) await applier.whenWritable();
      }
      return;
    }
    // 512 KiB of output per callback: a quarter of the callbacks (and of their
    // thread-pool trips and buffer allocations) of 128 KiB saved ~0.1 s of CPU
    // per 170 MB; it still bounds how long one synchronous apply step holds
    // the event loop.
    const decoder: Duplex = job.compression === 'zstd' && this.opts.zstd ? this.opts.zstd.open() : createGunzip({ chunkSize: 512 * 1024 });
    let failed: unknown;
    // Output is applied in a microtask, not in the 'data' callback itself: zlib
    // starts inflating the next chunk on the thread pool right after the
    // callback returns, so decompression overlaps with hashing and writing.
    // At most one callback's output waits here (the next callback is a later
    // macrotask), so this queue is bounded.
    const queue: Buffer[] = [];
    let scheduled = false;
    // When the applier's writer threads fall behind (a slow disk), inflating
    // pauses until they catch up, and with it the download: memory stays bounded.
    let paused = false;
    const resume = (): void => {
      paused = false;
      if (!decoder.destroyed) decoder.resume();
    };
    const drain = (): void => {
      scheduled = false;
      while (queue.length > 0 && failed === undefined) {
        const d = queue.shift() as Buffer;
        try {
          applier.write(d);
        } catch (err) {
          failed = err;
          queue.length = 0;
          decoder.destroy(err as Error);
        }
      }
      if (failed === undefined && !paused && applier.saturated) {
        paused = true;
        decoder.pause();
        void applier.whenWritable().then(resume);
      }
    };
    decoder.on('data', (d: Buffer) => {
      if (failed !== undefined) return;
      queue.push(d);
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(drain);
      }
    });
    const ended = once(decoder, 'end');
    ended.catch(() => undefined);
    try {
      // Network chunks (~64 KiB) are copied into 256 KiB batches: each write
      // is one trip to the thread pool, and fewer, larger trips inflate
      // faster. The batch buffers (at most INPUT_BUFFERS) are reused once the
      // decoder has consumed them: a fresh buffer per batch would outlive a few
      // young-generation collections while zlib holds it, be promoted, and
      // drive V8 into a full collection every few MB of download.
      const free: Buffer[] = [];
      let allocated = 0;
      const waiting: (() => void)[] = [];
      const release = (): void => {
        for (const w of waiting.splice(0)) w();
      };
      decoder.once('close', release);
      const take = async (): Promise<Buffer> => {
        for (;;) {
          const b = free.pop();
          if (b !== undefined) return b;
          // A destroyed decoder may never call back: stop waiting for its buffers.
          if (allocated < INPUT_BUFFERS || decoder.destroyed) {
            allocated++;
            return Buffer.allocUnsafeSlow(INPUT_BATCH);
          }
          await new Promise<void>((resolve) => waiting.push(resolve));
        }
      };
      let cur: Buffer | undefined;
      let fill = 0;
      const flush = async (): Promise<void> => {
        if (cur === undefined || fill === 0) return;
        const b = cur;
        const n = fill;
        cur = undefined;
        fill = 0;
        const more = decoder.write(b.subarray(0, n), () => {
          free.push(b);
          waiting.shift()?.();
        });
        if (!more) await once(decoder, 'drain');
      };
      for await (const chunk of source) {
        if (failed !== undefined || decoder.destroyed) break;
        onCompressed(chunk);
        for (let pos = 0; pos < chunk.length;) {
          cur ??= await take();
          const n = Math.min(INPUT_BATCH - fill, chunk.length - pos);
          chunk.copy(cur, fill, pos, pos + n);
          fill += n;
          pos += n;
          if (fill === INPUT_BATCH) await flush();
        }
      }
      if (failed === undefined && !decoder.destroyed) await flush();
      if (failed === undefined) {
        decoder.end();
        await ended;
        drain();
      }
    } catch (err) {
      if (failed === undefined) failed = err;
    } finally {
      decoder.destroy();
    }
    if (failed !== undefined) {
      if (failed instanceof BerthError) throw failed;
      const e = failed as NodeJS.ErrnoException;
      if (e.code?.startsWith('Z_')) throw new LayerRejectedError(`invalid gzip stream: ${e.message}`, { image: job.image, digest: job.desc.digest });
      if (job.compression === 'zstd') throw new LayerRejectedError(`invalid zstd stream: ${e.message}`, { image: job.image, digest: job.desc.digest });
      throw failed;
    }
  }
}
