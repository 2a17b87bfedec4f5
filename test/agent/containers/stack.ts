/**
 * An in-process agent node for tests: the real image stack, runtime,
 * snapshots and container manager over temp roots, the AgentService on a gRPC
 * server at port 0 with a generated client, and optional NATS reports.
 * `restart()` drops the manager without touching containers (what an agent
 * crash does) and builds a new one over the same roots; `destroy()` removes
 * every container, mount, cgroup and directory even when a test failed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { silentLogger } from '../../../lib/index.js';
import { AgentServiceClient } from '../../../proto/gen/berth/v1/agent.js';
import type { PullProgress } from '../../../proto/gen/berth/v1/types.js';
import { agentServiceHandlers, startAgentServer, type AgentServer } from '../../../agent/api/index.js';
import { ContainerManager, type ContainerNetwork } from '../../../agent/containers/index.js';
import { LocalContentStore } from '../../../agent/content/index.js';
import { ImagePuller, ImageRecordStore, ImageService, RegistryClient } from '../../../agent/images/index.js';
import { detectCgroups, Runtime, writeBundle } from '../../../agent/runtime/index.js';
import { OverlaySnapshotter } from '../../../agent/snapshots/index.js';
import { ContainerReporter, PullProgressThrottle, StatusPublisher } from '../../../agent/status/index.js';
import { HelperNodeMaker, LinuxOverlayMounter } from '../../../agent/sys/index.js';
import { LinuxSys } from '../../../agent/sys/linux.js';

export interface StackOptions {
  node?: string;
  nats?: string;
  defaultRegistry?: string;
  network?: ContainerNetwork;
}

export class AgentStack {
  dir = '';
  readonly node: string;
  readonly sys = new LinuxSys();
  runtime!: Runtime;
  client!: RegistryClient;
  snapshotter!: OverlaySnapshotter;
  images!: ImageService;
  manager!: ContainerManager;
  server!: AgentServer;
  api!: AgentServiceClient;
  publisher: StatusPublisher | undefined;
  reporter: ContainerReporter | undefined;

  constructor(private readonly opts: StackOptions = {}) {
    this.node = opts.node ?? 'node-test';
  }

  get root(): string {
    return join(this.dir, 'data');
  }

  get runtimeRoot(): string {
    return join(this.dir, 'run', 'runtime');
  }

  async start(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), 'berth-agentw-'));
    if (this.opts.nats) this.publisher = await StatusPublisher.connect({ servers: [this.opts.nats], node: this.node, logger: silentLogger() });
    await this.build();
    return this;
  }

  private async build(): Promise<void> {
    const logger = silentLogger();
    this.runtime = new Runtime({ sys: this.sys, cgroups: await detectCgroups(this.sys), root: this.runtimeRoot, logger });
    this.client = new RegistryClient({ backoffMs: 20 });
    const content = new LocalContentStore(this.root);
    this.snapshotter = new OverlaySnapshotter({ root: this.root, mounter: new LinuxOverlayMounter() });
    const records = new ImageRecordStore(this.root);
    const puller = new ImagePuller({
      client: this.client, content, snapshotter: this.snapshotter, records, logger, defaultRegistry: this.opts.defaultRegistry,
      nodeMaker: new HelperNodeMaker({ helperPath: this.sys.helperPath }),
    });
    this.images = new ImageService({ puller, records, content, snapshotter: this.snapshotter, client: this.client, defaultRegistry: this.opts.defaultRegistry });
    const pub = this.publisher;
    const pullProgressSink = pub
      ? (): ((p: PullProgress) => void) => {
        const t = new PullProgressThrottle((p) => pub.publishPullProgress(p));
        return (p) => t.push(p);
      }
      : undefined;
    this.manager = new ContainerManager({
      node: this.node, root: this.root, runtime: this.runtime, images: this.images, snapshots: this.snapshotter, writeBundle, logger,
      ...(pullProgressSink ? { pullProgressSink } : {}),
      ...(this.opts.network ? { network: this.opts.network } : {}),
    });
    await this.manager.recover();
    if (pub) {
      this.reporter = new ContainerReporter(this.node, this.manager, pub);
      this.reporter.start();
    }
    this.server = await startAgentServer({
      listen: '127.0.0.1:0', logger,
      implementation: agentServiceHandlers({ node: this.node, containers: this.manager, images: this.images, runtime: this.runtime, logger, ...(pullProgressSink ? { pullProgressSink } : {}) }),
    });
    this.api = new AgentServiceClient(this.server.address, credentials.createInsecure());
  }

  private async teardownApi(): Promise<void> {
    this.reporter?.stop();
    this.reporter = undefined;
    this.manager.close();
    this.api.close();
    await this.server.close(500);
    this.client.close();
  }

  /** What an agent restart does: the old manager stops watching (containers keep running), a new one recovers. */
  async restart(between?: () => Promise<void>): Promise<void> {
    await this.teardownApi();
    if (between) await between();
    await this.build();
  }

  async destroy(): Promise<void> {
    if (!this.dir) return;
    const errors: unknown[] = [];
    try {
      if (this.manager) {
        for (const c of this.manager.list()) await this.manager.remove(c.id, { force: true }).catch((e: unknown) => errors.push(e));
        await this.teardownApi().catch((e: unknown) => errors.push(e));
      }
      // Anything the manager did not know about (a test that failed half-way).
      if (this.runtime) for (const c of await this.runtime.list().catch(() => [])) await this.runtime.delete(c.id, { force: true }).catch((e: unknown) => errors.push(e));
      if (this.snapshotter) for (const s of await this.snapshotter.listContainers().catch(() => [])) await this.snapshotter.removeContainer(s.id).catch((e: unknown) => errors.push(e));
      await this.publisher?.close();
    } finally {
      this.sys.close();
      await rm(this.dir, { recursive: true, force: true });
      this.dir = '';
    }
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.map((e) => String(e)).join('; ')}`);
  }
}

/** A 64-hex container id unique to this test run. */
export function newId(): string {
  return Array.from({ length: 64 }, () => '0123456789abcdef'[Math.floor(Math.random() * 16)]).join('');
}

/** Waits until `check` returns a value other than undefined (polling), or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
