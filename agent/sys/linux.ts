/**
 * The real Sys: runs berth-helper, reads /proc, writes cgroupfs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readFile, rmdir, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AlreadyExistsError, CancelledError, messageOf } from '../../lib/errors.js';
import { CgroupError, ContainerSetupError, ShimUnavailableError } from './errors.js';
import type { CgroupMountInfo, CreatedContainer, ExecOptions, ExecResult, ShimCommand, Sys } from './index.js';
import { encodeExecSpec, encodeInitSpec, type ExecSpec, type InitSpec } from './spec.js';

/** Where `make -C agent/sys/native` puts the helper, seen from dist/agent/sys or .build-x/agent/sys. */
export function defaultHelperPath(): string {
  const fromEnv = process.env['BERTH_HELPER'];
  if (fromEnv) return fromEnv;
  return fileURLToPath(new URL('../../../agent/sys/native/build/berth-helper', import.meta.url));
}

export interface LinuxSysOptions {
  helperPath?: string;
  /**
   * Create containers through one long-lived `berth-helper spawner` (a fork
   * per container instead of a process spawn from Node; default true). The
   * spawner ends with this process; shims do not.
   */
  spawner?: boolean;
}

interface SpawnerReply {
  lines: string[];
  code: number;
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The spawner's "error ..." line of a failed request, or what it printed. */
function spawnerError(lines: string[], code: number): string {
  const report = lines.find((l) => l.startsWith('error '));
  return report ? report.slice(6) : (lines.join('; ').replace(/berth-helper: /g, '') || `helper exited with status ${code}`);
}

export class LinuxSys implements Sys {
  readonly helperPath: string;
  private readonly useSpawner: boolean;
  private spawnerProc: ChildProcess | undefined;
  private spawnerQueue: Promise<unknown> = Promise.resolve();
  private pending: { lines: string[]; resolve(r: SpawnerReply): void; reject(e: Error): void } | undefined;

  constructor(options: LinuxSysOptions = {}) {
    this.helperPath = options.helperPath ?? defaultHelperPath();
    this.useSpawner = options.spawner ?? true;
  }

  /** Starts the spawner if it is not running; it holds the event loop only while a request is pending. */
  private spawner(): ChildProcess {
    if (this.spawnerProc) return this.spawnerProc;
    const child = spawn(this.helperPath, ['spawner'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const done = /^done (\d+)$/.exec(line);
        const p = this.pending;
        if (!p) continue;
        if (done) {
          this.pending = undefined;
          this.idle(child);
          p.resolve({ lines: p.lines, code: Number(done[1]) });
        } else {
          p.lines.push(line);
        }
      }
    });
    child.stdin?.on('error', () => { /* reported through 'exit' */ });
    const gone = (why: string): void => {
      if (this.spawnerProc === child) this.spawnerProc = undefined;
      const p = this.pending;
      this.pending = undefined;
      p?.reject(new ContainerSetupError(`the helper spawner ${why}`));
    };
    child.on('error', (e) => gone(`could not run "${this.helperPath}": ${e.message}`));
    child.on('exit', (code, sig) => gone(`exited (${sig ?? code})`));
    this.spawnerProc = child;
    this.idle(child);
    return child;
  }

  private idle(child: ChildProcess): void {
    child.unref();
    (child.stdout as unknown as { unref?(): void } | null)?.unref?.();
    (child.stdin as unknown as { unref?(): void } | null)?.unref?.();
  }

  private busy(child: ChildProcess): void {
    child.ref();
    (child.stdout as unknown as { ref?(): void } | null)?.ref?.();
    (child.stdin as unknown as { ref?(): void } | null)?.ref?.();
  }

  /** One request to the spawner; requests are answered in order, one at a time. */
  private spawnerRequest(blob: Buffer, op?: 'mount' | 'umount'): Promise<SpawnerReply> {
    const run = (): Promise<SpawnerReply> => new Promise((resolve, reject) => {
      const child = this.spawner();
      this.pending = { lines: [], resolve, reject };
      this.busy(child);
      child.stdin?.write(op ? `${op} ${blob.length}\n` : `${blob.length}\n`);
      child.stdin?.write(blob);
    });
    const reply = this.spawnerQueue.then(run, run);
    this.spawnerQueue = reply.catch(() => undefined);
    return reply;
  }

  /** Ends the spawner (containers and shims are not affected). */
  close(): void {
    this.spawnerProc?.stdin?.end();
    this.spawnerProc = undefined;
  }

  /**
   * Mounts an overlay through the spawner (one fork of a small static process
   * instead of Node spawning mount(8)); `options` were built by
   * overlayOptions, their paths relative to `dir`. Part of OverlayMountCalls.
   */
  async mountOverlay(dir: string, target: string, options: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (opts.signal?.aborted) throw new CancelledError();
    const { lines, code } = await this.spawnerRequest(Buffer.from(`${dir}\0${target}\0${options}`), 'mount');
    if (code !== 0) throw new Error(spawnerError(lines, code));
  }

  /** Detaches a mount (umount -l) through the spawner. Part of OverlayMountCalls. */
  async detachMount(target: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (opts.signal?.aborted) throw new CancelledError();
    const { lines, code } = await this.spawnerRequest(Buffer.from(target), 'umount');
    if (code !== 0) throw new Error(spawnerError(lines, code));
  }

  async createContainer(spec: InitSpec, opts: { signal?: AbortSignal } = {}): Promise<CreatedContainer> {
    if (!this.useSpawner) return this.createBySpawn(spec, opts);
    if (opts.signal?.aborted) throw new CancelledError();
    const { lines, code } = await this.spawnerRequest(encodeInitSpec(spec));
    const ok = lines.map((l) => /^ok (\d+) (\d+) (\d+)$/.exec(l)).find((m) => m);
    if (code === 0 && ok) return { initPid: Number(ok[1]), shimPid: Number(ok[2]), initStartTime: Number(ok[3]) };
    throw new ContainerSetupError(spawnerError(lines, code));
  }

  private createBySpawn(spec: InitSpec, opts: { signal?: AbortSignal } = {}): Promise<CreatedContainer> {
    const blob = encodeInitSpec(spec);
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new CancelledError());
      const child = spawn(this.helperPath, ['shim'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
      const specPipe = child.stdio[3] as NodeJS.WritableStream;
      specPipe.on('error', () => { /* the helper reports why it stopped reading */ });
      specPipe.end(blob);
      child.on('error', (e) => reject(new ContainerSetupError(`run helper "${this.helperPath}": ${e.message}`, { cause: e })));
      child.on('close', (code) => {
        const line = out.trim();
        const ok = /^ok (\d+) (\d+) (\d+)$/.exec(line);
        if (code === 0 && ok) {
          resolve({ initPid: Number(ok[1]), shimPid: Number(ok[2]), initStartTime: Number(ok[3]) });
          return;
        }
        const detail = line.startsWith('error ') ? line.slice(6) : (err.trim() || line || `helper exited with status ${code}`);
        reject(new ContainerSetupError(detail.replace(/^berth-helper: /, '')));
      });
    });
  }

  runContainer(spec: InitSpec, opts: { signal?: AbortSignal } = {}): Promise<number> {
    const blob = encodeInitSpec({ ...spec, autostart: true, log: undefined });
    return new Promise((resolve, reject) => {
      const child = spawn(this.helperPath, ['run'], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], signal: opts.signal });
      // Signals to this process go to the container (through the helper);
      // this process lives on to clean up after it.
      const forwarded: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
      const forward = (sig: NodeJS.Signals): void => { child.kill(sig); };
      for (const sig of forwarded) process.on(sig, forward);
      const specPipe = child.stdio[3] as NodeJS.WritableStream;
      specPipe.on('error', () => { /* reported by the helper */ });
      specPipe.end(blob);
      child.on('error', (e) => reject(new ContainerSetupError(`run helper "${this.helperPath}": ${e.message}`, { cause: e })));
      child.on('close', (code, sig) => {
        for (const s of forwarded) process.off(s, forward);
        resolve(code ?? 128 + (sig ? signalNumber(sig) : 0));
      });
    });
  }

  execInContainer(spec: ExecSpec, opts: ExecOptions): Promise<ExecResult> {
    const blob = encodeExecSpec(spec);
    return new Promise((resolve, reject) => {
      const std = opts.stdio === 'inherit' ? 'inherit' : 'pipe';
      // A streamed terminal gets a fourth pipe (fd 4) for window sizes, "ROWS COLS\n" (exec_main in main.c).
      const resizable = opts.streams !== undefined && spec.terminal;
      const child = spawn(this.helperPath, ['exec'], { stdio: resizable ? [std, std, std, 'pipe', 'pipe'] : [std, std, std, 'pipe'], signal: opts.signal,
        ...(resizable ? { env: { ...process.env, BERTH_HELPER_RESIZE_FD: '4' } } : {}),
      });
      let stdout = '';
      let stderr = '';
      child.stdin?.on('error', () => { /* the process did not read its input */ });
      if (opts.streams && child.stdin && child.stdout && child.stderr) {
        const sizes = resizable ? child.stdio[4] as NodeJS.WritableStream : undefined;
        sizes?.on('error', () => { /* the helper is gone */ });
        opts.streams({
          stdin: child.stdin, stdout: child.stdout, stderr: child.stderr,
          ...(sizes ? { resize: (rows: number, cols: number) => void sizes.write(`${rows} ${cols}\n`) } : {}),
        });
      } else {
        child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
        child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
        child.stdin?.end(opts.input ?? '');
      }
      const specPipe = child.stdio[3] as NodeJS.WritableStream;
      specPipe.on('error', () => { /* reported by the helper */ });
      specPipe.end(blob);
      child.on('error', (e) => reject(new ContainerSetupError(`run helper "${this.helperPath}": ${e.message}`, { cause: e })));
      child.on('close', (code, sig) => resolve({ exitCode: code ?? 128 + (sig ? signalNumber(sig) : 0), stdout, stderr }));
    });
  }

  async sendControl(stateDir: string, command: ShimCommand): Promise<void> {
    let fh;
    try {
      fh = await open(`${stateDir}/control`, fsc.O_WRONLY | fsc.O_NONBLOCK);
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENXIO' || code === 'ENOENT') throw new ShimUnavailableError(stateDir, { cause: e });
      throw e;
    }
    try {
      await fh.write(`${command}\n`);
    } finally {
      await fh.close();
    }
  }

  kill(pid: number, signal: NodeJS.Signals | number): boolean {
    try {
      process.kill(pid, signal);
      return true;
    } catch (e) {
      if (errnoOf(e) === 'ESRCH') return false;
      throw e;
    }
  }

  async processStartTime(pid: number): Promise<number | undefined> {
    let text: string;
    try {
      text = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); starttime is field 22.
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    const t = Number(fields[19]);
    return Number.isFinite(t) ? t : undefined;
  }

  async rlimit(type: string): Promise<{ soft: number; hard: number }> {
    const names: Record<string, string> = {
      RLIMIT_NOFILE: 'Max open files', RLIMIT_NPROC: 'Max processes', RLIMIT_CORE: 'Max core file size',
      RLIMIT_STACK: 'Max stack size', RLIMIT_MEMLOCK: 'Max locked memory', RLIMIT_AS: 'Max address space',
      RLIMIT_CPU: 'Max cpu time', RLIMIT_FSIZE: 'Max file size', RLIMIT_DATA: 'Max data size',
      RLIMIT_RSS: 'Max resident set', RLIMIT_LOCKS: 'Max file locks', RLIMIT_SIGPENDING: 'Max pending signals',
      RLIMIT_MSGQUEUE: 'Max msgqueue size', RLIMIT_NICE: 'Max nice priority', RLIMIT_RTPRIO: 'Max realtime priority',
      RLIMIT_RTTIME: 'Max realtime timeout',
    };
    const label = names[type];
    const text = await readFile('/proc/self/limits', 'utf8');
    const line = label ? text.split('\n').find((l) => l.startsWith(label)) : undefined;
    if (!line) return { soft: Infinity, hard: Infinity };
    const [soft, hard] = line.slice(26).trim().split(/\s+/);
    const num = (v: string | undefined): number => (v === undefined || v === 'unlimited' ? Infinity : Number(v));
    return { soft: num(soft), hard: num(hard) };
  }

  async cgroupMounts(): Promise<CgroupMountInfo[]> {
    const text = await readFile('/proc/self/mounts', 'utf8');
    const result: CgroupMountInfo[] = [];
    for (const line of text.split('\n')) {
      const [, mountPoint, type, options] = line.split(' ');
      if (!mountPoint || !options) continue;
      if (type === 'cgroup') {
        const known = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'hugetlb', 'net_cls', 'net_prio', 'perf_event', 'rdma', 'misc'];
        result.push({ mountPoint, version: 1, controllers: options.split(',').filter((o) => known.includes(o)) });
      } else if (type === 'cgroup2') {
        const controllers = ((await this.cgroupRead(`${mountPoint}/cgroup.controllers`)) ?? '').trim().split(/\s+/).filter(Boolean);
        result.push({ mountPoint, version: 2, controllers });
      }
    }
    return result;
  }

  async selfCgroups(): Promise<Map<string, string>> {
    const text = await readFile('/proc/self/cgroup', 'utf8');
    const map = new Map<string, string>();
    for (const line of text.split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m) map.set(m[1] ?? '', m[2] ?? '/');
    }
    return map;
  }

  async cgroupMkdir(path: string, opts: { exclusive?: boolean } = {}): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (opts.exclusive) {
          // Usually the parent is there: one mkdir; else make it and retry.
          await mkdir(path).catch(async (e: unknown) => {
            if (errnoOf(e) !== 'ENOENT') throw e;
            await mkdir(dirname(path), { recursive: true });
            await mkdir(path);
          });
        } else {
          await mkdir(path, { recursive: true });
        }
        return;
      } catch (e) {
        if (errnoOf(e) === 'EEXIST') {
          throw new AlreadyExistsError('cgroup', path, { cause: e, message: `failed to create cgroup "${path}": it already exists (left by an earlier container?)` });
        }
        // A parent removed by a concurrent cleanup between our mkdirs: try again.
        if (errnoOf(e) === 'ENOENT' && attempt < 3) continue;
        throw new CgroupError(`failed to create cgroup "${path}": ${messageOf(e)}`, path, { cause: e });
      }
    }
  }

  async cgroupRmdir(path: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (;;) {
      try {
        await rmdir(path);
        return;
      } catch (e) {
        const code = errnoOf(e);
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || Date.now() > deadline) {
          throw new CgroupError(`failed to remove cgroup "${path}": ${messageOf(e)}`, path, { cause: e });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  async cgroupWrite(path: string, value: string): Promise<void> {
    try {
      await writeFile(path, value);
    } catch (e) {
      throw new CgroupError(`failed to write "${value}" to "${path}": ${messageOf(e)}`, path, { cause: e });
    }
  }

  async cgroupRead(path: string): Promise<string | undefined> {
    try {
      return await readFile(path, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return undefined;
      throw new CgroupError(`failed to read "${path}": ${messageOf(e)}`, path, { cause: e });
    }
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return osConstants.signals[sig] ?? 0;
}
