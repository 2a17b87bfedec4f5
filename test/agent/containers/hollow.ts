/**
 * Hollow parts for scale tests and benchmarks: the real ContainerManager, API
 * and reporters run over a runtime whose containers "start" at once and run
 * until they are stopped or killed, an image source that has every image, and
 * a rootfs provider that mounts nothing. No process, mount or cgroup is made.
 *
 *   const manager = new ContainerManager({ node, root, logger, ...hollowParts() });
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { CancelledError, InternalError } from '../../../lib/index.js';
import type { BundleWriter, ImageSource, RootfsProvider } from '../../../agent/containers/index.js';
import type { ImageRecord } from '../../../agent/images/index.js';
import {
  ContainerNotFoundError, signalNumber,
  type CgroupStats, type ContainerInfo, type ContainerRuntime, type ExitInfo, type LogEntry,
} from '../../../agent/runtime/index.js';
import type { ExecResult } from '../../../agent/sys/index.js';
import type { ContainerSnapshot } from '../../../agent/snapshots/index.js';

interface HollowContainer {
  info: ContainerInfo;
  exited: Promise<ExitInfo>;
  exit(e: ExitInfo): void;
}

export class HollowRuntime implements ContainerRuntime {
  private readonly containers = new Map<string, HollowContainer>();

  private get(id: string): HollowContainer {
    const c = this.containers.get(id);
    if (!c) throw new ContainerNotFoundError(id);
    return c;
  }

  async create(id: string, bundle: string): Promise<ContainerInfo> {
    if (this.containers.has(id)) throw new InternalError(`hollow container "${id}" exists`);
    let exit!: (e: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((r) => (exit = r));
    const now = new Date().toISOString();
    const info: ContainerInfo = {
      id, status: 'running', pid: 0, bundle, rootfs: '', createdAt: now, startedAt: now,
      annotations: {}, stateDir: '', logPath: '', resources: {},
    };
    const c: HollowContainer = {
      info, exited,
      exit: (e) => {
        if (c.info.status === 'stopped') return;
        c.info = { ...c.info, status: 'stopped', exit: e };
        exit(e);
      },
    };
    this.containers.set(id, c);
    return { ...info };
  }

  async start(id: string): Promise<ContainerInfo> {
    return { ...this.get(id).info };
  }

  async state(id: string): Promise<ContainerInfo> {
    return { ...this.get(id).info };
  }

  async list(): Promise<ContainerInfo[]> {
    return [...this.containers.values()].map((c) => ({ ...c.info }));
  }

  async kill(id: string, signal: string | number = 'SIGTERM'): Promise<void> {
    const n = signalNumber(signal);
    this.get(id).exit({ exitCode: 128 + n, signal: n, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'Signaled' });
  }

  async wait(id: string, options: { signal?: AbortSignal } = {}): Promise<ExitInfo> {
    const c = this.get(id);
    if (!options.signal) return c.exited;
    const signal = options.signal;
    return new Promise<ExitInfo>((resolve, reject) => {
      const onAbort = (): void => reject(new CancelledError('wait cancelled'));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      void c.exited.then((e) => {
        signal.removeEventListener('abort', onAbort);
        resolve(e);
      });
    });
  }

  async stop(id: string): Promise<ExitInfo> {
    await this.kill(id, 'SIGTERM');
    return this.get(id).exited;
  }

  async delete(id: string): Promise<void> {
    const c = this.get(id);
    c.exit({ exitCode: 137, signal: 9, oomKilled: false, finishedAt: new Date().toISOString(), reason: 'Signaled' });
    this.containers.delete(id);
  }

  async update(id: string): Promise<ContainerInfo> {
    return { ...this.get(id).info };
  }

  async stats(id: string): Promise<CgroupStats & { readAt: number }> {
    this.get(id);
    return { cpuUsageNs: 0, memoryUsageBytes: 0, memoryLimitBytes: undefined, pidsCurrent: 1, pidsMax: undefined, oomKills: 0, readAt: Date.now() };
  }

  async *logs(id: string): AsyncGenerator<LogEntry> {
    this.get(id);
    yield* [];
  }

  async exec(id: string): Promise<ExecResult> {
    this.get(id);
    return { exitCode: 0, stdout: '', stderr: '' };
  }

  async attach(id: string): Promise<Socket> {
    throw new InternalError(`hollow container "${id}" has no terminal`);
  }

  async resize(id: string): Promise<void> {
    this.get(id);
  }
}

function hollowImage(ref: string): ImageRecord {
  const chainId = `sha256:${createHash('sha256').update(ref).digest('hex')}`;
  return {
    reference: ref, registry: 'hollow', repository: ref, digest: chainId, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: chainId, architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, layers: [], chainId, size: 0, created: '', pulledAt: new Date().toISOString(),
  };
}

export const hollowImages: ImageSource = {
  get: async (ref) => hollowImage(ref),
  pull: async (ref) => hollowImage(ref),
};

export const hollowRootfs: RootfsProvider = {
  mountContainer: async (id: string, chainId: string): Promise<ContainerSnapshot> => ({ id, chainId, rootfs: '/nonexistent', upperdir: '' }),
  removeContainer: async () => undefined,
  listContainers: async () => [],
};

export const hollowBundle: BundleWriter = async () => undefined;

/** The parts a ContainerManager needs, hollow. */
export function hollowParts(): { runtime: HollowRuntime; images: ImageSource; snapshots: RootfsProvider; writeBundle: BundleWriter } {
  return { runtime: new HollowRuntime(), images: hollowImages, snapshots: hollowRootfs, writeBundle: hollowBundle };
}
