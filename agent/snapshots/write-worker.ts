/**
 * Worker thread of the layer writers (writers.ts): runs batches of file
 * system calls that a LayerApplier on the main thread has already checked.
 * It decides nothing about paths: every path is absolute, inside the layer
 * directory, and its parent directory was created by the applier before the
 * batch was sent. Files are created with O_CREAT|O_EXCL|O_NOFOLLOW, so an
 * existing name (or a symlink) in their place fails instead of being
 * followed.
 *
 * Messages in: WriteBatch (see writers.ts). Messages out: one WriteAck per
 * batch, carrying the batch's data buffer back for reuse. After a failure of
 * one stream, its later batches are acknowledged without running them, and
 * its open file is closed.
 */
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, lutimesSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { WriteAck, WriteBatch } from './writers.js';

const FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

interface StreamState {
  fd: number | undefined;
  path: string;
  failed: boolean;
}

const streams = new Map<number, StreamState>();

function closeQuietly(s: StreamState): void {
  if (s.fd === undefined) return;
  try {
    closeSync(s.fd);
  } catch {
    // already failing
  }
  s.fd = undefined;
}

function run(b: WriteBatch, s: StreamState): void {
  const data = new Uint8Array(b.data, 0, b.used);
  for (const op of b.ops) {
    switch (op.t) {
      case 'open':
        s.path = op.rel;
        s.fd = openSync(op.path, FLAGS, op.mode);
        break;
      case 'write': {
        const fd = s.fd as number;
        let off = op.off;
        const end = op.off + op.len;
        while (off < end) off += writeSync(fd, data, off, end - off);
        break;
      }
      case 'close': {
        const fd = s.fd as number;
        if (op.uid >= 0) fchownSync(fd, op.uid, op.gid);
        if (op.chmod >= 0) fchmodSync(fd, op.chmod);
        futimesSync(fd, op.mtime, op.mtime);
        s.fd = undefined;
        closeSync(fd);
        break;
      }
      case 'symlink':
        s.path = op.rel;
        symlinkSync(op.target, op.path);
        if (op.uid >= 0) lchownSync(op.path, op.uid, op.gid);
        lutimesSync(op.path, op.mtime, op.mtime);
        break;
    }
  }
}

parentPort?.on('message', (b: WriteBatch) => {
  let s = streams.get(b.stream);
  if (s === undefined) {
    s = { fd: undefined, path: '', failed: false };
    streams.set(b.stream, s);
  }
  const ack: WriteAck = { stream: b.stream, seq: b.seq, bytes: b.used, data: b.data };
  if (!s.failed) {
    try {
      run(b, s);
    } catch (err) {
      s.failed = true;
      closeQuietly(s);
      ack.error = { message: (err as Error).message ?? String(err), rel: s.path };
    }
  }
  if (b.end) {
    closeQuietly(s);
    streams.delete(b.stream);
  }
  parentPort?.postMessage(ack, [b.data]);
});
