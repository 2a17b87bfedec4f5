/**
 * agent/sys: the only part of the agent that touches the kernel: it spawns
 * processes (the berth-helper C program), mounts, writes cgroupfs and enters
 * namespaces. Everything above it is written against the `Sys` interface and
 * tested with `FakeSys` (fake.ts), which records calls and injects failures.
 *
 * Vocabulary
 *   helper   agent/sys/native/build/berth-helper, the one native program.
 *   shim     a per-container supervisor process (the helper's "shim" role):
 *            it outlives the agent, writes the container's state files, logs
 *            its output and records how it exited.
 *   init     the container's first process (pid 1 inside), created by the shim.
 *   state dir  a host directory per container the shim and agent/runtime share.
 *
 * The interface is cut by role (youki's Syscall trait is the model):
 *   ContainerProcessOps  create/run containers through the helper, talk to shims
 *   ProcessOps           signals and /proc facts about host processes
 *   CgroupFs             the cgroup filesystem (paths are absolute)
 * `Sys` combines them.
 */
import type { ExecSpec, InitSpec } from './spec.js';

export * from './spec.js';
export * from './errors.js';
export * from './overlay.js';
export * from './fsops.js';

export type ShimCommand = 'start' | `resize ${number} ${number}`;

export interface CreatedContainer {
  /** Host pid of the container's init (pid 1 inside). */
  initPid: number;
  /** /proc/<pid>/stat starttime of the init, to detect pid reuse. */
  initStartTime: number;
  shimPid: number;
}

export interface ContainerProcessOps {
  /**
   * Starts a detached shim that creates the container described by `spec`.
   * Resolves when the container is created (waiting for `start`, or already
   * executing when `spec.autostart`); rejects with ContainerSetupError
   * carrying the helper's message when setup failed (nothing is left running).
   */
  createContainer(spec: InitSpec, opts?: { signal?: AbortSignal }): Promise<CreatedContainer>;
  /**
   * Runs the container in the foreground with this process's stdio (the
   * helper's "run" role; spec.autostart is implied). Resolves with its exit
   * status: the code, or 128 + signal number.
   */
  runContainer(spec: InitSpec, opts?: { signal?: AbortSignal }): Promise<number>;
  /**
   * Sends a command to the shim of the container in `stateDir` through its
   * control FIFO: "start", or "resize ROWS COLS" for a terminal. Rejects with
   * ShimUnavailableError when no shim listens.
   */
  sendControl(stateDir: string, command: ShimCommand): Promise<void>;
  /**
   * Runs a process inside a running container (its namespaces and cgroups)
   * through the helper's "exec" role. With stdio "inherit" it shares this
   * process's stdio (a terminal is relayed in raw mode); with "pipe" the
   * output is collected and `input` is written to its stdin. Resolves with
   * the exit status (127 and the helper's message when setup failed).
   */
  execInContainer(spec: ExecSpec, opts: ExecOptions): Promise<ExecResult>;
}

export interface ExecOptions {
  stdio: 'inherit' | 'pipe';
  input?: string | Buffer;
  signal?: AbortSignal;
  /**
   * With stdio "pipe": stream instead of collecting. Called once the helper is
   * spawned with its stdin (the process's input, or the pty's with a
   * terminal), stdout and stderr; `input` is ignored and the result's
   * stdout/stderr stay empty. The caller ends stdin when its input ends.
   */
  streams?: (io: ExecStreams) => void;
}

/** The live stdio of a streaming exec (ExecOptions.streams). */
export interface ExecStreams {
  stdin: NodeJS.WritableStream;
  stdout: NodeJS.ReadableStream;
  stderr: NodeJS.ReadableStream;
  /** With a terminal: sets its window size (the process gets SIGWINCH). */
  resize?: (rows: number, cols: number) => void;
}

export interface ExecResult {
  exitCode: number;
  /** Collected output with stdio "pipe"; empty otherwise. */
  stdout: string;
  stderr: string;
}

export interface ProcessOps {
  /** Sends a signal; false when the process does not exist (ESRCH). */
  kill(pid: number, signal: NodeJS.Signals | number): boolean;
  /** Field 22 of /proc/<pid>/stat, or undefined when there is no such process (or it is a zombie). */
  processStartTime(pid: number): Promise<number | undefined>;
  /** This process's limit for an rlimit (`RLIMIT_NOFILE`), from /proc/self/limits; `Infinity` = unlimited. */
  rlimit(type: string): Promise<{ soft: number; hard: number }>;
}

/** One mounted cgroup hierarchy. */
export interface CgroupMountInfo {
  /** Where it is mounted, e.g. /sys/fs/cgroup/memory. */
  mountPoint: string;
  version: 1 | 2;
  /** v1: the controllers of this hierarchy; v2: the controllers it offers (cgroup.controllers). */
  controllers: string[];
}

export interface CgroupFs {
  /** The mounted cgroup hierarchies (from /proc/self/mounts). */
  cgroupMounts(): Promise<CgroupMountInfo[]>;
  /** This process's cgroup per hierarchy (/proc/self/cgroup): key is the controller list ("memory", "cpu,cpuacct") or "" for v2. */
  selfCgroups(): Promise<Map<string, string>>;
  /**
   * mkdir -p of a cgroup directory; with `exclusive` the last directory must
   * not exist yet (AlreadyExists otherwise: a container's cgroup is never reused).
   */
  cgroupMkdir(path: string, opts?: { exclusive?: boolean }): Promise<void>;
  /** rmdir of a cgroup directory; missing is fine. Retries while the kernel still reports it busy. */
  cgroupRmdir(path: string, opts?: { timeoutMs?: number }): Promise<void>;
  cgroupWrite(path: string, value: string): Promise<void>;
  /** Contents of a cgroup file, or undefined when it does not exist. */
  cgroupRead(path: string): Promise<string | undefined>;
}

export type Sys = ContainerProcessOps & ProcessOps & CgroupFs;
export * from './net.js';
export * from './conntrack.js';
export * from './bind.js';
export * from './tcp.js';
