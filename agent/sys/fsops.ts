/**
 * Special-file operations Node.js cannot do on its own (mknod, mkfifo,
 * lsetxattr), used while unpacking image layers. They run in the C helper
 * (`berth-helper fsops ROOT`, agent/sys/native/fsops.c): one helper process
 * serves a whole layer through a NUL-delimited batch protocol on stdin, and
 * every path is resolved beneath ROOT without following symlinks.
 *
 * Lifecycle: `NodeMaker.open(root)` starts a session for one directory tree;
 * operations are answered in order; `close()` ends the helper and waits for it.
 * A session that fails stays failed: every later call rejects.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';

/** One helper session rooted at a directory; paths are relative to that root. */
export interface FsOpsSession {
  /** Creates a character or block device node. `mode` includes the S_IFCHR/S_IFBLK type bits. */
  mknod(path: string, mode: number, major: number, minor: number): Promise<void>;
  /** Creates a FIFO with the given permission bits. */
  mkfifo(path: string, mode: number): Promise<void>;
  /** Sets an extended attribute on the path itself (never a symlink's target). */
  lsetxattr(path: string, name: string, value: Buffer): Promise<void>;
  /** Ends the session and waits for the helper to exit. */
  close(): Promise<void>;
}

/** Role interface: opens sessions for unpacking special files. */
export interface NodeMaker {
  open(root: string): FsOpsSession;
}

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export interface HelperNodeMakerOptions {
  /** Path of the berth-helper binary. */
  helperPath: string;
  /** Arguments before ROOT; default `['fsops']`. */
  args?: string[];
}

interface Pending {
  what: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

class HelperSession implements FsOpsSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: Pending[] = [];
  private failure: Error | undefined;
  private buffered = '';
  private stderr = '';
  private readonly exited: Promise<void>;

  constructor(helperPath: string, args: string[], private readonly root: string) {
    this.child = spawn(helperPath, [...args, root], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (text: string) => this.onOutput(text));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => {
      if (this.stderr.length < 4096) this.stderr += text;
    });
    this.child.stdin.on('error', (err) => this.fail(new Error(`fsops helper stdin: ${err.message}`)));
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.fail(new Error(`failed to start fsops helper "${helperPath}": ${err.message}`));
        resolve();
      });
      this.child.on('close', (code, signal) => {
        if (this.pending.length > 0 || code !== 0) {
          const why = signal !== null ? `signal ${signal}` : `code ${code}`;
          this.fail(new Error(`fsops helper exited with ${why}${this.stderr ? `: ${this.stderr.trim()}` : ''}`));
        }
        resolve();
      });
    });
  }

  private onOutput(text: string): void {
    this.buffered += text;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const p = this.pending.shift();
      if (p === undefined) continue;
      if (line === 'ok') p.resolve();
      else p.reject(new Error(`${p.what} in "${this.root}": ${line.replace(/^err \d+ /, '')}`));
    }
  }

  private fail(err: Error): void {
    if (this.failure === undefined) this.failure = err;
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  private send(what: string, fields: string[]): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    for (const f of fields) {
      if (f.includes('\0')) return Promise.reject(new Error(`${what}: a NUL byte is not allowed in "${f.replace(/\0/g, '\\0')}"`));
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ what, resolve, reject });
      this.child.stdin.write(fields.map((f) => f + '\0').join(''));
    });
  }

  mknod(path: string, mode: number, major: number, minor: number): Promise<void> {
    return this.send(`mknod "${path}"`, ['mknod', path, mode.toString(8), String(major), String(minor)]);
  }

  mkfifo(path: string, mode: number): Promise<void> {
    return this.send(`mkfifo "${path}"`, ['mkfifo', path, (mode & 0o7777).toString(8)]);
  }

  lsetxattr(path: string, name: string, value: Buffer): Promise<void> {
    return this.send(`lsetxattr "${name}" on "${path}"`, ['lsetxattr', path, name, value.toString('hex')]);
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.exited;
    if (this.failure !== undefined) throw this.failure;
  }
}

/** NodeMaker backed by the berth-helper binary. */
export class HelperNodeMaker implements NodeMaker {
  constructor(private readonly opts: HelperNodeMakerOptions) {}

  open(root: string): FsOpsSession {
    return new HelperSession(this.opts.helperPath, this.opts.args ?? ['fsops'], root);
  }
}

/**
 * A decompressor for layer formats Node.js cannot decode itself (zstd in
 * Node 20): bytes written in come out decompressed. Destroying it ends the
 * decoder process. Errors (bad input, a missing binary) surface as 'error'.
 */
export interface LayerDecoder {
  open(): Duplex;
}

/** LayerDecoder that runs `zstd -dc` (Debian package zstd). */
export class ZstdCliDecoder implements LayerDecoder {
  constructor(private readonly binary = 'zstd') {}

  open(): Duplex {
    const child = spawn(this.binary, ['-d', '-c', '-q', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (t: string) => {
      if (stderr.length < 4096) stderr += t;
    });
    // The output ends only once the decoder exited cleanly, so a failing
    // decoder can never look like a short, successful stream.
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    child.stdout.pipe(out, { end: false });
    const duplex = Duplex.from({ writable: child.stdin, readable: out });
    child.on('error', (err) => duplex.destroy(new Error(`failed to start zstd decoder "${this.binary}": ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) out.end();
      else if (!duplex.destroyed) {
        duplex.destroy(new Error(`zstd decoder failed (${signal !== null ? `signal ${signal}` : `exit ${code}`}): ${stderr.trim() || 'no message'}`));
      }
    });
    duplex.on('close', () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    // Errors on the pipes (EPIPE after the decoder died) are reported through the exit status.
    child.stdin.on('error', () => undefined);
    return duplex;
  }
}
