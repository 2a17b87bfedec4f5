/**
 * Layer writers: worker threads that create a layer's files and symlinks
 * while the main thread goes on hashing and parsing the tar stream.
 *
 * Vocabulary:
 * - pool (LayerWriterPool): a few worker threads (write-worker.ts), shared by
 *   every layer being unpacked in the process; started on first use, idle
 *   workers do not keep the process alive.
 * - stream (LayerWriter): one layer's sequence of writes. Its operations are
 *   cut into batches (a list of operations plus one buffer with the file
 *   data, moved to the worker without a copy and handed back for reuse).
 * - operation: open a new file (create exclusively, never through a symlink),
 *   write bytes of it, close it (owner, mode, mtime), or make a symlink
 *   (owner, mtime). Directories, hard links, devices and everything else stay
 *   with the applier.
 *
 * The applier checks every name and creates every directory before it hands
 * the operations of the entries inside it to a stream, so workers only run
 * calls whose paths are already known to be safe; batches of one stream may
 * run on different workers (a file's open, writes and close always on one),
 * so operations of different entries must not depend on each other (the
 * applier links hard links to worker-written files only after `end`).
 *
 * Lifecycle of a stream: operations, then `end()` (sends the rest, waits for
 * every batch, closes anything left open after a failure) exactly once. The
 * first failure is kept in `error` (the entry's relative path and the
 * message); later batches of that stream are skipped. `pendingBytes` and
 * `whenBelow()` give the caller backpressure.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

export type WriteOp =
  | { t: 'open'; path: string; rel: string; mode: number }
  | { t: 'write'; off: number; len: number }
  /** uid/chmod -1: leave as created. */
  | { t: 'close'; uid: number; gid: number; chmod: number; mtime: number }
  | { t: 'symlink'; path: string; rel: string; target: string; uid: number; gid: number; mtime: number };

/** Main thread -> worker. */
export interface WriteBatch {
  stream: number;
  seq: number;
  ops: WriteOp[];
  /** File data of the `write` operations (offsets into it); transferred. */
  data: ArrayBuffer;
  used: number;
  /** Last batch of the stream for this worker: close whatever is still open. */
  end?: boolean;
}

/** Worker -> main thread, one per batch. */
export interface WriteAck {
  stream: number;
  seq: number;
  bytes: number;
  data: ArrayBuffer;
  error?: { message: string; rel: string };
}

/** Size of one batch's data buffer. */
const BATCH_BYTES = 1024 * 1024;
/** A batch is sent once it holds this much data (or this many operations) at an entry boundary. */
const SEND_BYTES = 256 * 1024;
const SEND_OPS = 256;
/** Free data buffers kept for reuse. */
const FREE_MAX = 32;

interface Slot {
  worker: Worker;
  /** Batches sent and not yet acknowledged, per stream. */
  inflight: Map<number, number>;
  total: number;
  bytes: number;
  dead: boolean;
}

interface StreamHandler {
  ack(a: WriteAck): void;
  lost(err: Error, batches: number): void;
}

export interface LayerWriterPoolOptions {
  /** Worker threads; default 2 (1 on a single CPU). */
  size?: number;
}

export class LayerWriterPool {
  private static sharedPool: LayerWriterPool | undefined;
  private readonly slots: (Slot | undefined)[];
  private readonly handlers = new Map<number, StreamHandler>();
  private readonly free: ArrayBuffer[] = [];
  private nextStream = 1;
  private closed = false;

  constructor(opts: LayerWriterPoolOptions = {}) {
    const size = opts.size ?? Math.min(2, availableParallelism());
    if (!Number.isSafeInteger(size) || size < 1 || size > 64) throw new RangeError(`layer writer pool size: expected a whole number from 1 to 64, got ${size}`);
    this.slots = Array.from({ length: size }, () => undefined);
  }

  /** The process-wide pool (BERTH_LAYER_WRITERS sets its size). */
  static shared(): LayerWriterPool {
    if (LayerWriterPool.sharedPool === undefined) {
      const env = process.env['BERTH_LAYER_WRITERS'];
      LayerWriterPool.sharedPool = new LayerWriterPool(env !== undefined && env !== '' ? { size: Number(env) } : {});
    }
    return LayerWriterPool.sharedPool;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Starts a stream of writes for one layer. */
  stream(): LayerWriter {
    if (this.closed) throw new Error('layer writer pool is closed');
    return new LayerWriter(this, this.nextStream++);
  }

  /** @internal */
  register(id: number, h: StreamHandler): void {
    this.handlers.set(id, h);
  }

  /** @internal */
  unregister(id: number): void {
    this.handlers.delete(id);
  }

  /** @internal A data buffer for a batch. */
  takeBuffer(): ArrayBuffer {
    return this.free.pop() ?? new ArrayBuffer(BATCH_BYTES);
  }

  /** @internal The slot with the least data outstanding. */
  pick(): number {
    let best = 0;
    let bestBytes = Infinity;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      const b = s === undefined || s.dead ? 0 : s.bytes;
      if (b < bestBytes) {
        best = i;
        bestBytes = b;
      }
    }
    return best;
  }

  /** @internal */
  send(slotIndex: number, batch: WriteBatch): void {
    if (this.closed) {
      queueMicrotask(() => this.handlers.get(batch.stream)?.lost(new Error('layer writer pool is closed'), 1));
      return;
    }
    const slot = this.slot(slotIndex);
    if (slot.total === 0) slot.worker.ref();
    slot.total++;
    slot.bytes += batch.used;
    slot.inflight.set(batch.stream, (slot.inflight.get(batch.stream) ?? 0) + 1);
    slot.worker.postMessage(batch, [batch.data]);
  }

  private slot(i: number): Slot {
    const cur = this.slots[i];
    if (cur !== undefined && !cur.dead) return cur;
    const worker = new Worker(new URL('./write-worker.js', import.meta.url));
    worker.unref();
    const slot: Slot = { worker, inflight: new Map(), total: 0, bytes: 0, dead: false };
    worker.on('message', (a: WriteAck) => {
      slot.total--;
      slot.bytes -= a.bytes;
      const left = (slot.inflight.get(a.stream) ?? 1) - 1;
      if (left === 0) slot.inflight.delete(a.stream);
      else slot.inflight.set(a.stream, left);
      if (slot.total === 0) slot.worker.unref();
      if (a.data.byteLength === BATCH_BYTES && this.free.length < FREE_MAX) this.free.push(a.data);
      this.handlers.get(a.stream)?.ack(a);
    });
    const lost = (err: Error): void => {
      if (slot.dead) return;
      slot.dead = true;
      for (const [stream, n] of slot.inflight) this.handlers.get(stream)?.lost(err, n);
      slot.inflight.clear();
      slot.total = 0;
      slot.bytes = 0;
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`layer writer thread exited with code ${code}`)));
    this.slots[i] = slot;
    return slot;
  }

  /** Stops the workers (tests; the shared pool lives as long as the process). */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.slots.filter((s): s is Slot => s !== undefined && !s.dead);
    await Promise.all(all.map((s) => s.worker.terminate()));
  }
}

interface OpenBatch {
  ops: WriteOp[];
  buf: Buffer;
  data: ArrayBuffer;
  used: number;
  /** Starts in the middle of a file opened in an earlier batch. */
  continues: boolean;
}

export class LayerWriter {
  private cur: OpenBatch | undefined;
  private fileOpen = false;
  /** Slot holding the open file (set when a batch ends inside a file). */
  private sticky = 0;
  private seq = 0;
  private outstanding = 0;
  private bytes = 0;
  private readonly used = new Set<number>();
  private waiters: { limit: number; resolve: () => void }[] = [];
  private ended = false;
  /** The first failure: the entry (relative path) and the message. */
  error: { rel: string; message: string } | undefined;

  constructor(private readonly pool: LayerWriterPool, private readonly id: number) {
    pool.register(id, {
      ack: (a) => {
        if (a.error !== undefined) this.error ??= a.error;
        this.settle(1, a.bytes);
      },
      lost: (err, n) => {
        this.error ??= { rel: '', message: err.message };
        this.settle(n, undefined);
      },
    });
  }

  /** Bytes sent to workers and not yet written. */
  get pendingBytes(): number {
    return this.bytes;
  }

  private settle(batches: number, bytes: number | undefined): void {
    this.outstanding -= batches;
    // Bytes of batches lost with a worker are unknown; the stream failed anyway.
    if (this.outstanding === 0) this.bytes = 0;
    else if (bytes !== undefined) this.bytes -= bytes;
    const ready = this.waiters.filter((w) => this.bytes <= w.limit || this.error !== undefined || this.outstanding === 0);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  /** Resolves once at most `limit` bytes are pending (or on a failure). */
  whenBelow(limit: number): Promise<void> {
    if (this.bytes <= limit || this.error !== undefined || this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ limit, resolve }));
  }

  private batch(): OpenBatch {
    if (this.cur === undefined) {
      const data = this.pool.takeBuffer();
      this.cur = { ops: [], data, buf: Buffer.from(data), used: 0, continues: this.fileOpen };
    }
    return this.cur;
  }

  private send(): void {
    const b = this.cur;
    if (b === undefined) return;
    this.cur = undefined;
    const slot = b.continues ? this.sticky : this.pool.pick();
    if (this.fileOpen) this.sticky = slot;
    this.used.add(slot);
    this.outstanding++;
    this.bytes += b.used;
    this.pool.send(slot, { stream: this.id, seq: this.seq++, ops: b.ops, data: b.data, used: b.used });
  }

  /** Sends the open batch when it is full enough (between entries only). */
  private maybeSend(): void {
    const b = this.cur;
    if (b !== undefined && !this.fileOpen && (b.used >= SEND_BYTES || b.ops.length >= SEND_OPS)) this.send();
  }

  open(path: string, rel: string, mode: number): void {
    this.batch().ops.push({ t: 'open', path, rel, mode });
    this.fileOpen = true;
  }

  /** Copies file data (the caller may reuse `chunk`). */
  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      let b = this.batch();
      if (b.used === b.buf.length) {
        this.send();
        b = this.batch();
      }
      const n = Math.min(b.buf.length - b.used, chunk.length - pos);
      chunk.copy(b.buf, b.used, pos, pos + n);
      const last = b.ops[b.ops.length - 1];
      if (last !== undefined && last.t === 'write' && last.off + last.len === b.used) last.len += n;
      else b.ops.push({ t: 'write', off: b.used, len: n });
      b.used += n;
      pos += n;
    }
  }

  close(uid: number, gid: number, chmod: number, mtime: number): void {
    this.batch().ops.push({ t: 'close', uid, gid, chmod, mtime });
    this.fileOpen = false;
    this.maybeSend();
  }

  symlink(path: string, rel: string, target: string, uid: number, gid: number, mtime: number): void {
    this.batch().ops.push({ t: 'symlink', path, rel, target, uid, gid, mtime });
    this.maybeSend();
  }

  /**
   * Sends what is left, tells every worker this stream used that it ended,
   * and waits for all of it. Safe to call once; later calls wait again.
   */
  async end(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      // A file left open by a failure elsewhere is closed by the worker on `end`.
      this.send();
      for (const slot of this.used) {
        this.outstanding++;
        this.pool.send(slot, { stream: this.id, seq: this.seq++, ops: [], data: this.pool.takeBuffer(), used: 0, end: true });
      }
    }
    while (this.outstanding > 0) await new Promise<void>((resolve) => this.waiters.push({ limit: -1, resolve }));
    this.pool.unregister(this.id);
  }
}
