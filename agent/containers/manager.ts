/**
 * The agent's container manager: the containers the controller assigned to
 * this node, run through the runtime and kept to their restart policy.
 *
 * Vocabulary
 *   container  what the controller asked for (RunContainerRequest): an id, a
 *              spec, and its status as the proto `Container`.
 *   attempt    one run of a container's process. Attempt n is the runtime
 *              container `<id>.<n>`; a restart is a new attempt over the same
 *              root filesystem (the overlay snapshot `<id>`) and bundle. The
 *              previous attempt is kept (stopped) so its logs stay readable;
 *              older ones are deleted.
 *   record     `<root>/containers/<id>/record.json` (version 1): the
 *              Container plus the attempt number, whether it should run, and
 *              the failure streak; rewritten atomically on every change, so an
 *              agent restart (`recover()`) re-adopts running attempts and
 *              learns exits that happened while it was down.
 *
 * Lifecycle of a container
 *   run -> PENDING (record written) -> image pulled if missing -> rootfs
 *   mounted -> bundle written -> attempt 0 created and started -> RUNNING.
 *   A failure before RUNNING undoes everything and fails the call (nothing
 *   half-applied; the controller may retry with the same id).
 *   exit -> EXITED (exit code, reason) -> per restart policy, a new attempt
 *   after the backoff (1 s doubling to the cap, streak reset after 10 s of
 *   running) -> RUNNING with restart_count + 1.
 *   stop -> no more restarts; SIGTERM, SIGKILL after the grace period.
 *   remove -> attempts deleted (cgroups, logs, state), rootfs unmounted and
 *   deleted, record deleted.
 *
 * Every change is passed to the listeners given to `watch()` (the status
 * publisher turns them into ContainerReports).
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError, CancelledError, InternalError, InvalidArgumentError, drainSecondsFor, messageOf, type Logger } from '../../lib/index.js';
import type { RunContainerRequest } from '../../proto/gen/berth/v1/agent.js';
import {
  Container,
  ContainerSpec,
  ContainerState,
  ContainerStatus,
  type MountSpec,
  type PullProgress,
} from '../../proto/gen/berth/v1/types.js';
import { pullWithProgress, type ImageRecord, type PullOptions } from '../images/index.js';
import { STDIN_ANNOTATION } from '../runtime/index.js';
import type { ContainerDetails, ContainerProcesses, ContainerStats, WaitResult } from '../../proto/gen/berth/v1/containers.js';
import { totalmem } from 'node:os';
import { signalNumber } from '../runtime/index.js';
import { listProcesses, runtimeResources, saveBundleResources } from './ops.js';
import type { ContainerRuntime, ExitInfo, ImageConfig, RunOptions } from '../runtime/index.js';
import type { ContainerSnapshot } from '../snapshots/index.js';
import { HEALTHY_RESET_MS, INITIAL_BACKOFF_MS, nextBackoff, shouldRestart } from './backoff.js';
import { ContainerConflictError, ContainerUnknownError } from './errors.js';
import { HealthMonitor, type HealthResult, type Prober } from './health.js';
import { validateRunRequest } from './validate.js';

/** What the manager needs of the image service. */
export interface ImageSource {
  get(ref: string): Promise<ImageRecord | undefined>;
  pull(ref: string, opts?: PullOptions): Promise<ImageRecord>;
}

/** What the manager needs of the snapshotter. */
export interface RootfsProvider {
  mountContainer(id: string, chainId: string, opts?: { signal?: AbortSignal }): Promise<ContainerSnapshot>;
  removeContainer(id: string, opts?: { signal?: AbortSignal }): Promise<void>;
  listContainers(): Promise<ContainerSnapshot[]>;
}

/**
 * The container's network, set up by the networking module (optional: without
 * one a container gets a new, empty network namespace). `setup` runs before
 * the first attempt and returns the namespace every attempt joins and the
 * container's address (health probes use it); `teardown` runs on removal and
 * when a start is undone. Both must be idempotent.
 */
export interface ContainerNetwork {
  setup(id: string, spec: ContainerSpec, opts: { signal?: AbortSignal }): Promise<{ netnsPath: string; ipAddress: string; dns?: string[]; dnsSearch?: string[]; extraHosts?: [string, string][] }>;
  teardown(id: string): Promise<void>;
}

/**
 * Volumes and bind mounts (agent/volumes): `check` refuses bad bind sources
 * before anything of a container is made; `resolve` gives the runtime host
 * paths, creating volumes on first use. Without one, containers with mounts
 * are refused.
 */
export interface MountResolver {
  checkBinds(mounts: readonly MountSpec[]): Promise<void>;
  resolve(mounts: readonly MountSpec[], opts: { signal?: AbortSignal }): Promise<NonNullable<RunOptions['mounts']>>;
}

export type BundleWriter = (dir: string, rootfs: string, image: ImageConfig, options: RunOptions) => Promise<unknown>;

export interface ContainerManagerOptions {
  node: string;
  /** The agent's data root; records live in `<root>/containers/`. */
  root: string;
  runtime: ContainerRuntime;
  images: ImageSource;
  snapshots: RootfsProvider;
  writeBundle: BundleWriter;
  logger: Logger;
  /** Gives each pull started by RunContainer a sink for its progress messages (e.g. a throttled NATS publisher). */
  pullProgressSink?: () => (p: PullProgress) => void;
  network?: ContainerNetwork;
  mounts?: MountResolver;
  /** Registry for short image names (as the image service uses). */
  defaultRegistry?: string;
  /** Default grace period of StopContainer when the request gives 0; default 10 s. */
  defaultGraceMs?: number;
  initialBackoffMs?: number;
  healthyResetMs?: number;
}

export type ContainerEvent = { container: Container; removed?: undefined } | { container?: undefined; removed: string };

interface PersistedRecord {
  version: 1;
  container: unknown;
  attempt: number;
  desired: 'running' | 'stopped';
  streak: number;
  /** Set when the first start has not completed (a crash then leaves a half-made container to undo). */
  pending?: boolean;
  /** The image's top layer: what the rootfs is mounted from. */
  chainId?: string;
}

interface Entry {
  container: Container;
  attempt: number;
  desired: 'running' | 'stopped';
  streak: number;
  pending: boolean;
  chainId: string;
  /** The runtime lost the container (host restart): the rootfs must be mounted again before the next attempt. */
  remount?: boolean;
  dir: string;
  /** Serializes run/restart/stop/remove of this container. */
  lock: Promise<unknown>;
  restartTimer?: NodeJS.Timeout;
  watchAbort?: AbortController;
  /** Resolves once the exit of the watched attempt was recorded. */
  exited?: Promise<void>;
  health?: HealthMonitor;
  removing?: boolean;
}

const ATTEMPT_ID = /^(.+)\.(\d+)$/;
/** Names the agent data root that made a runtime container, so agents sharing a runtime root never delete each other's. */
export const OWNER_ANNOTATION = 'io.berth.agent.root';

export function attemptId(id: string, attempt: number): string {
  return `${id}.${attempt}`;
}

function reasonOf(exit: ExitInfo): string {
  return exit.reason === 'StartError' ? 'StartFailed' : exit.reason;
}

/** JSON with object keys sorted, so map order does not matter. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : x));
}

function sameRequest(c: Container, req: RunContainerRequest): boolean {
  const a = canonical(ContainerSpec.toJSON(c.spec ?? ContainerSpec.fromJSON({})));
  const b = canonical(ContainerSpec.toJSON(req.spec ?? ContainerSpec.fromJSON({})));
  return a === b && c.name === req.name && c.workload === req.workload && c.revision === req.revision && c.replica === req.replica;
}

/** A deep copy (callers never share the manager's objects). */
function clone(c: Container): Container {
  return Container.decode(Container.encode(c).finish());
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await rename(tmp, path);
}

export class ContainerManager {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(e: ContainerEvent) => void>();
  private readonly base: string;
  private readonly log: Logger;
  private closed = false;

  constructor(private readonly opts: ContainerManagerOptions) {
    this.base = join(opts.root, 'containers');
    this.log = opts.logger.child({ component: 'containers' });
  }

  /** Calls `listener` on every change; returns a function that stops it. */
  watch(listener: (e: ContainerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Containers on this node now (copies). */
  list(): Container[] {
    return [...this.entries.values()].map((e) => clone(e.container));
  }

  get count(): number {
    return this.entries.size;
  }

  get(id: string): Container {
    const e = this.entries.get(id);
    if (!e) throw new ContainerUnknownError(id);
    return clone(e.container);
  }

  /** The runtime id of the attempt running now and of the previous one (for logs). */
  attempts(id: string): { current: string; previous?: string } {
    const e = this.entries.get(id);
    if (!e) throw new ContainerUnknownError(id);
    return { current: attemptId(id, e.attempt), ...(e.attempt > 0 ? { previous: attemptId(id, e.attempt - 1) } : {}) };
  }

  private emit(e: Entry): void {
    const c = clone(e.container);
    for (const l of this.listeners) {
      try {
        l({ container: c });
      } catch (err) {
        this.log.warn('container listener failed', { reason: messageOf(err) });
      }
    }
  }

  private emitRemoved(id: string): void {
    for (const l of this.listeners) {
      try {
        l({ removed: id });
      } catch (err) {
        this.log.warn('container listener failed', { reason: messageOf(err) });
      }
    }
  }

  private async persist(e: Entry): Promise<void> {
    const rec: PersistedRecord = {
      version: 1,
      container: Container.toJSON(e.container),
      attempt: e.attempt,
      desired: e.desired,
      streak: e.streak,
      ...(e.pending ? { pending: true } : {}),
      ...(e.chainId !== '' ? { chainId: e.chainId } : {}),
    };
    await writeAtomic(join(e.dir, 'record.json'), JSON.stringify(rec));
  }

  /** Persists and emits; a failed write is logged (the state in memory stays right). */
  private async changed(e: Entry): Promise<void> {
    if (e.removing) return;
    try {
      await this.persist(e);
    } catch (err) {
      this.log.error('failed to write container record', { containerId: e.container.id, reason: messageOf(err) });
    }
    this.emit(e);
  }

  private locked<T>(e: Entry, fn: () => Promise<T>): Promise<T> {
    const p = e.lock.then(fn, fn);
    e.lock = p.catch(() => undefined);
    return p;
  }

  private runOptions(c: Container): RunOptions {
    const s = c.spec ?? ContainerSpec.fromJSON({});
    const r = s.resources;
    const resources: NonNullable<RunOptions['resources']> = {};
    if (r && r.memoryBytes > 0) resources.memoryBytes = r.memoryBytes;
    if (r && r.cpuMillis > 0) resources.cpus = r.cpuMillis / 1000;
    if (r && r.pids > 0) resources.pidsLimit = r.pids;
    return {
      ...(s.entrypoint.length > 0 ? { entrypoint: s.entrypoint } : {}),
      ...(s.command.length > 0 ? { command: s.command } : {}),
      env: Object.entries(s.env).map(([k, v]) => `${k}=${v}`),
      ...(s.workingDir !== '' ? { workdir: s.workingDir } : {}),
      ...(s.user !== '' ? { user: s.user } : {}),
      hostname: s.hostname !== '' ? s.hostname : (c.name !== '' && /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(c.name) ? c.name : c.id.slice(0, 12)),
      tty: s.tty,
      resources,
      annotations: {
        'io.berth.container.id': c.id,
        [OWNER_ANNOTATION]: this.opts.root,
        // Input without a terminal (berth run -i): a stdin pipe fed through the shim's stdin socket.
        ...(s.stdin && !s.tty ? { [STDIN_ANNOTATION]: 'true' } : {}),
        ...(c.workload !== '' ? { 'io.berth.workload': c.workload, 'io.berth.replica': String(c.replica) } : {}),
      },
    };
  }

  /**
   * Runs a container (idempotent by id: the same request again returns the
   * container as it is; a different spec under the same id is refused).
   */
  async run(req: RunContainerRequest, opts: { signal?: AbortSignal } = {}): Promise<Container> {
    validateRunRequest(req, { defaultRegistry: this.opts.defaultRegistry });
    if (this.closed) throw new CancelledError('the agent is stopping');
    const existing = this.entries.get(req.id);
    if (existing) {
      return this.locked(existing, async () => {
        // The first call failed and undid everything meanwhile: start afresh.
        if (this.entries.get(req.id) !== existing) return undefined;
        if (!sameRequest(existing.container, req)) {
          throw new AlreadyExistsError('container', req.id, { message: `container "${req.id}" already exists on this node with a different spec` });
        }
        return clone(existing.container);
      }).then((c) => c ?? this.run(req, opts));
    }
    if (req.spec.mounts.length > 0) {
      // Bind sources are checked before anything is made (and before the id is taken).
      if (!this.opts.mounts) throw new InvalidArgumentError('spec.mounts: this agent does not support volumes or bind mounts; expected none', { field: 'spec.mounts' });
      await this.opts.mounts.checkBinds(req.spec.mounts);
      if (this.entries.has(req.id)) return this.run(req, opts);
    }
    const now = Date.now();
    const e: Entry = {
      container: {
        ...Container.fromJSON({}),
        id: req.id, name: req.name, node: this.opts.node, workload: req.workload, revision: req.revision, replica: req.replica,
        spec: req.spec, createdUnixMs: now,
        status: { ...ContainerStatus.fromJSON({}), state: ContainerState.CONTAINER_STATE_PENDING, health: req.spec.health ? 'starting' : '' },
      },
      attempt: 0, desired: 'running', streak: 0, pending: true, chainId: '', dir: join(this.base, req.id), lock: Promise.resolve(),
    };
    this.entries.set(req.id, e);
    return this.locked(e, async () => {
      try {
        await mkdir(this.base, { recursive: true, mode: 0o700 });
        await mkdir(e.dir, { mode: 0o700 });
        await this.changed(e);
        const image = await this.ensureImage(req.spec.image, opts.signal);
        opts.signal?.throwIfAborted();
        e.chainId = image.chainId;
        const snap = await this.opts.snapshots.mountContainer(req.id, image.chainId, { signal: opts.signal });
        const bundle = join(e.dir, 'bundle');
        await mkdir(bundle, { recursive: true });
        const runOptions = this.runOptions(e.container);
        if (req.spec.tty && req.consoleSize && req.consoleSize.rows > 0 && req.consoleSize.cols > 0) runOptions.consoleSize = { rows: req.consoleSize.rows, cols: req.consoleSize.cols };
        // A container whose client attaches first (berth run, attached) waits, created, for AgentStreamService.Attach.
        const waitForAttach = req.waitForAttach === true;
        if (req.spec.mounts.length > 0 && this.opts.mounts) runOptions.mounts = await this.opts.mounts.resolve(req.spec.mounts, { signal: opts.signal });
        if (this.opts.network) {
          const n = await this.opts.network.setup(req.id, req.spec, { signal: opts.signal });
          runOptions.netnsPath = n.netnsPath;
          if (n.dns) runOptions.dns = n.dns;
          if (n.dnsSearch) runOptions.dnsSearch = n.dnsSearch;
          if (n.extraHosts) runOptions.extraHosts = n.extraHosts;
          e.container.status = { ...e.container.status!, ipAddress: n.ipAddress };
        }
        await this.opts.writeBundle(bundle, snap.rootfs, image.config as ImageConfig, runOptions);
        const info = await this.opts.runtime.create(attemptId(req.id, 0), bundle, { start: !waitForAttach, signal: opts.signal });
        e.pending = false;
        e.container.status = {
          ...e.container.status!,
          state: waitForAttach ? ContainerState.CONTAINER_STATE_CREATED : ContainerState.CONTAINER_STATE_RUNNING,
          pid: info.pid ?? 0,
          startedUnixMs: waitForAttach ? 0 : Date.parse(info.startedAt ?? '') || Date.now(),
        };
        this.log.info('container started', { containerId: req.id, name: req.name, image: req.spec.image, pid: info.pid });
        await this.changed(e);
        this.follow(e);
        return clone(e.container);
      } catch (err) {
        this.log.warn('container failed to start; undoing', { containerId: req.id, reason: messageOf(err) });
        await this.undo(e);
        throw err;
      }
    });
  }

  private async ensureImage(ref: string, signal?: AbortSignal): Promise<ImageRecord> {
    const have = await this.opts.images.get(ref);
    if (have) return have;
    const sink = this.opts.pullProgressSink?.();
    const out = await pullWithProgress(this.opts.images, ref, this.opts.node, (p) => sink?.(p), { signal });
    if (out.record) return out.record;
    throw out.error instanceof Error ? out.error : new InternalError(`failed to pull image "${ref}": ${messageOf(out.error)}`);
  }

  /** Deletes everything of a container that never got to RUNNING (or is being removed). */
  private async undo(e: Entry): Promise<void> {
    const id = e.container.id;
    e.removing = true;
    this.stopWatching(e);
    const deleteAttempts = async (): Promise<void> => {
      for (let a = e.attempt; a >= Math.max(0, e.attempt - 1); a--) {
        await this.opts.runtime.delete(attemptId(id, a), { force: true }).catch((err: unknown) => {
          if (!(err instanceof ContainerUnknownError) && !/not found/.test(messageOf(err))) this.log.warn('failed to delete attempt', { containerId: id, attempt: a, reason: messageOf(err) });
        });
      }
    };
    const removeRootfs = async (): Promise<void> => {
      await this.opts.snapshots.removeContainer(id).catch((err: unknown) => this.log.warn('failed to remove container rootfs', { containerId: id, reason: messageOf(err) }));
    };
    const teardown = async (): Promise<void> => {
      await this.opts.network?.teardown(id).catch((err: unknown) => this.log.warn('failed to tear down container network', { containerId: id, reason: messageOf(err) }));
    };
    if (e.container.status?.state === ContainerState.CONTAINER_STATE_EXITED) {
      // Its processes are gone (the exit was seen): runtime state, root filesystem and network go side by side.
      await Promise.all([deleteAttempts(), removeRootfs(), teardown()]);
    } else {
      // Processes may still run (a failed start): they go first, with the runtime state.
      await deleteAttempts();
      await removeRootfs();
      await teardown();
    }
    await rm(e.dir, { recursive: true, force: true });
    this.entries.delete(id);
    this.emitRemoved(id);
  }

  private stopWatching(e: Entry): void {
    if (e.restartTimer) clearTimeout(e.restartTimer);
    e.restartTimer = undefined;
    e.watchAbort?.abort();
    e.watchAbort = undefined;
    e.health?.stop();
    e.health = undefined;
  }

  private prober(e: Entry): Prober {
    return {
      exec: async (args, timeoutMs) => {
        const ac = new AbortController();
        const t = setTimeout(() => ac.abort(), timeoutMs);
        try {
          const r = await this.opts.runtime.exec(attemptId(e.container.id, e.attempt), { args, stdio: 'pipe', signal: ac.signal });
          if (ac.signal.aborted) throw new Error(`command timed out after ${timeoutMs} ms`);
          if (r.exitCode !== 0) throw new Error(`command exited with ${r.exitCode}${r.stderr.trim() !== '' ? `: ${r.stderr.trim().slice(0, 200)}` : ''}`);
        } finally {
          clearTimeout(t);
        }
      },
      address: () => (e.container.status?.ipAddress ? e.container.status.ipAddress : undefined),
    };
  }

  /** Watches the current attempt: health checks while it runs, its exit when it ends. */
  private follow(e: Entry): void {
    const id = e.container.id;
    const attempt = e.attempt;
    const ac = new AbortController();
    e.watchAbort = ac;
    const spec = e.container.spec?.health;
    if (spec) {
      e.health = new HealthMonitor(spec, this.prober(e), (r: HealthResult) => {
        if (e.attempt !== attempt || e.container.status?.state !== ContainerState.CONTAINER_STATE_RUNNING) return;
        e.container.status = { ...e.container.status, health: r.health, message: r.lastError };
        this.log.info('container health changed', { containerId: id, health: r.health, reason: r.lastError });
        void this.changed(e);
      });
      e.health.start();
    }
    e.exited = (async () => {
      let exit: ExitInfo;
      try {
        exit = await this.opts.runtime.wait(attemptId(id, attempt), { signal: ac.signal });
      } catch (err) {
        if (ac.signal.aborted) return;
        this.log.error('lost track of a container', { containerId: id, attempt, reason: messageOf(err) });
        exit = { exitCode: 128, signal: 0, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'Unknown', error: messageOf(err) };
      }
      if (e.attempt !== attempt || e.removing) return;
      await this.onExit(e, exit);
    })();
  }

  private async onExit(e: Entry, exit: ExitInfo): Promise<void> {
    const id = e.container.id;
    e.health?.stop();
    e.health = undefined;
    e.watchAbort = undefined;
    const finished = Date.parse(exit.finishedAt) || Date.now();
    const status = e.container.status!;
    e.container.status = {
      ...status,
      state: ContainerState.CONTAINER_STATE_EXITED,
      exitCode: exit.exitCode,
      reason: reasonOf(exit),
      message: exit.error ?? '',
      finishedUnixMs: finished,
      pid: 0,
      health: status.health === '' ? '' : 'unhealthy',
      // Draining ends with the process (an exited container is in no rotation).
      draining: false,
    };
    const spec = e.container.spec;
    const policy = spec?.restart?.policy ?? '';
    const restart = e.desired === 'running' && !this.closed && shouldRestart(policy, exit.exitCode, exit.oomKilled);
    this.log.info('container exited', { containerId: id, exitCode: exit.exitCode, reason: reasonOf(exit), restart });
    if (restart) {
      const ran = finished - (status.startedUnixMs || finished);
      const b = nextBackoff(e.streak, ran, spec?.restart?.backoffCapSeconds ?? 0, this.opts.initialBackoffMs ?? INITIAL_BACKOFF_MS, this.opts.healthyResetMs ?? HEALTHY_RESET_MS);
      e.streak = b.streak;
      e.container.status.message = `${exit.error ? `${exit.error}; ` : ''}restarting in ${b.delayMs / 1000} s`;
      await this.changed(e);
      this.scheduleRestart(e, b.delayMs);
      return;
    }
    await this.changed(e);
    if (spec?.autoRemove && e.desired === 'running') {
      // Not awaited: remove() takes the container's lock, which a restart calling onExit holds.
      void this.remove(id, { force: true }).catch((err: unknown) => this.log.warn('failed to auto-remove container', { containerId: id, reason: messageOf(err) }));
    }
  }

  private scheduleRestart(e: Entry, delayMs: number): void {
    if (e.restartTimer) clearTimeout(e.restartTimer);
    e.restartTimer = setTimeout(() => {
      e.restartTimer = undefined;
      void this.locked(e, () => this.restart(e));
    }, delayMs);
  }

  private async restart(e: Entry, manual = false): Promise<void> {
    if (!manual && (e.desired !== 'running' || e.removing || this.closed)) return;
    const id = e.container.id;
    const next = e.attempt + 1;
    // Keep the previous attempt (for its logs); older ones go.
    if (next >= 2) await this.opts.runtime.delete(attemptId(id, next - 2), { force: true }).catch(() => undefined);
    e.attempt = next;
    const status = e.container.status!;
    e.container.status = { ...status, restartCount: status.restartCount + (manual ? 0 : 1) };
    try {
      if (e.remount) {
        // The overlay went with the host restart; the container starts again from its image.
        await this.opts.snapshots.removeContainer(id);
        await this.opts.snapshots.mountContainer(id, e.chainId);
        e.remount = false;
      }
      const info = await this.opts.runtime.create(attemptId(id, next), join(e.dir, 'bundle'), { start: true });
      e.container.status = {
        ...e.container.status,
        state: ContainerState.CONTAINER_STATE_RUNNING,
        pid: info.pid ?? 0,
        startedUnixMs: Date.parse(info.startedAt ?? '') || Date.now(),
        finishedUnixMs: 0,
        message: '',
        health: e.container.spec?.health ? 'starting' : '',
      };
      this.log.info('container restarted', { containerId: id, attempt: next, restartCount: e.container.status.restartCount });
      await this.changed(e);
      this.follow(e);
    } catch (err) {
      this.log.warn('container restart failed', { containerId: id, attempt: next, reason: messageOf(err) });
      await this.onExit(e, { exitCode: 128, signal: 0, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'StartError', error: messageOf(err) });
      if (manual) throw err;
    }
  }

  /**
   * Starts a container created with wait_for_attach (its client is attached
   * now); a container that already runs is left as it is.
   */
  async startWaiting(id: string): Promise<Container> {
    const e = this.entries.get(id);
    if (!e) throw new ContainerUnknownError(id);
    return this.locked(e, async () => {
      if (e.removing) throw new ContainerUnknownError(id);
      const rid = attemptId(id, e.attempt);
      if ((await this.opts.runtime.state(rid)).status === 'created') {
        const info = await this.opts.runtime.start(rid);
        this.log.info('container started on attach', { containerId: id });
        // A quick process may have exited (and been recorded by the exit watcher) already.
        if (e.container.status?.state === ContainerState.CONTAINER_STATE_CREATED) {
          e.container.status = {
            ...e.container.status, state: ContainerState.CONTAINER_STATE_RUNNING, pid: info.pid ?? 0, startedUnixMs: Date.parse(info.startedAt ?? '') || Date.now(),
          };
          await this.changed(e);
        }
      }
      return clone(e.container);
    });
  }

  /**
   * Connection draining, before a running replica with ports is stopped or
   * removed (never on its own exit): it is marked draining and reported at
   * once, so every node takes it out of its service tables, and keeps running
   * for its drain delay (spec.drain_seconds; unset: 3 s with ports, 0
   * without; one-off containers never drain) so that connections already
   * made finish. Ends early when the container exits meanwhile. Called with
   * the container's lock held.
   */
  private async drainFirst(e: Entry): Promise<void> {
    const c = e.container;
    const ms = c.workload === '' || !c.spec ? 0 : drainSecondsFor(c.spec) * 1000;
    if (ms <= 0 || c.status?.state !== ContainerState.CONTAINER_STATE_RUNNING) return;
    if (!c.status.draining) {
      c.status = { ...c.status, draining: true };
      this.log.info('container draining', { containerId: c.id, workload: c.workload, drainMs: ms });
      await this.changed(e);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); }), e.exited ?? Promise.resolve()]);
    clearTimeout(timer);
  }

  /** Stops a container for good (no restarts): a running replica with ports drains first (drainFirst), then SIGTERM, SIGKILL after `graceMs`. */
  async stop(id: string, opts: { graceMs?: number } = {}): Promise<Container> {
    const e = this.entries.get(id);
    if (!e) throw new ContainerUnknownError(id);
    e.desired = 'stopped';
    if (e.restartTimer) {
      clearTimeout(e.restartTimer);
      e.restartTimer = undefined;
    }
    return this.locked(e, async () => {
      if (e.removing) throw new ContainerUnknownError(id);
      if (e.container.status?.state === ContainerState.CONTAINER_STATE_RUNNING || e.container.status?.state === ContainerState.CONTAINER_STATE_CREATED) {
        await this.drainFirst(e);
        await this.opts.runtime.stop(attemptId(id, e.attempt), { timeoutMs: opts.graceMs ?? this.opts.defaultGraceMs ?? 10_000 });
        await e.exited;
      } else {
        await this.changed(e);
      }
      return clone(e.container);
    });
  }

  /** Deletes a container; a running one only with `force` (a replica with ports drains first, then it is killed). */
  async remove(id: string, opts: { force?: boolean } = {}): Promise<void> {
    const e = this.entries.get(id);
    if (!e) throw new ContainerUnknownError(id);
    if (!opts.force && e.container.status?.state === ContainerState.CONTAINER_STATE_RUNNING) {
      throw new ContainerConflictError(id, `failed to remove container "${id}": it is running; stop it first or use force`);
    }
    e.desired = 'stopped';
    if (e.restartTimer) clearTimeout(e.restartTimer);
    await this.locked(e, async () => {
      if (e.removing) return;
      if (e.container.status?.state === ContainerState.CONTAINER_STATE_RUNNING || e.container.status?.state === ContainerState.CONTAINER_STATE_CREATED) {
        await this.drainFirst(e);
        await this.opts.runtime.kill(attemptId(id, e.attempt), 'SIGKILL').catch(() => undefined);
        await e.exited;
      }
      await this.undo(e);
      this.log.info('container removed', { containerId: id });
    });
  }

  private entry(id: string): Entry {
    const e = this.entries.get(id);
    if (!e || e.removing) throw new ContainerUnknownError(id);
    return e;
  }

  /**
   * Starts an exited (or stopped) container again: a new attempt over the same
   * root filesystem, bundle, id and name; its restart policy applies again. A
   * created container is started; a running one is left as it is.
   */
  async start(id: string): Promise<Container> {
    const e = this.entry(id);
    return this.locked(e, async () => {
      if (e.removing) throw new ContainerUnknownError(id);
      const state = e.container.status?.state;
      if (state === ContainerState.CONTAINER_STATE_RUNNING) return clone(e.container);
      if (state === ContainerState.CONTAINER_STATE_CREATED) {
        // Created but not started (a terminal container waiting for its client): start it now.
        const rid = attemptId(id, e.attempt);
        if ((await this.opts.runtime.state(rid)).status === 'created') {
          const info = await this.opts.runtime.start(rid);
          e.container.status = { ...e.container.status!, state: ContainerState.CONTAINER_STATE_RUNNING, pid: info.pid ?? 0, startedUnixMs: Date.parse(info.startedAt ?? '') || Date.now() };
          await this.changed(e);
        }
        return clone(e.container);
      }
      if (state !== ContainerState.CONTAINER_STATE_EXITED) {
        throw new ContainerConflictError(id, `failed to start container "${e.container.name}": it is still being created`);
      }
      if (e.restartTimer) clearTimeout(e.restartTimer);
      e.restartTimer = undefined;
      e.desired = 'running';
      e.streak = 0;
      await this.restart(e, true);
      return clone(e.container);
    });
  }

  /** Sends a signal (name or number) to the container's main process. */
  async kill(id: string, signal: string): Promise<Container> {
    const sig = signalNumber(signal === '' ? 'SIGKILL' : signal);
    const e = this.entry(id);
    const state = e.container.status?.state;
    if (state !== ContainerState.CONTAINER_STATE_RUNNING) {
      throw new ContainerConflictError(id, `failed to kill container "${e.container.name}": it is not running`);
    }
    await this.opts.runtime.kill(attemptId(id, e.attempt), sig);
    this.log.info('container signalled', { containerId: id, signal: sig });
    return clone(e.container);
  }

  /** Resolves once the container is not running (at once when it has exited). */
  async wait(id: string, opts: { signal?: AbortSignal } = {}): Promise<WaitResult> {
    const e = this.entry(id);
    const result = (c: Container): WaitResult => ({ id, name: c.name, exitCode: c.status?.exitCode ?? 0, reason: c.status?.reason ?? '' });
    if (e.container.status?.state === ContainerState.CONTAINER_STATE_EXITED && !e.restartTimer) return result(e.container);
    return new Promise<WaitResult>((resolve, reject) => {
      const done = (fn: () => void): void => {
        stop();
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const stop = this.watch((ev) => {
        if (ev.removed === id) done(() => resolve(result(e.container)));
        else if (ev.container?.id === id && ev.container.status?.state === ContainerState.CONTAINER_STATE_EXITED) done(() => resolve(result(ev.container!)));
      });
      const onAbort = (): void => done(() => reject(new CancelledError(`waiting for container "${id}" was cancelled`)));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) onAbort();
    });
  }

  /** Renames a container (its hostname stays); the controller checks the name is unused in the cluster. */
  async rename(id: string, name: string): Promise<Container> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/.test(name)) {
      throw new InvalidArgumentError(`name: expected up to 253 letters, digits, "_", "." or "-" starting with a letter or digit, got "${name}"`, { field: 'name' });
    }
    const e = this.entry(id);
    return this.locked(e, async () => {
      const before = e.container.name;
      e.container.name = name;
      await this.changed(e);
      this.log.info('container renamed', { containerId: id, name, previous: before });
      return clone(e.container);
    });
  }

  /** The container plus what only this node knows (paths, limits in force). */
  async details(id: string): Promise<ContainerDetails> {
    const e = this.entry(id);
    const rid = attemptId(id, e.attempt);
    const info = await this.opts.runtime.state(rid).catch(() => undefined);
    const r = e.container.spec?.resources;
    return {
      container: clone(e.container),
      logPath: info?.logPath ?? '',
      rootfs: info?.rootfs ?? '',
      bundle: join(e.dir, 'bundle'),
      limits: { cpuMillis: r?.cpuMillis ?? 0, memoryBytes: r?.memoryBytes ?? 0, pids: r?.pids ?? 0 },
      runtimeId: info ? rid : '',
    };
  }

  /** The processes inside a running container. */
  async top(id: string): Promise<ContainerProcesses> {
    const e = this.entry(id);
    const pid = e.container.status?.pid ?? 0;
    if (e.container.status?.state !== ContainerState.CONTAINER_STATE_RUNNING || pid <= 0) {
      throw new ContainerConflictError(id, `failed to list the processes of container "${e.container.name}": it is not running`);
    }
    const info = await this.opts.runtime.state(attemptId(id, e.attempt));
    return { processes: await listProcesses(pid, info.rootfs) };
  }

  /**
   * Changes limits (fields > 0 of `r`): live in the cgroups of a running
   * container, and in its spec and bundle for later attempts. A failed live
   * change leaves everything as it was.
   */
  async update(id: string, r: { memoryBytes: number; cpuMillis: number; pids: number }): Promise<Container> {
    const e = this.entry(id);
    return this.locked(e, async () => {
      if (e.removing) throw new ContainerUnknownError(id);
      const running = e.container.status?.state === ContainerState.CONTAINER_STATE_RUNNING || e.container.status?.state === ContainerState.CONTAINER_STATE_CREATED;
      if (running) await this.opts.runtime.update(attemptId(id, e.attempt), runtimeResources(r));
      await saveBundleResources(join(e.dir, 'bundle'), r);
      const spec = e.container.spec!;
      const old = spec.resources ?? { cpuMillis: 0, memoryBytes: 0, pids: 0 };
      spec.resources = {
        cpuMillis: r.cpuMillis > 0 ? r.cpuMillis : old.cpuMillis,
        memoryBytes: r.memoryBytes > 0 ? r.memoryBytes : old.memoryBytes,
        pids: r.pids > 0 ? r.pids : old.pids,
      };
      await this.changed(e);
      this.log.info('container limits updated', { containerId: id, ...spec.resources, live: running });
      return clone(e.container);
    });
  }

  /** One sample of resource use per container (`ids` empty: every container on this node; unknown ids are left out). */
  async stats(ids: readonly string[]): Promise<ContainerStats[]> {
    // An id removed meanwhile is left out rather than failing the samples of the others.
    const targets = (ids.length > 0 ? ids.map((id) => this.entries.get(id)) : [...this.entries.values()]).filter((e): e is Entry => e !== undefined && !e.removing);
    const host = totalmem();
    return Promise.all(targets.map(async (e): Promise<ContainerStats> => {
      const c = e.container;
      const state = c.status?.state === ContainerState.CONTAINER_STATE_RUNNING ? 'running' : c.status?.state === ContainerState.CONTAINER_STATE_EXITED ? 'exited'
        : c.status?.state === ContainerState.CONTAINER_STATE_CREATED ? 'created' : 'pending';
      const base: ContainerStats = {
        id: c.id, name: c.name, node: this.opts.node, cpuUsageNs: 0, readUnixMs: Date.now(), cpuPercent: 0,
        memoryUsageBytes: 0, memoryLimitBytes: host, pids: 0, pidsLimit: 0, state,
      };
      if (state !== 'running') return base;
      try {
        const s = await this.opts.runtime.stats(attemptId(c.id, e.attempt));
        return {
          ...base, cpuUsageNs: s.cpuUsageNs, readUnixMs: s.readAt, memoryUsageBytes: s.memoryUsageBytes,
          memoryLimitBytes: s.memoryLimitBytes !== undefined ? Math.min(s.memoryLimitBytes, host) : host, pids: s.pidsCurrent, pidsLimit: s.pidsMax ?? 0,
        };
      } catch (err) {
        this.log.debug('failed to read container stats', { containerId: c.id, reason: messageOf(err) });
        return base;
      }
    }));
  }

  /** Host path of the container's root filesystem and its mount destinations (for cp). */
  async rootfsOf(id: string): Promise<{ rootfs: string; name: string; mounts: string[] }> {
    const e = this.entry(id);
    const info = await this.opts.runtime.state(attemptId(id, e.attempt));
    return { rootfs: info.rootfs, name: e.container.name, mounts: (e.container.spec?.mounts ?? []).map((m) => m.destination) };
  }

  /**
   * Re-adopts the containers of an earlier agent process from their records
   * and the runtime's state: running attempts are watched again, exits that
   * happened meanwhile are recorded (and restarted per policy), half-created
   * containers and attempts or snapshots without a record are deleted.
   */
  async recover(): Promise<void> {
    await mkdir(this.base, { recursive: true, mode: 0o700 });
    const byAttempt = new Map((await this.opts.runtime.list()).map((c) => [c.id, c]));
    for (const name of await readdir(this.base)) {
      const dir = join(this.base, name);
      let rec: PersistedRecord;
      try {
        rec = JSON.parse(await readFile(join(dir, 'record.json'), 'utf8')) as PersistedRecord;
        if (rec.version !== 1) throw new Error(`unknown record version ${String(rec.version)}`);
      } catch (err) {
        this.log.warn('ignoring unreadable container record; deleting it', { dir, reason: messageOf(err) });
        await this.opts.snapshots.removeContainer(name).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const container = Container.fromJSON(rec.container);
      if (container.id !== name) {
        this.log.warn('container record does not match its directory; deleting it', { dir, containerId: container.id });
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const e: Entry = {
        container, attempt: rec.attempt, desired: rec.desired, streak: rec.streak, pending: rec.pending === true, chainId: rec.chainId ?? '', dir, lock: Promise.resolve(),
      };
      this.entries.set(name, e);
      if (e.pending) {
        this.log.info('undoing a container whose start was interrupted', { containerId: name });
        await this.undo(e);
        continue;
      }
      const info = byAttempt.get(attemptId(name, e.attempt));
      const state = container.status?.state;
      if (!info && e.chainId !== '') e.remount = true;
      if (info && (info.status === 'running' || info.status === 'created' || info.status === 'creating')) {
        this.log.info('re-adopted a running container', { containerId: name, attempt: e.attempt, pid: info.pid });
        e.container.status = { ...e.container.status!, state: info.status === 'running' ? ContainerState.CONTAINER_STATE_RUNNING : ContainerState.CONTAINER_STATE_CREATED, pid: info.pid ?? 0 };
        await this.changed(e);
        this.follow(e);
      } else if (state === ContainerState.CONTAINER_STATE_RUNNING) {
        const exit: ExitInfo = info?.exit ?? {
          exitCode: 128, signal: 0, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'Unknown',
          error: 'the runtime has no state for this container (was the host restarted?)',
        };
        this.log.info('learned an exit that happened while the agent was down', { containerId: name, exitCode: exit.exitCode });
        await this.onExit(e, exit);
      } else if (state === ContainerState.CONTAINER_STATE_EXITED && e.desired === 'running' && shouldRestart(container.spec?.restart?.policy ?? '', container.status?.exitCode ?? 0, container.status?.reason === 'OOMKilled')) {
        // A restart was pending when the agent stopped.
        this.scheduleRestart(e, Math.min(this.opts.initialBackoffMs ?? INITIAL_BACKOFF_MS, 1000));
      }
    }
    // Attempts and snapshots nobody owns (e.g. a crash between creating them and writing the record).
    for (const [rid, info] of byAttempt) {
      const m = ATTEMPT_ID.exec(rid);
      if (m && m[1] !== undefined && !this.entries.has(m[1]) && info.annotations[OWNER_ANNOTATION] === this.opts.root) {
        this.log.warn('deleting a runtime container without a record', { runtimeId: rid });
        await this.opts.runtime.delete(rid, { force: true }).catch((err: unknown) => this.log.warn('failed to delete runtime container', { runtimeId: rid, reason: messageOf(err) }));
      }
    }
    for (const s of await this.opts.snapshots.listContainers()) {
      if (!this.entries.has(s.id)) {
        this.log.warn('deleting a container rootfs without a record', { containerId: s.id });
        await this.opts.snapshots.removeContainer(s.id).catch((err: unknown) => this.log.warn('failed to remove container rootfs', { containerId: s.id, reason: messageOf(err) }));
      }
    }
  }

  /**
   * Stops watching (timers, health checks, exit watchers) without touching the
   * containers: they keep running and the next agent process re-adopts them.
   */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) this.stopWatching(e);
  }
}
