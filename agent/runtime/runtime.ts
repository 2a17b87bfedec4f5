/**
 * The container runtime: OCI bundle in, container out.
 *
 * Vocabulary
 *   root       a directory holding one state dir per container (default
 *              /run/berth/runtime); `<root>/<id>/` is the container's state dir.
 *   state.json written here when the container is created: bundle, rootfs,
 *              cgroup directories, pids. The shim adds init.pid, started and
 *              exit.json (agent/sys/native/main.c); the log is container.log.
 *
 * Lifecycle (runtime-spec states)
 *   create -> "created" (init waits, namespaces and mounts are ready)
 *   start  -> "running" (the process was exec'd)
 *   exit   -> "stopped" (exit.json records code, signal, OOM kill)
 *   delete -> gone (cgroups removed, state dir removed)
 * Everything is on disk, so a new Runtime over the same root (an agent that
 * restarted) sees the same containers, including exits that happened while
 * no Runtime was running: the shim, not the agent, supervises.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError, messageOf } from '../../lib/errors.js';
import type { Logger } from '../../lib/logging.js';
import { parseSignal } from '../../lib/signals.js';
import type { ExecOptions, ExecResult, InitSpec, Sys } from '../sys/index.js';
import type { CgroupManager, CgroupStats, ContainerCgroup, Resources } from './cgroups.js';
import { ContainerNotFoundError, ContainerStartError, ContainerStateError } from './errors.js';
import { readLogs, type LogEntry, type ReadLogsOptions } from './logs.js';
import { resolveConfig } from './oci.js';
import { resolveUser } from './bundle.js';

export const DEFAULT_ROOT = '/run/berth/runtime';
/** Annotation "true": a container without a terminal gets a stdin pipe, fed through `attachStdin` (berth run -i). */
export const STDIN_ANNOTATION = 'io.berth.stdin';
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_MAX_FILES = 3;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export type ContainerStatus = 'creating' | 'created' | 'running' | 'stopped';

/** Why a container stopped. */
export type ExitReason = 'Completed' | 'Error' | 'OOMKilled' | 'Signaled' | 'StartError' | 'Unknown';

export interface ExitInfo {
  exitCode: number;
  /** Signal that ended it, 0 if it exited. */
  signal: number;
  oomKilled: boolean;
  finishedAt: string;
  reason: ExitReason;
  /** Set for StartError (and a shim that vanished). */
  error?: string;
}

export interface ContainerInfo {
  id: string;
  status: ContainerStatus;
  /** Host pid of the init while it runs. */
  pid?: number;
  bundle: string;
  rootfs: string;
  createdAt: string;
  startedAt?: string;
  exit?: ExitInfo;
  annotations: Record<string, string>;
  stateDir: string;
  logPath: string;
  resources: Resources;
}

/** What state.json holds (version 1); pid, initStartTime and shimPid come from the shim's init.pid and shim.pid. */
interface PersistedState {
  version: 1;
  id: string;
  bundle: string;
  rootfs: string;
  createdAt: string;
  annotations: Record<string, string>;
  cgroup: ContainerCgroup;
  resources: Resources;
  logPath: string;
  logMaxFiles: number;
  pid?: number;
  initStartTime?: number;
  shimPid?: number;
}

export interface CreateOptions {
  /** Write the init pid here (OCI --pid-file). */
  pidFile?: string;
  /** Start at once (saves a round trip; the agent's path). */
  start?: boolean;
  /** Overrides linux.resources of config.json. */
  resources?: Resources;
  logMaxBytes?: number;
  logMaxFiles?: number;
  signal?: AbortSignal;
}

export interface ExecProcessOptions {
  args: string[];
  /** Added to (and overriding) the container's env. */
  env?: string[];
  cwd?: string;
  /** "user", "uid", "user:group" or "uid:gid", resolved in the container's rootfs. */
  user?: string;
  tty?: boolean;
  consoleSize?: { rows: number; cols: number };
  /** "pipe" (default) collects output; "inherit" shares this process's stdio. */
  stdio?: 'inherit' | 'pipe';
  input?: string;
  signal?: AbortSignal;
  /** Streams the process's stdio instead of collecting it (see the Sys ExecOptions.streams). */
  streams?: ExecOptions['streams'];
}

export interface RuntimeOptions {
  sys: Sys;
  cgroups: CgroupManager;
  root?: string;
  logger?: Logger;
}

/** The number of a signal given by number (1..64), name ("TERM", "SIGKILL") or digits ("9"); see lib/signals.ts. */
/** The number of a signal given as a number (1..64), a name ("TERM", "SIGKILL") or digits ("9"); lib/signals.ts reads it. */
export function signalNumber(signal: string | number): number {
  const parsed = parseSignal(String(signal));
  if ('problem' in parsed) throw new InvalidArgumentError(`signal: ${parsed.problem}`, { field: 'signal' });
  return parsed.number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}

/**
 * What the rest of the agent uses of the runtime, so its tests can put a fake
 * in Runtime's place (Runtime implements it).
 */
export interface ContainerRuntime {
  create(id: string, bundle: string, options?: CreateOptions): Promise<ContainerInfo>;
  start(id: string, options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<ContainerInfo>;
  state(id: string): Promise<ContainerInfo>;
  list(): Promise<ContainerInfo[]>;
  kill(id: string, signal?: string | number): Promise<void>;
  wait(id: string, options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<ExitInfo>;
  stop(id: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<ExitInfo>;
  delete(id: string, options?: { force?: boolean }): Promise<void>;
  update(id: string, resources: Resources): Promise<ContainerInfo>;
  stats(id: string): Promise<CgroupStats & { readAt: number }>;
  logs(id: string, options?: Omit<ReadLogsOptions, 'isDone'>): AsyncGenerator<LogEntry>;
  exec(id: string, options: ExecProcessOptions): Promise<ExecResult>;
  attach(id: string): Promise<Socket>;
  /** The stdin socket of a container without a terminal made with STDIN_ANNOTATION (one client; its end closes the container's stdin). */
  attachStdin?(id: string): Promise<Socket>;
  resize(id: string, rows: number, cols: number): Promise<void>;
}

export class Runtime implements ContainerRuntime {
  readonly root: string;
  private readonly sys: Sys;
  private readonly cgroups: CgroupManager;
  private readonly logger: Logger | undefined;

  constructor(options: RuntimeOptions) {
    this.root = options.root ?? DEFAULT_ROOT;
    this.sys = options.sys;
    this.cgroups = options.cgroups;
    this.logger = options.logger?.child({ component: 'runtime' });
  }

  private checkId(id: string): void {
    if (!ID.test(id)) {
      throw new InvalidArgumentError(`container id: expected 1-128 letters, digits, "_", "." or "-" (not first), got "${id}"`, { field: 'id' });
    }
  }

  /**
   * The container's cgroup name: its id under the default root; with another
   * root, prefixed by a hash of the root, so runtimes with different roots
   * (tests, side-by-side CLIs) never share a cgroup.
   */
  cgroupName(id: string): string {
    this.checkId(id);
    return this.root === DEFAULT_ROOT ? id : `${createHash('sha256').update(this.root).digest('hex').slice(0, 8)}-${id}`;
  }

  stateDir(id: string): string {
    this.checkId(id);
    return join(this.root, id);
  }

  /** Reads a bundle's config.json and checks it (without creating anything). */
  async loadBundle(bundle: string): Promise<ReturnType<typeof resolveConfig>> {
    let raw: unknown;
    const path = join(bundle, 'config.json');
    try {
      raw = JSON.parse(await readFile(path, 'utf8'));
    } catch (e) {
      throw new InvalidArgumentError(`failed to read bundle config "${path}": ${messageOf(e)}`, { field: 'bundle', cause: e });
    }
    this.hostLimits ??= Promise.all([this.sys.rlimit('RLIMIT_NOFILE'), this.sys.rlimit('RLIMIT_NPROC')])
      .then(([nofile, nproc]) => ({ RLIMIT_NOFILE: nofile.hard, RLIMIT_NPROC: nproc.hard }));
    const cfg = resolveConfig(raw, bundle, await this.hostLimits);
    const st = await stat(cfg.rootfs).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidArgumentError(`root.path: rootfs "${cfg.rootfs}" is not a directory`, { field: 'root.path' });
    return cfg;
  }

  /** Makes a new container's state dir (0700 under a 0711 root); an existing one means the id is taken. */
  private async makeStateDir(id: string, dir: string): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError('container', id);
      throw e;
    }
  }

  /** Creates a container from the bundle (state "created", or "running" with `start`). */
  async create(id: string, bundle: string, options: CreateOptions = {}): Promise<ContainerInfo> {
    const dir = this.stateDir(id);
    const cfg = await this.loadBundle(bundle);
    await this.makeStateDir(id, dir);
    let cgroup: ContainerCgroup | undefined;
    try {
      const resources = { ...cfg.resources, ...options.resources };
      cgroup = await this.cgroups.create(this.cgroupName(id), resources);
      const logPath = join(dir, 'container.log');
      const logMaxFiles = options.logMaxFiles ?? DEFAULT_LOG_MAX_FILES;
      const state: PersistedState = {
        version: 1, id, bundle, rootfs: cfg.rootfs, createdAt: new Date().toISOString(), annotations: cfg.annotations,
        cgroup, resources, logPath, logMaxFiles,
      };
      await writeAtomic(join(dir, 'state.json'), JSON.stringify(state));
      const spec: InitSpec = {
        ...cfg,
        stateDir: dir,
        autostart: options.start === true,
        ...(cfg.annotations[STDIN_ANNOTATION] === 'true' && !cfg.terminal ? { openStdin: true } : {}),
        cgroupProcs: cgroup.procs,
        oomFile: cgroup.oomFile,
        log: { path: logPath, maxBytes: options.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES, maxFiles: logMaxFiles },
      };
      // The shim records the pids itself (init.pid, shim.pid): no second write here.
      const created = await this.sys.createContainer(spec, { signal: options.signal });
      if (options.pidFile) await writeAtomic(options.pidFile, String(created.initPid));
      this.logger?.info('container created', { containerId: id, pid: created.initPid });
      // Known without reading it back: the shim reported after setup (and after exec with start).
      return {
        id, status: options.start ? 'running' : 'created', pid: created.initPid, bundle, rootfs: cfg.rootfs,
        createdAt: state.createdAt, annotations: cfg.annotations, stateDir: dir, logPath, resources,
        ...(options.start ? { startedAt: new Date().toISOString() } : {}),
      };
    } catch (e) {
      await this.cleanupFailedCreate(id, dir, cgroup);
      throw e;
    }
  }

  private async cleanupFailedCreate(id: string, dir: string, cgroup: ContainerCgroup | undefined): Promise<void> {
    const pid = Number((await readText(join(dir, 'init.pid')))?.split(' ')[0]);
    if (pid > 0) this.sys.kill(pid, 'SIGKILL');
    if (cgroup) await this.cgroups.destroy(cgroup).catch((e) => this.logger?.warn('cgroup cleanup failed', { containerId: id, error: messageOf(e) }));
    await rm(dir, { recursive: true, force: true });
  }

  /** Runs a bundle in the foreground with this process's stdio; returns the exit status. Leaves nothing behind. */
  async runAttached(id: string, bundle: string, options: { resources?: Resources; signal?: AbortSignal } = {}): Promise<number> {
    const dir = this.stateDir(id);
    const cfg = await this.loadBundle(bundle);
    await this.makeStateDir(id, dir);
    let cgroup: ContainerCgroup | undefined;
    try {
      const resources = { ...cfg.resources, ...options.resources };
      cgroup = await this.cgroups.create(this.cgroupName(id), resources);
      const state: PersistedState = {
        version: 1, id, bundle, rootfs: cfg.rootfs, createdAt: new Date().toISOString(), annotations: cfg.annotations,
        cgroup, resources, logPath: join(dir, 'container.log'), logMaxFiles: 1,
      };
      await writeAtomic(join(dir, 'state.json'), JSON.stringify(state));
      return await this.sys.runContainer(
        { ...cfg, stateDir: dir, autostart: true, cgroupProcs: cgroup.procs, oomFile: cgroup.oomFile },
        { signal: options.signal },
      );
    } finally {
      if (cgroup) await this.cgroups.destroy(cgroup).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async load(id: string): Promise<PersistedState> {
    const dir = this.stateDir(id);
    const [text, init, shim] = await Promise.all([
      readText(join(dir, 'state.json')), readText(join(dir, 'init.pid')), readText(join(dir, 'shim.pid')),
    ]);
    if (text === undefined) throw new ContainerNotFoundError(id);
    const s = JSON.parse(text) as PersistedState;
    const [pid, start] = (init ?? '').trim().split(' ').map(Number);
    if (pid && pid > 0) {
      s.pid = pid;
      s.initStartTime = start ?? 0;
    }
    if (shim) s.shimPid = Number(shim.trim());
    return s;
  }

  /** This host's hard rlimits a container cannot exceed (read once). */
  private hostLimits?: Promise<Record<string, number>>;

  private async readExit(dir: string): Promise<ExitInfo | undefined> {
    const text = await readText(join(dir, 'exit.json'));
    if (text === undefined) return undefined;
    const raw = JSON.parse(text) as { exitCode: number; signal: number; oomKilled: boolean; finishedAt: string; error: string };
    const started = (await readText(join(dir, 'started'))) !== undefined;
    let reason: ExitReason;
    if (raw.error && !started) reason = 'StartError';
    else if (raw.oomKilled) reason = 'OOMKilled';
    else if (raw.signal) reason = 'Signaled';
    else reason = raw.exitCode === 0 ? 'Completed' : 'Error';
    return {
      exitCode: raw.exitCode, signal: raw.signal, oomKilled: raw.oomKilled, finishedAt: raw.finishedAt, reason,
      ...(raw.error ? { error: raw.error } : {}),
    };
  }

  /** Whether the recorded init is still the same live process. */
  private async initAlive(s: PersistedState): Promise<boolean> {
    if (!s.pid) return false;
    const t = await this.sys.processStartTime(s.pid);
    return t !== undefined && (s.initStartTime === undefined || s.initStartTime === 0 || t === s.initStartTime);
  }

  async state(id: string): Promise<ContainerInfo> {
    return this.stateOf(id, await this.load(id));
  }

  /** state() over a state.json already loaded (delete reads it once for both). */
  private async stateOf(id: string, s: PersistedState): Promise<ContainerInfo> {
    const dir = this.stateDir(id);
    const base = {
      id, bundle: s.bundle, rootfs: s.rootfs, createdAt: s.createdAt, annotations: s.annotations, stateDir: dir,
      logPath: s.logPath, resources: s.resources,
    };
    let exit = await this.readExit(dir);
    const startedAt = (await readText(join(dir, 'started')))?.trim();
    const withStart = startedAt ? { startedAt } : {};
    if (exit) return { ...base, ...withStart, status: 'stopped', exit };
    if (!s.pid) return { ...base, status: 'creating' };
    if (await this.initAlive(s)) {
      return { ...base, ...withStart, status: startedAt ? 'running' : 'created', pid: s.pid };
    }
    // The init is gone. A live shim is about to record the exit: until it
    // has, the container counts as still running (the shim has the last word).
    if (s.shimPid && (await this.sys.processStartTime(s.shimPid)) !== undefined) {
      return { ...base, ...withStart, status: startedAt ? 'running' : 'created' };
    }
    exit = await this.readExit(dir);
    exit ??= {
      exitCode: 255, signal: 0, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'Unknown',
      error: 'the container and its shim exited without recording an exit status',
    };
    return { ...base, ...withStart, status: 'stopped', exit };
  }

  async list(): Promise<ContainerInfo[]> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const out: ContainerInfo[] = [];
    for (const name of names.sort()) {
      if (!ID.test(name)) continue;
      try {
        out.push(await this.state(name));
      } catch (e) {
        if (!(e instanceof ContainerNotFoundError)) throw e;
      }
    }
    return out;
  }

  async start(id: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ContainerInfo> {
    const info = await this.state(id);
    if (info.status !== 'created') {
      throw new ContainerStateError(id, info.status, `failed to start container "${id}": it is ${info.status}, expected created`);
    }
    await this.sys.sendControl(info.stateDir, 'start');
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    for (;;) {
      if ((await readText(join(info.stateDir, 'started'))) !== undefined) break;
      const exit = await this.readExit(info.stateDir);
      if (exit) {
        if (exit.reason === 'StartError') throw new ContainerStartError(id, exit.error ?? 'unknown error');
        break;
      }
      if (Date.now() > deadline) throw new ContainerStartError(id, 'the shim did not report the start within the timeout');
      await sleep(1);
    }
    return this.state(id);
  }

  /** Sends a signal to the container's init (pid 1 inside). */
  async kill(id: string, signal: string | number = 'SIGTERM'): Promise<void> {
    const sig = signalNumber(signal);
    const s = await this.load(id);
    const info = await this.state(id);
    if (info.status !== 'created' && info.status !== 'running') {
      throw new ContainerStateError(id, info.status, `failed to signal container "${id}": it is ${info.status}, expected created or running`);
    }
    if (!s.pid || !(await this.initAlive(s)) || !this.sys.kill(s.pid, sig)) {
      throw new ContainerStateError(id, 'stopped', `failed to signal container "${id}": its process already exited`);
    }
  }

  /** Resolves with the exit once the container stopped. */
  async wait(id: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ExitInfo> {
    const dir = this.stateDir(id);
    const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
    // An event that arrives while the loop is reading must not be lost:
    // `changed` remembers it until the loop looks.
    let changed = false;
    let wake: (() => void) | undefined;
    const watcher = (() => {
      try {
        return watch(dir, (_event, file) => {
          if (file !== 'exit.json') return; // log writes and the like
          changed = true;
          wake?.();
        });
      } catch {
        return undefined;
      }
    })();
    try {
      for (;;) {
        changed = false;
        // exit.json is all that matters while it runs; the full state only when it is missing.
        const exit = await this.readExit(dir);
        if (exit) return exit;
        const info = await this.state(id);
        if (info.exit) return info.exit;
        if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
        const left = deadline - Date.now();
        if (left <= 0) throw new ContainerStateError(id, info.status, `timed out waiting for container "${id}" to exit`);
        if (changed) continue;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 250));
          wake = () => { clearTimeout(t); resolve(); };
        });
        wake = undefined;
      }
    } finally {
      watcher?.close();
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s). */
  async stop(id: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ExitInfo> {
    const info = await this.state(id);
    if (info.exit) return info.exit;
    try {
      await this.kill(id, 'SIGTERM');
    } catch (e) {
      if (!(e instanceof ContainerStateError)) throw e;
    }
    try {
      return await this.wait(id, { timeoutMs: options.timeoutMs ?? 10_000, signal: options.signal });
    } catch (e) {
      if (!(e instanceof ContainerStateError)) throw e;
    }
    this.logger?.info('container did not stop in time, killing', { containerId: id });
    try {
      await this.kill(id, 'SIGKILL');
    } catch (e) {
      if (!(e instanceof ContainerStateError)) throw e;
    }
    return this.wait(id, { timeoutMs: 30_000, signal: options.signal });
  }

  /** Removes a stopped container (with force: kills it first). */
  async delete(id: string, options: { force?: boolean } = {}): Promise<void> {
    const s = await this.load(id);
    let info = await this.stateOf(id, s);
    if (info.status !== 'stopped') {
      if (!options.force && info.status !== 'creating') {
        throw new ContainerStateError(id, info.status, `failed to delete container "${id}": it is ${info.status}; stop it first or use force`);
      }
      if (s.pid && (await this.initAlive(s))) this.sys.kill(s.pid, 'SIGKILL');
      if (info.status !== 'creating') await this.wait(id, { timeoutMs: 30_000 });
      info = await this.state(id);
    }
    await this.cgroups.destroy(s.cgroup);
    await rm(this.stateDir(id), { recursive: true, force: true });
    this.logger?.info('container deleted', { containerId: id });
  }

  /** Changes the limits of a container without restarting it. */
  async update(id: string, resources: Resources): Promise<ContainerInfo> {
    const s = await this.load(id);
    const info = await this.state(id);
    if (info.status === 'stopped') {
      throw new ContainerStateError(id, info.status, `failed to update container "${id}": it is stopped`);
    }
    try {
      await this.cgroups.update(s.cgroup, resources);
    } catch (e) {
      // Nothing half-applied: put back what this update may have changed.
      const previous: Resources = {};
      const was = s.resources;
      if (resources.memoryBytes !== undefined) previous.memoryBytes = was.memoryBytes ?? null;
      if (resources.cpuQuotaUs !== undefined) previous.cpuQuotaUs = was.cpuQuotaUs ?? null;
      if (resources.pidsMax !== undefined) previous.pidsMax = was.pidsMax ?? null;
      if (resources.cpuPeriodUs !== undefined && was.cpuPeriodUs !== undefined) previous.cpuPeriodUs = was.cpuPeriodUs;
      if (resources.cpuShares !== undefined && was.cpuShares !== undefined) previous.cpuShares = was.cpuShares;
      await this.cgroups.update(s.cgroup, previous).catch((r) => this.logger?.warn('failed to restore limits', { containerId: id, error: messageOf(r) }));
      throw e;
    }
    const merged: Resources = { ...s.resources };
    for (const [k, v] of Object.entries(resources) as [keyof Resources, number | null | undefined][]) {
      if (v === undefined) continue;
      if (v === null) delete merged[k];
      else (merged as Record<string, number>)[k] = v;
    }
    await writeAtomic(join(this.stateDir(id), 'state.json'), JSON.stringify({ ...s, resources: merged }));
    return this.state(id);
  }

  async stats(id: string): Promise<CgroupStats & { readAt: number }> {
    const s = await this.load(id);
    return { ...(await this.cgroups.stats(s.cgroup)), readAt: Date.now() };
  }

  /**
   * Runs a process inside a running container: its namespaces, cgroups,
   * and by default the container's env, working directory, user and
   * capabilities from config.json (options override them).
   */
  async exec(id: string, options: ExecProcessOptions): Promise<ExecResult> {
    if (options.args.length === 0 || options.args[0] === '') {
      throw new InvalidArgumentError('command: expected a program to run', { field: 'command' });
    }
    const s = await this.load(id);
    const info = await this.state(id);
    if (info.status !== 'running' || !s.pid || !(await this.initAlive(s))) {
      throw new ContainerStateError(id, info.status, `failed to exec in container "${id}": it is ${info.status}, expected running`);
    }
    const cfg = await this.loadBundle(s.bundle);
    const env = new Map(cfg.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    for (const [i, e] of (options.env ?? []).entries()) {
      const eq = e.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`env[${i}]: expected "KEY=value", got "${e}"`, { field: `env[${i}]` });
      env.set(e.slice(0, eq), e.slice(eq + 1));
    }
    const user = options.user !== undefined ? await resolveUser(s.rootfs, options.user) : { uid: cfg.uid, gid: cfg.gid, additionalGids: cfg.additionalGids };
    const cwd = options.cwd ?? cfg.cwd;
    if (!cwd.startsWith('/')) throw new InvalidArgumentError(`cwd: expected an absolute path, got "${cwd}"`, { field: 'cwd' });
    return this.sys.execInContainer({
      targetPid: s.pid, args: options.args, env: [...env].map(([k, v]) => `${k}=${v}`), cwd, ...user,
      capabilities: cfg.capabilities, noNewPrivileges: cfg.noNewPrivileges, terminal: options.tty === true,
      ...(cfg.seccomp ? { seccomp: cfg.seccomp } : {}),
      ...(options.consoleSize ? { consoleSize: options.consoleSize } : {}), cgroupProcs: s.cgroup.procs,
    }, {
      stdio: options.stdio ?? 'pipe', ...(options.input !== undefined ? { input: options.input } : {}), ...(options.signal ? { signal: options.signal } : {}),
      ...(options.streams ? { streams: options.streams } : {}),
    });
  }

  /**
   * Connects to the terminal of a container made with `process.terminal`:
   * what is written goes to its pty, what it prints comes back (also logged).
   * The socket ends when the container exits.
   */
  async attach(id: string): Promise<Socket> {
    return this.connectSocket(id, 'attach', 'it has no terminal');
  }

  async attachStdin(id: string): Promise<Socket> {
    return this.connectSocket(id, 'stdin', 'its input is not open (or another client had it)');
  }

  private async connectSocket(id: string, name: 'attach' | 'stdin', missing: string): Promise<Socket> {
    const info = await this.state(id);
    if (info.status !== 'created' && info.status !== 'running') {
      throw new ContainerStateError(id, info.status, `failed to attach to container "${id}": it is ${info.status}`);
    }
    const path = join(info.stateDir, name);
    if (!(await stat(path).catch(() => undefined))) {
      throw new ContainerStateError(id, info.status, `failed to attach to container "${id}": ${missing}`);
    }
    // A socket address holds at most 107 bytes: a longer path is reached through an fd of its directory (as the shim binds it).
    const dir = Buffer.byteLength(path) > 107 ? await open(info.stateDir, 'r') : undefined;
    try {
      return await new Promise((resolve, reject) => {
        const sock = connect(dir ? `/proc/self/fd/${dir.fd}/${name}` : path);
        sock.once('connect', () => resolve(sock));
        sock.once('error', (e) => reject(new ContainerStateError(id, info.status, `failed to attach to container "${id}": ${e.message}`, { cause: e })));
      });
    } finally {
      await dir?.close();
    }
  }

  /** Sets the window size of a container's terminal. */
  async resize(id: string, rows: number, cols: number): Promise<void> {
    for (const [name, v] of [['rows', rows], ['cols', cols]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 65535) throw new InvalidArgumentError(`${name}: expected 1..65535, got ${v}`, { field: name });
    }
    const info = await this.state(id);
    if (info.status !== 'created' && info.status !== 'running') {
      throw new ContainerStateError(id, info.status, `failed to resize the terminal of container "${id}": it is ${info.status}`);
    }
    await this.sys.sendControl(info.stateDir, `resize ${rows} ${cols}`);
  }

  /** The container's log entries (see logs.ts); follow ends when the container stopped. */
  async *logs(id: string, options: Omit<ReadLogsOptions, 'isDone'> = {}): AsyncGenerator<LogEntry> {
    const s = await this.load(id);
    const dir = this.stateDir(id);
    yield* readLogs(s.logPath, s.logMaxFiles, {
      ...options,
      isDone: async () => (await readText(join(dir, 'exit.json'))) !== undefined,
    });
  }
}
