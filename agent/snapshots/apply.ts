/**
 * Applies one layer (an uncompressed tar stream) to an empty directory,
 * safely. The layer is applied on its own, not on top of its parents: the
 * result is an overlayfs lower directory, so whiteouts become character
 * devices 0:0 and opaque directories get `trusted.overlay.opaque=y`.
 *
 * Everything in the tar is treated as hostile. Refused with LayerRejectedError
 * naming the entry:
 * - absolute names and names with a `..` component (entry names and hard-link
 *   targets);
 * - an entry whose parent is a symlink or a non-directory (writing through a
 *   symlink) — the tree is new and only this layer writes to it, so the map of
 *   entries seen so far says exactly what every parent is;
 * - hard links whose target is not an earlier non-directory entry of this layer;
 * - whiteouts named `.wh.`, `.wh..` or `.wh...` (escaping their directory);
 * - unknown entry types (sparse files, volume headers, ...);
 * - a second entry for the same path;
 * - more decompressed bytes than `maxSize` (decompression bombs).
 * Symlink targets are not checked: they are resolved inside the container.
 *
 * Order of work: regular files, directories and symlinks are written as their
 * data streams in; device nodes, FIFOs and whiteouts go to the fsops helper at
 * the end (and hard links to them after that); then xattrs (after chown, which
 * clears security.capability); then directory modes, owners and mtimes,
 * deepest first, so no later write disturbs them.
 *
 * Threads: all checks, and every directory, are done on the calling thread.
 * When creating files turns out to be slow (the layer's first SLOW_PROBE file
 * creates took over SLOW_CREATE_MS each on average, as on a busy disk), its
 * remaining files and symlinks are created by the layer writer threads
 * (writers.ts) from batches the applier sends them, so slow creates overlap
 * with each other and with hashing, inflating and parsing on this thread.
 * Where creates are fast (tmpfs, an idle or fresh disk) everything stays on
 * this thread: the copies and batch round trips cost ~0.2 s of CPU per 170 MB
 * (docs/benchmarks.md), more than they save on a 2-core machine. Hard links
 * to files written by the threads are made after they finished.
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lutimesSync, mkdirSync, openSync, symlinkSync, writeSync,
  chmodSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FsOpsSession, NodeMaker } from '../sys/index.js';
import { LayerRejectedError } from './errors.js';
import { TarFormatError, TarReader, type TarEntry, type TarHandler } from './tar.js';
import { LayerWriterPool, type LayerWriter } from './writers.js';

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const WHITEOUT_PREFIX = '.wh.';
/** The process umask, read once (reading it means setting it back at once). */
const UMASK = (() => {
  const old = process.umask(0o022);
  process.umask(old);
  return old;
})();
const CREATOR_UID = process.geteuid?.() ?? -1;
const CREATOR_GID = process.getegid?.() ?? -1;
const OPAQUE = '.wh..wh..opq';
/** See "Threads" above. */
const SLOW_PROBE = 64;
const SLOW_CREATE_MS = 0.25;
/** Backpressure: `saturated` above this many bytes queued for the writer threads. */
const PENDING_HIGH = 16 * 1024 * 1024;
const PENDING_LOW = 4 * 1024 * 1024;

export interface ApplyOptions {
  /** Absolute path of an existing, empty directory. */
  dir: string;
  nodeMaker: NodeMaker;
  /** Largest number of uncompressed tar bytes accepted. */
  maxSize: number;
  /**
   * Where files and symlinks are created: 'auto' (default) on the writer
   * threads once creates prove slow (SLOW_PROBE), 'sync' always on this
   * thread, 'parallel' always on the writer threads (tests, benchmarks).
   */
  writeMode?: 'auto' | 'sync' | 'parallel';
  /** Writer threads; default the process-wide LayerWriterPool.shared(). */
  writers?: LayerWriterPool;
  /** For error messages. */
  image?: string;
  digest?: string;
}

export interface ApplyResult {
  /** sha256 of the uncompressed tar stream (the layer's diff ID). */
  diffId: string;
  /** Uncompressed tar bytes. */
  size: number;
  entries: number;
}

type Kind = 'file' | 'dir' | 'implicit-dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'whiteout';

interface Meta {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  /** The mode still has to be set (it was not given at create time). */
  chmod?: boolean;
}

/**
 * Whether a directory can be created with its final mode at once: plain
 * permission bits the umask leaves alone, and the owner can still write and
 * enter it while the layer is unpacked (the unpack dir is private to the
 * agent either way). Saves a chmod per directory.
 */
function directDirMode(mode: number): boolean {
  return (mode & ~0o777) === 0 && (mode & UMASK) === 0 && (mode & 0o700) === 0o700;
}

/** New inodes belong to the creator; lchown only when the entry wants someone else. */
function ownedByCreator(m: { uid: number; gid: number }): boolean {
  return m.uid === CREATOR_UID && m.gid === CREATOR_GID;
}

interface Deferred {
  kind: 'node' | 'fifo' | 'whiteout' | 'link';
  path: string;
  entry?: TarEntry;
  target?: string;
}

/** Allowed xattr namespaces; trusted.overlay.* is ours to set and never taken from a layer. */
function xattrAllowed(name: string): boolean {
  if (name.startsWith('trusted.overlay.')) return false;
  return name.startsWith('user.') || name.startsWith('security.') || name.startsWith('trusted.') || name.startsWith('system.posix_acl_');
}

export class LayerApplier implements TarHandler {
  private readonly reader = new TarReader(this);
  private readonly hash: Hash = createHash('sha256');
  private size = 0;
  private entries = 0;
  private readonly seen = new Map<string, Kind>();
  private readonly dirs: Meta[] = [];
  private readonly deferred: Deferred[] = [];
  private readonly xattrs: { path: string; name: string; value: Buffer }[] = [];
  private readonly opaque: string[] = [];
  private readonly nodeMeta: Meta[] = [];
  private fd: number | undefined;
  /** The writer threads' stream, once this layer uses them. */
  private writer: LayerWriter | undefined;
  /** The current file is being written by the writer threads. */
  private fileInWriter = false;
  /** Synchronous creates timed so far and their total time (ms); see SLOW_PROBE. */
  private probed = 0;
  private probeMs = 0;
  private slow = false;
  /** Paths created by the writer threads (hard links to them wait for the end). */
  private readonly written = new Set<string>();
  private fileMeta: Meta | undefined;
  private fileNeedsChmod = true;
  private entryName = '';
  private failed: Error | undefined;

  constructor(private readonly opts: ApplyOptions) {}

  /** Too many bytes wait for the writer threads: stop feeding until `whenWritable()`. */
  get saturated(): boolean {
    return this.writer !== undefined && this.writer.pendingBytes > PENDING_HIGH;
  }

  /** Resolves when the writer threads have caught up (at once when not saturated). */
  whenWritable(): Promise<void> {
    return this.writer === undefined ? Promise.resolve() : this.writer.whenBelow(PENDING_LOW);
  }

  /** The writer threads' stream, started when this layer should use them. */
  private threads(): LayerWriter | undefined {
    if (this.writer === undefined) {
      const mode = this.opts.writeMode ?? 'auto';
      if (mode === 'sync' || (mode === 'auto' && !this.slow)) return undefined;
      this.writer = (this.opts.writers ?? LayerWriterPool.shared()).stream();
    }
    return this.writer;
  }

  /** The first failure of the writer threads, as a rejection naming its entry. */
  private writerError(): LayerRejectedError | undefined {
    const e = this.writer?.error;
    return e === undefined ? undefined : this.reject(e.message, e.rel);
  }

  private reject(problem: string, entry: string | undefined = this.entryName, code?: 'resource_exhausted'): LayerRejectedError {
    return new LayerRejectedError(problem, { image: this.opts.image, digest: this.opts.digest, entry: entry === '' ? undefined : entry }, code ? { code } : {});
  }

  /** Feeds uncompressed tar bytes. Throws LayerRejectedError on the first problem. */
  write(chunk: Buffer): void {
    if (this.failed) throw this.failed;
    try {
      const we = this.writerError();
      if (we !== undefined) throw we;
      this.size += chunk.length;
      if (this.size > this.opts.maxSize) {
        throw this.reject(`decompressed size exceeds the limit of ${this.opts.maxSize} bytes`, undefined, 'resource_exhausted');
      }
      this.hash.update(chunk);
      this.reader.push(chunk);
    } catch (err) {
      throw this.fail(err);
    }
  }

  private fail(err: unknown): Error {
    this.closeFile();
    let out: Error;
    if (err instanceof LayerRejectedError) out = err;
    else if (err instanceof TarFormatError) out = this.reject(`malformed tar: ${err.message}`, this.reader.current);
    else {
      const e = err as NodeJS.ErrnoException;
      out = this.reject(`${e.message ?? String(err)}`);
    }
    this.failed = out;
    return out;
  }

  private closeFile(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already failing
      }
      this.fd = undefined;
    }
  }

  /** Cleans a tar name into a relative path; '' is the layer root. */
  private clean(raw: string, what: string): string {
    if (raw.includes('\0')) throw this.reject(`${what} contains a NUL byte`);
    if (raw.startsWith('/')) throw this.reject(`${what} ${JSON.stringify(raw)} is absolute (expected a path relative to the layer root)`);
    const parts: string[] = [];
    for (const c of raw.split('/')) {
      if (c === '' || c === '.') continue;
      if (c === '..') throw this.reject(`${what} ${JSON.stringify(raw)} contains ".." (expected a path inside the layer root)`);
      parts.push(c);
    }
    return parts.join('/');
  }

  private abs(rel: string): string {
    return rel === '' ? this.opts.dir : join(this.opts.dir, rel);
  }

  /** Checks every parent of rel; creates missing ones as 0755 directories. */
  private ensureParents(rel: string): void {
    const parts = rel.split('/');
    let p = '';
    for (let i = 0; i < parts.length - 1; i++) {
      p = p === '' ? (parts[i] as string) : `${p}/${parts[i] as string}`;
      const kind = this.seen.get(p);
      if (kind === undefined) {
        mkdirSync(this.abs(p), 0o755);
        if ((UMASK & 0o755) !== 0) chmodSync(this.abs(p), 0o755);
        this.seen.set(p, 'implicit-dir');
      } else if (kind === 'symlink') {
        throw this.reject(`parent "${p}" is a symlink in this layer (writing through a symlink is not allowed)`);
      } else if (kind !== 'dir' && kind !== 'implicit-dir') {
        throw this.reject(`parent "${p}" is not a directory in this layer`);
      }
    }
  }

  private claim(rel: string, kind: Kind): void {
    const before = this.seen.get(rel);
    if (before !== undefined) {
      if (kind === 'dir' && before === 'implicit-dir') {
        this.seen.set(rel, 'dir');
        return;
      }
      throw this.reject(`duplicate entry for "${rel}" (an earlier entry already wrote it)`);
    }
    this.seen.set(rel, kind);
  }

  entry(e: TarEntry): void {
    this.entries++;
    this.entryName = e.name;
    if (e.type === 'unknown') {
      throw this.reject(`unsupported entry type ${JSON.stringify(e.typeFlag)} (expected a file, directory, link, device or fifo)`);
    }
    const rel = this.clean(e.name, 'name');
    const meta: Meta = { path: rel, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime };
    if (rel === '') {
      if (e.type !== 'dir') throw this.reject('the layer root can only be a directory');
      if (this.seen.has('')) throw this.reject('duplicate entry for the layer root');
      this.seen.set('', 'dir');
      this.dirs.push(meta);
      this.addXattrs(rel, e);
      return;
    }
    this.ensureParents(rel);
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : rel.slice(0, slash);
    const base = slash < 0 ? rel : rel.slice(slash + 1);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE) {
        if (this.opaque.includes(parent)) throw this.reject(`duplicate opaque marker for "${parent || '/'}"`);
        this.opaque.push(parent);
        return;
      }
      if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // other aufs metadata: ignored
      const target = base.slice(WHITEOUT_PREFIX.length);
      if (target === '' || target === '.' || target === '..') {
        throw this.reject(`whiteout ${JSON.stringify(base)} does not name a file in its directory`);
      }
      const hidden = parent === '' ? target : `${parent}/${target}`;
      this.claim(hidden, 'whiteout');
      this.deferred.push({ kind: 'whiteout', path: hidden });
      return;
    }

    switch (e.type) {
      case 'dir': {
        const implicit = this.seen.get(rel) === 'implicit-dir';
        this.claim(rel, 'dir');
        // Created with its final mode when possible (an implicit parent already is 0755).
        const direct = directDirMode(e.mode) && (!implicit || (e.mode & 0o7777) === 0o755);
        if (!implicit) mkdirSync(this.abs(rel), direct ? e.mode : 0o700);
        meta.chmod = !direct;
        this.dirs.push(meta);
        break;
      }
      case 'file': {
        this.claim(rel, 'file');
        this.fileMeta = meta;
        // Plain permission bits that the umask leaves alone are given at create
        // time, saving an fchmod; special bits always need fchmod after fchown.
        const direct = (e.mode & ~0o777) === 0 && (e.mode & UMASK) === 0;
        this.fileNeedsChmod = !direct;
        const w = this.threads();
        if (w !== undefined) {
          // Same flags in the writer thread: create exclusively, never through a symlink.
          w.open(this.abs(rel), rel, direct ? e.mode : 0o600);
          this.fileInWriter = true;
          this.written.add(rel);
          break;
        }
        const t0 = this.probed < SLOW_PROBE ? performance.now() : 0;
        this.fd = openSync(this.abs(rel), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, direct ? e.mode : 0o600);
        if (this.probed < SLOW_PROBE) {
          this.probeMs += performance.now() - t0;
          if (++this.probed === SLOW_PROBE) this.slow = this.probeMs / SLOW_PROBE > SLOW_CREATE_MS;
        }
        break;
      }
      case 'symlink': {
        this.claim(rel, 'symlink');
        const w = this.threads();
        if (w !== undefined) {
          w.symlink(this.abs(rel), rel, e.linkname, ownedByCreator(e) ? -1 : e.uid, e.gid, e.mtime);
          this.written.add(rel);
          break;
        }
        symlinkSync(e.linkname, this.abs(rel));
        if (!ownedByCreator(e)) lchownSync(this.abs(rel), e.uid, e.gid);
        lutimesSync(this.abs(rel), e.mtime, e.mtime);
        break;
      }
      case 'hardlink': {
        const target = this.clean(e.linkname, 'hard link target');
        const kind = this.seen.get(target);
        if (kind === undefined || kind === 'whiteout') {
          throw this.reject(`hard link target ${JSON.stringify(e.linkname)} is not an earlier entry of this layer`);
        }
        if (kind === 'dir' || kind === 'implicit-dir') throw this.reject(`hard link target ${JSON.stringify(e.linkname)} is a directory`);
        this.claim(rel, 'hardlink');
        // A target still being written (or made at the end) is linked at the end.
        if (kind === 'char' || kind === 'block' || kind === 'fifo' || this.written.has(target) || this.deferred.some((d) => d.path === target)) {
          this.deferred.push({ kind: 'link', path: rel, target });
        } else {
          linkSync(this.abs(target), this.abs(rel));
        }
        break;
      }
      case 'char':
      case 'block':
      case 'fifo': {
        this.claim(rel, e.type);
        this.deferred.push({ kind: e.type === 'fifo' ? 'fifo' : 'node', path: rel, entry: e });
        this.nodeMeta.push(meta);
        break;
      }
    }
    this.addXattrs(rel, e);
  }

  private addXattrs(rel: string, e: TarEntry): void {
    for (const [name, value] of e.xattrs) {
      if (!xattrAllowed(name)) continue;
      this.xattrs.push({ path: rel, name, value });
    }
  }

  data(chunk: Buffer): void {
    if (this.fileInWriter) {
      (this.writer as LayerWriter).write(chunk);
      return;
    }
    if (this.fd === undefined) return; // data of an entry we do not write (whiteout with a body)
    let off = 0;
    while (off < chunk.length) off += writeSync(this.fd, chunk, off, chunk.length - off);
  }

  entryEnd(): void {
    if (this.fileInWriter && this.fileMeta !== undefined) {
      const m = this.fileMeta;
      // Owner before mode, so setuid/setgid survive (as below).
      (this.writer as LayerWriter).close(ownedByCreator(m) ? -1 : m.uid, m.gid, this.fileNeedsChmod ? m.mode : -1, m.mtime);
      this.fileInWriter = false;
      this.fileMeta = undefined;
    }
    if (this.fd !== undefined && this.fileMeta !== undefined) {
      const m = this.fileMeta;
      // New files belong to the creator (directories get setgid only at the end).
      if (!ownedByCreator(m)) fchownSync(this.fd, m.uid, m.gid);
      if (this.fileNeedsChmod) fchmodSync(this.fd, m.mode);
      futimesSync(this.fd, m.mtime, m.mtime);
      closeSync(this.fd);
      this.fd = undefined;
      this.fileMeta = undefined;
    }
    this.entryName = '';
  }

  /** Ends the stream and finishes special files, xattrs and directory metadata. */
  async finish(): Promise<ApplyResult> {
    if (this.failed) throw this.failed;
    try {
      this.reader.end();
    } catch (err) {
      throw this.fail(err);
    }
    if (this.writer !== undefined) {
      await this.writer.end();
      const we = this.writerError();
      if (we !== undefined) throw this.fail(we);
    }
    const needHelper = this.deferred.some((d) => d.kind !== 'link') || this.xattrs.length > 0 || this.opaque.length > 0;
    let session: FsOpsSession | undefined;
    try {
      if (needHelper) session = this.opts.nodeMaker.open(this.opts.dir);
      for (const d of this.deferred) {
        this.entryName = d.path;
        if (d.kind === 'whiteout') await session!.mknod(d.path, S_IFCHR, 0, 0);
        else if (d.kind === 'fifo') await session!.mkfifo(d.path, d.entry!.mode);
        else if (d.kind === 'node') {
          const e = d.entry!;
          await session!.mknod(d.path, (e.type === 'block' ? S_IFBLK : S_IFCHR) | (e.mode & 0o777), e.devmajor, e.devminor);
        }
      }
      for (const m of this.nodeMeta) {
        this.entryName = m.path;
        lchownSync(this.abs(m.path), m.uid, m.gid);
        chmodSync(this.abs(m.path), m.mode);
        lutimesSync(this.abs(m.path), m.mtime, m.mtime);
      }
      for (const d of this.deferred) {
        if (d.kind !== 'link') continue;
        this.entryName = d.path;
        linkSync(this.abs(d.target!), this.abs(d.path));
      }
      for (const x of this.xattrs) {
        this.entryName = x.path;
        await session!.lsetxattr(x.path, x.name, x.value);
      }
      for (const p of this.opaque) {
        this.entryName = p === '' ? '.' : p;
        await session!.lsetxattr(p === '' ? '.' : p, 'trusted.overlay.opaque', Buffer.from('y'));
      }
      // Deepest first, so setting a child's mtime never disturbs its parent's.
      const dirs = [...this.dirs].sort((a, b) => depth(b.path) - depth(a.path));
      for (const m of dirs) {
        this.entryName = m.path;
        const p = this.abs(m.path);
        if (!ownedByCreator(m)) lchownSync(p, m.uid, m.gid);
        if (m.chmod !== false) chmodSync(p, m.mode);
        lutimesSync(p, m.mtime, m.mtime);
      }
      if (session !== undefined) {
        const s = session;
        session = undefined;
        await s.close();
      }
    } catch (err) {
      if (session !== undefined) await session.close().catch(() => undefined);
      throw this.fail(err);
    }
    return { diffId: `sha256:${this.hash.digest('hex')}`, size: this.size, entries: this.entries };
  }

  /** Releases an open file and waits for writes in flight, after a failure elsewhere in the pipeline. */
  async abort(): Promise<void> {
    this.closeFile();
    this.fileInWriter = false;
    await this.writer?.end();
  }
}

function depth(p: string): number {
  if (p === '') return 0;
  let n = 1;
  for (const c of p) if (c === '/') n++;
  return n;
}
