/**
 * FakeSys: an in-memory Sys for unit tests of agent/runtime. It records every
 * call in `calls`, keeps a fake cgroup filesystem in `files`/`dirs`, and fails
 * a call on demand: `failNext('cgroupWrite', err)` makes the next such call throw.
 * Containers "created" here are only records; nothing runs (createContainer
 * writes init.pid and shim.pid into the state dir as the shim would).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError } from '../../lib/errors.js';
import { ContainerSetupError, ShimUnavailableError } from './errors.js';
import type { CgroupMountInfo, CreatedContainer, ExecOptions, ExecResult, ShimCommand, Sys } from './index.js';
import type { ExecSpec, InitSpec } from './spec.js';

export interface FakeCall {
  method: keyof Sys;
  args: unknown[];
}

export class FakeSys implements Sys {
  readonly calls: FakeCall[] = [];
  /** cgroup files: path -> contents. Tests preset kernel-provided files here. */
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();
  mounts: CgroupMountInfo[];
  self: Map<string, string>;
  /** Processes that "exist": pid -> start time. */
  readonly processes = new Map<number, number>();
  readonly signals: { pid: number; signal: NodeJS.Signals | number }[] = [];
  readonly specs: InitSpec[] = [];
  private readonly failures = new Map<keyof Sys, unknown[]>();
  private nextPid = 1000;

  constructor(options: { mounts?: CgroupMountInfo[]; self?: Map<string, string> } = {}) {
    this.mounts = options.mounts ?? [{ mountPoint: '/sys/fs/cgroup', version: 2, controllers: ['cpu', 'memory', 'pids'] }];
    this.self = options.self ?? new Map([['', '/']]);
  }

  /** The next call of `method` throws `err`. */
  failNext(method: keyof Sys, err: unknown): void {
    const list = this.failures.get(method) ?? [];
    list.push(err);
    this.failures.set(method, list);
  }

  private record(method: keyof Sys, args: unknown[]): void {
    this.calls.push({ method, args });
    const pending = this.failures.get(method);
    if (pending && pending.length > 0) throw pending.shift();
  }

  callsOf(method: keyof Sys): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  async createContainer(spec: InitSpec): Promise<CreatedContainer> {
    this.record('createContainer', [spec]);
    if (spec.args.length === 0) throw new ContainerSetupError('no args');
    this.specs.push(spec);
    const initPid = this.nextPid++;
    const shimPid = this.nextPid++;
    this.processes.set(initPid, initPid * 10);
    // What the real shim writes into the state dir.
    await writeFile(join(spec.stateDir, 'init.pid'), `${initPid} ${initPid * 10}\n`);
    await writeFile(join(spec.stateDir, 'shim.pid'), `${shimPid}\n`);
    if (spec.autostart) await writeFile(join(spec.stateDir, 'started'), `${new Date().toISOString()}\n`);
    return { initPid, initStartTime: initPid * 10, shimPid };
  }

  async runContainer(spec: InitSpec): Promise<number> {
    this.record('runContainer', [spec]);
    this.specs.push(spec);
    return 0;
  }

  async sendControl(stateDir: string, command: ShimCommand): Promise<void> {
    this.record('sendControl', [stateDir, command]);
    if (!this.specs.some((s) => s.stateDir === stateDir)) throw new ShimUnavailableError(stateDir);
  }

  /** What execInContainer returns; tests set it. */
  execResult: ExecResult = { exitCode: 0, stdout: '', stderr: '' };
  readonly execs: ExecSpec[] = [];

  async execInContainer(spec: ExecSpec, opts: ExecOptions): Promise<ExecResult> {
    this.record('execInContainer', [spec, opts]);
    this.execs.push(spec);
    return this.execResult;
  }

  kill(pid: number, signal: NodeJS.Signals | number): boolean {
    this.record('kill', [pid, signal]);
    this.signals.push({ pid, signal });
    return this.processes.has(pid);
  }

  async processStartTime(pid: number): Promise<number | undefined> {
    this.record('processStartTime', [pid]);
    return this.processes.get(pid);
  }

  async rlimit(type: string): Promise<{ soft: number; hard: number }> {
    this.record('rlimit', [type]);
    return type === 'RLIMIT_NOFILE' ? { soft: 1024, hard: 20000 } : { soft: Infinity, hard: Infinity };
  }

  async cgroupMounts(): Promise<CgroupMountInfo[]> {
    this.record('cgroupMounts', []);
    return this.mounts;
  }

  async selfCgroups(): Promise<Map<string, string>> {
    this.record('selfCgroups', []);
    return this.self;
  }

  async cgroupMkdir(path: string, opts: { exclusive?: boolean } = {}): Promise<void> {
    this.record('cgroupMkdir', [path, opts]);
    if (opts.exclusive && this.dirs.has(path)) throw new AlreadyExistsError('cgroup', path);
    this.dirs.add(path);
  }

  async cgroupRmdir(path: string): Promise<void> {
    this.record('cgroupRmdir', [path]);
    this.dirs.delete(path);
    for (const f of [...this.files.keys()]) if (f.startsWith(path + '/')) this.files.delete(f);
  }

  async cgroupWrite(path: string, value: string): Promise<void> {
    this.record('cgroupWrite', [path, value]);
    this.files.set(path, value);
  }

  async cgroupRead(path: string): Promise<string | undefined> {
    this.record('cgroupRead', [path]);
    return this.files.get(path);
  }
}
