/**
 * A fake agent for controller tests: a real grpc-js server implementing
 * AgentService that records every call and keeps containers in memory (they
 * "run" at once), plus real NATS traffic: heartbeats, full container reports
 * and a delta on every change. It registers through the controller's real
 * NodeService. pause() stops all publishing (the node looks dead, as after
 * kill -9 or a cut link) while keeping its containers; resume() comes back
 * with them. RunContainer of an image whose reference contains "missing"
 * fails as a failed pull would; one containing "slow" is CREATED for 1 s
 * before it runs. With `drainMs` set, StopContainer of a running workload
 * replica with ports first reports it draining and answers only after
 * `drainMs` (what a real agent does for connection draining).
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { connect, type NatsConnection } from 'nats';
import {
  AgentServiceService, type AgentServiceServer, type RunContainerRequest,
} from '../../../proto/gen/berth/v1/agent.js';
import { NodeServiceClient } from '../../../proto/gen/berth/v1/controller.js';
import { ContainerReport, Heartbeat } from '../../../proto/gen/berth/v1/status.js';
import { ContainerState, NodeSpec, type Container } from '../../../proto/gen/berth/v1/types.js';
import { call } from '../helpers.js';

export interface AgentCall {
  method: 'RunContainer' | 'StopContainer' | 'RemoveContainer' | 'ListContainers' | 'Logs' | 'StopContainerDone';
  id: string;
  name?: string;
}

export interface FakeAgentOptions {
  node: string;
  natsUrl: string;
  controller: string;
  heartbeatMs?: number;
  fullReportMs?: number;
}

function running(req: RunContainerRequest, node: string): Container {
  return {
    id: req.id, name: req.name, node, workload: req.workload, revision: req.revision, replica: req.replica,
    ...(req.spec ? { spec: req.spec } : {}),
    status: { state: ContainerState.CONTAINER_STATE_RUNNING, exitCode: 0, reason: '', message: '', startedUnixMs: Date.now(), finishedUnixMs: 0, restartCount: 0, health: '', pid: 1, ipAddress: '', draining: false },
    createdUnixMs: Date.now(), desiredState: 0, updatedUnixMs: 0,
  };
}

export class FakeAgent {
  readonly calls: AgentCall[] = [];
  readonly containers = new Map<string, Container>();
  address = '';
  private server: grpc.Server | undefined;
  private nc: NatsConnection | undefined;
  private timers: NodeJS.Timeout[] = [];
  private seq = 0;
  private readonly instance = randomBytes(8).toString('hex');
  paused = false;
  /** Connection draining delay of StopContainer for replicas with ports (0: none). */
  drainMs = 0;

  constructor(readonly opts: FakeAgentOptions) {}

  private impl(): AgentServiceServer {
    const node = this.opts.node;
    const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>): void => cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in the fake' } as grpc.ServiceError);
    return {
      runContainer: (c, cb) => {
        this.calls.push({ method: 'RunContainer', id: c.request.id, name: c.request.name });
        if (c.request.spec?.image.includes('missing')) {
          cb({ code: grpc.status.FAILED_PRECONDITION, details: `failed to pull "${c.request.spec.image}": manifest unknown` } as grpc.ServiceError);
          return;
        }
        let ctr = this.containers.get(c.request.id);
        if (!ctr) {
          ctr = running(c.request, node);
          this.containers.set(ctr.id, ctr);
          if (c.request.spec?.image.includes('slow')) {
            // Starting for a while before it runs (and counts as ready).
            const started = ctr;
            started.status = { ...(started.status as NonNullable<Container['status']>), state: ContainerState.CONTAINER_STATE_CREATED };
            this.timers.push(setTimeout(() => {
              if (this.containers.get(started.id) !== started) return;
              started.status = { ...(started.status as NonNullable<Container['status']>), state: ContainerState.CONTAINER_STATE_RUNNING };
              this.publishDelta([started], []);
            }, 1000));
          }
          this.publishDelta([ctr], []);
        }
        cb(null, ctr);
      },
      stopContainer: (c, cb) => {
        this.calls.push({ method: 'StopContainer', id: c.request.id });
        const ctr = this.containers.get(c.request.id);
        if (!ctr) return cb({ code: grpc.status.NOT_FOUND, details: `container "${c.request.id}" not found` } as grpc.ServiceError);
        const stop = (): void => {
          ctr.status = { ...(ctr.status as NonNullable<Container['status']>), state: ContainerState.CONTAINER_STATE_EXITED, exitCode: 143, finishedUnixMs: Date.now(), draining: false };
          this.publishDelta([ctr], []);
          this.calls.push({ method: 'StopContainerDone', id: c.request.id });
          cb(null, ctr);
        };
        if (this.drainMs > 0 && ctr.workload !== '' && (ctr.spec?.ports.length ?? 0) > 0 && ctr.status?.state === ContainerState.CONTAINER_STATE_RUNNING) {
          ctr.status = { ...ctr.status, draining: true };
          this.publishDelta([ctr], []);
          this.timers.push(setTimeout(stop, this.drainMs));
          return;
        }
        stop();
      },
      removeContainer: (c, cb) => {
        this.calls.push({ method: 'RemoveContainer', id: c.request.id });
        if (!this.containers.delete(c.request.id)) return cb({ code: grpc.status.NOT_FOUND, details: `container "${c.request.id}" not found` } as grpc.ServiceError);
        this.publishDelta([], [c.request.id]);
        cb(null, {});
      },
      listContainers: (_c, cb) => {
        this.calls.push({ method: 'ListContainers', id: '' });
        cb(null, { containers: [...this.containers.values()] });
      },
      pullImage: (c) => {
        c.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not in the fake' });
      },
      listImages: unimplemented,
      removeImages: unimplemented,
      pruneImages: unimplemented,
      searchImages: unimplemented,
      startContainer: unimplemented,
      killContainer: unimplemented,
      waitContainer: unimplemented,
      renameContainer: unimplemented,
      inspectContainer: unimplemented,
      topContainer: unimplemented,
      updateContainer: unimplemented,
      containerStats: unimplemented,
      copyFromContainer: (c) => {
        c.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not in the fake' });
      },
      copyToContainer: unimplemented,
      logs: (c) => {
        this.calls.push({ method: 'Logs', id: c.request.id });
        const ctr = this.containers.get(c.request.id);
        if (!ctr) {
          c.emit('error', { code: grpc.status.NOT_FOUND, details: `container "${c.request.id}" not found` });
          return;
        }
        c.write({ unixMs: Date.now(), stream: 'stdout', data: Buffer.from(`hello from ${ctr.name} on ${node}\n`), source: '' });
        c.end();
      },
    };
  }

  async start(): Promise<void> {
    this.server = new grpc.Server();
    this.server.addService(AgentServiceService, this.impl());
    const port = await new Promise<number>((resolve, reject) => {
      this.server?.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.address = `127.0.0.1:${port}`;
    this.nc = await connect({ servers: this.opts.natsUrl });
    const client = new NodeServiceClient(this.opts.controller, grpc.credentials.createInsecure());
    try {
      await call(client, client.register, {
        node: { ...NodeSpec.decode(new Uint8Array()), name: this.opts.node, address: this.address, capacity: { cpuMillis: 4000, memoryBytes: 8 * 1024 ** 3, pids: 10000 }, labels: {} },
      });
    } finally {
      client.close();
    }
    this.timers.push(setInterval(() => this.heartbeat(), this.opts.heartbeatMs ?? 500));
    this.timers.push(setInterval(() => this.publishFull(), this.opts.fullReportMs ?? 2000));
    this.heartbeat();
    this.publishFull();
  }

  private publish(subject: string, data: Uint8Array): void {
    if (this.paused || !this.nc) return;
    this.nc.publish(subject, data);
  }

  heartbeat(): void {
    this.publish(`berth.v1.node.${this.opts.node}.heartbeat`, Heartbeat.encode({ node: this.opts.node, unixMs: Date.now(), seq: ++this.seq, instance: this.instance, containers: this.containers.size }).finish());
  }

  publishFull(): void {
    this.publish(`berth.v1.node.${this.opts.node}.containers`, ContainerReport.encode({ node: this.opts.node, unixMs: Date.now(), full: true, containers: [...this.containers.values()], removed: [] }).finish());
  }

  private publishDelta(containers: Container[], removed: string[]): void {
    this.publish(`berth.v1.node.${this.opts.node}.containers`, ContainerReport.encode({ node: this.opts.node, unixMs: Date.now(), full: false, containers, removed }).finish());
  }

  /** Goes silent: no heartbeats, no reports (containers stay). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.heartbeat();
    this.publishFull();
  }

  runningCount(): number {
    return [...this.containers.values()].filter((c) => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING).length;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    await this.nc?.close().catch(() => undefined);
    this.nc = undefined;
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
  }
}
