/**
 * TCP listeners and outgoing TCP connections in the node's network
 * namespace. A socket stays in the namespace it was created in, so with a
 * namespace path one long-lived child process (`nsenter --net=PATH node
 * tcp-child.js`) opens them there and passes each back over the IPC channel;
 * the agent then uses them from its own namespace. Without a path the
 * sockets are opened here directly.
 *
 * Lifecycle: netnsTcp(path?) -> listen()/connect() any number of times ->
 * close() (kills the child; sockets already handed over stay open). The
 * child is started on first use and again after it died.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { CancelledError } from '../../lib/errors.js';
import { NetToolError } from './net.js';

export interface TcpOps {
  /** A listening TCP server on `address:port` (port 0: the kernel picks one; read server.address()). */
  listen(address: string, port: number): Promise<net.Server>;
  /**
   * A connected TCP socket to `address:port`; rejects with NetToolError whose
   * `errno` is the system error code (ECONNREFUSED, ETIMEDOUT, ...).
   */
  connect(address: string, port: number, opts?: { signal?: AbortSignal; timeoutMs?: number; localAddress?: string }): Promise<net.Socket>;
  /** Stops the helper child (if any). Idempotent. */
  close(): void;
}

/** A TCP operation failed; `errno` is the system code when there was one. */
export class TcpOpError extends NetToolError {
  override name = 'TcpOpError';
  constructor(detail: string, readonly errno: string, options: { cause?: unknown } = {}) {
    super('tcp', detail, options);
  }
}

function checkTarget(address: string, port: number, allowZero: boolean): void {
  if (!net.isIPv4(address)) throw new TcpOpError(`expected an IPv4 address, got ${JSON.stringify(address)}`, 'EINVAL');
  if (!Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) throw new TcpOpError(`expected a port from ${allowZero ? 0 : 1} to 65535, got ${port}`, 'EINVAL');
}

class LocalTcp implements TcpOps {
  listen(address: string, port: number): Promise<net.Server> {
    checkTarget(address, port, true);
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (e: NodeJS.ErrnoException) => reject(new TcpOpError(`listen on TCP ${address}:${port}: ${e.message}`, e.code ?? '', { cause: e })));
      server.listen({ host: address, port, exclusive: true }, () => resolve(server));
    });
  }

  connect(address: string, port: number, opts: { signal?: AbortSignal; timeoutMs?: number; localAddress?: string } = {}): Promise<net.Socket> {
    checkTarget(address, port, false);
    if (opts.localAddress !== undefined) checkTarget(opts.localAddress, 0, true);
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new CancelledError(`connect to ${address}:${port} cancelled`));
      const socket = net.connect({ host: address, port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) });
      socket.pause();
      const done = (err?: Error): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        socket.removeListener('error', onError);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(socket);
      };
      const onError = (e: NodeJS.ErrnoException): void => done(new TcpOpError(`connect to ${address}:${port}: ${e.message}`, e.code ?? '', { cause: e }));
      const onAbort = (): void => done(new CancelledError(`connect to ${address}:${port} cancelled`));
      const timer = setTimeout(() => done(new TcpOpError(`connect to ${address}:${port}: timed out after ${timeoutMs} ms`, 'ETIMEDOUT')), timeoutMs);
      socket.once('error', onError);
      socket.once('connect', () => done());
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {}
}

interface Pending {
  resolve: (v: net.Server | net.Socket) => void;
  reject: (e: Error) => void;
  want: 'server' | 'socket';
  what: string;
}

class NetnsTcp implements TcpOps {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(private readonly netnsPath: string) {}

  private ensureChild(): ChildProcess {
    if (this.child && this.child.connected) return this.child;
    const script = fileURLToPath(new URL('./tcp-child.js', import.meta.url));
    const child = spawn('nsenter', [`--net=${this.netnsPath}`, '--', process.execPath, script], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString('utf8');
    });
    child.on('message', (msg: { id?: unknown; kind?: unknown; error?: unknown; code?: unknown }, handle: unknown) => {
      if (typeof msg !== 'object' || msg === null || typeof msg.id !== 'number') return;
      const p = this.pending.get(msg.id);
      if (!p) {
        if (handle instanceof net.Server) handle.close();
        else if (handle instanceof net.Socket) handle.destroy();
        return;
      }
      this.pending.delete(msg.id);
      if (typeof msg.error === 'string') p.reject(new TcpOpError(`${msg.error} (in ${this.netnsPath})`, typeof msg.code === 'string' ? msg.code : ''));
      else if (p.want === 'server' && handle instanceof net.Server) p.resolve(handle);
      else if (p.want === 'socket' && handle instanceof net.Socket) p.resolve(handle);
      else p.reject(new TcpOpError(`${p.what}: the helper in ${this.netnsPath} sent no ${p.want}`, ''));
    });
    const fail = (why: string): void => {
      if (this.child === child) this.child = undefined;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new TcpOpError(`${p.what}: the helper in ${this.netnsPath} ${why}${stderr ? `: ${stderr.trim()}` : ''}`, 'ECHILD'));
      }
    };
    child.on('error', (e) => fail(`could not start (${e.message})`));
    child.on('exit', (code, sig) => fail(`exited (${sig ?? code})`));
    // The child must not keep the agent alive on its own.
    child.unref();
    (child as unknown as { channel?: { unref(): void } }).channel?.unref();
    this.child = child;
    return child;
  }

  private request<T extends net.Server | net.Socket>(msg: Record<string, unknown>, want: 'server' | 'socket', what: string, signal?: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(new CancelledError(`${what}: tcp helper closed`));
    if (signal?.aborted) return Promise.reject(new CancelledError(`${what} cancelled`));
    const id = this.nextId++;
    const child = this.ensureChild();
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        // The reply (a handle) is closed when it arrives for an id nobody waits on.
        if (this.pending.delete(id)) reject(new CancelledError(`${what} cancelled`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        want, what,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      child.send({ id, ...msg }, (err) => {
        if (err && this.pending.delete(id)) reject(new TcpOpError(`${what}: could not reach the helper in ${this.netnsPath}: ${err.message}`, 'ECHILD'));
      });
    });
  }

  listen(address: string, port: number): Promise<net.Server> {
    checkTarget(address, port, true);
    return this.request<net.Server>({ op: 'listen', address, port }, 'server', `listen on TCP ${address}:${port}`);
  }

  connect(address: string, port: number, opts: { signal?: AbortSignal; timeoutMs?: number; localAddress?: string } = {}): Promise<net.Socket> {
    checkTarget(address, port, false);
    if (opts.localAddress !== undefined) checkTarget(opts.localAddress, 0, true);
    return this.request<net.Socket>({ op: 'connect', address, port, timeoutMs: opts.timeoutMs ?? 5000, localAddress: opts.localAddress ?? '' }, 'socket', `connect to ${address}:${port}`, opts.signal);
  }

  close(): void {
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null) child.kill('SIGKILL');
  }
}

/** TCP sockets in the network namespace at `netnsPath` (this process's own when undefined). */
export function netnsTcp(netnsPath?: string): TcpOps {
  return netnsPath === undefined ? new LocalTcp() : new NetnsTcp(netnsPath);
}
