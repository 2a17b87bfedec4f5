/**
 * The agent's gRPC server (AgentService, called by the controller).
 *
 * Only the methods passed in `implementation` are served; grpc-js answers
 * every other AgentService method with UNIMPLEMENTED ("The server does not
 * implement the method ..."), so the controller gets a clear status instead of
 * a fake answer while the runtime and image work is not wired in yet.
 *
 * Lifecycle: `startAgentServer()` binds and starts; `close()` lets running
 * calls finish for up to `graceMs`, then cancels them.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { AgentServiceService, type AgentServiceServer } from '../../proto/gen/berth/v1/agent.js';
import { AgentStreamServiceService, type AgentStreamServiceServer } from '../../proto/gen/berth/v1/streams.js';
import { UnavailableError, type Logger } from '../../lib/index.js';
import { AgentVolumeServiceService, type AgentVolumeServiceServer } from '../../proto/gen/berth/v1/volumes.js';
import { AgentBatchServiceService, type AgentBatchServiceServer } from '../../proto/gen/berth/v1/batch.js';

export interface AgentServerOptions {
  /** host:port to listen on; port 0 picks a free one. */
  listen: string;
  logger: Logger;
  /** The AgentService methods this agent implements. */
  implementation?: Partial<AgentServiceServer>;
  /**
   * AgentStreamService (attach, exec): served from the start; its calls get
   * UNAVAILABLE until `streams.impl` is set (the agent is ready).
   */
  streams?: { impl?: AgentStreamServiceServer };
  /** AgentVolumeService (the node's volumes), when this agent serves it. */
  volumes?: AgentVolumeServiceServer;
  /**
   * AgentBatchService (many containers per call): served from the start; its
   * calls get UNAVAILABLE until `batch.impl` is set (the agent is ready).
   */
  batch?: { impl?: AgentBatchServiceServer };
}

export interface AgentServer {
  /** host:port actually bound (the port resolved when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  close(graceMs?: number): Promise<void>;
}

function hostOf(listen: string): string {
  const i = listen.lastIndexOf(':');
  return i < 0 ? listen : listen.slice(0, i);
}

export async function startAgentServer(options: AgentServerOptions): Promise<AgentServer> {
  const log = options.logger.child({ component: 'api' });
  const server = new Server();
  server.addService(AgentServiceService, (options.implementation ?? {}) as AgentServiceServer);
  const streams = options.streams;
  if (streams) {
    const later = (m: 'attach' | 'exec'): AgentStreamServiceServer['attach'] => (call) => {
      const impl = streams.impl;
      if (impl) impl[m](call);
      else call.emit('error', { code: 14, details: 'the agent is starting; try again' });
    };
    server.addService(AgentStreamServiceService, { attach: later('attach'), exec: later('exec') });
  }
  if (options.volumes) server.addService(AgentVolumeServiceService, options.volumes);
  const batch = options.batch;
  if (batch) {
    server.addService(AgentBatchServiceService, {
      runContainers: (call, callback) => {
        if (batch.impl) batch.impl.runContainers(call, callback);
        else callback({ code: 14, details: 'the agent is starting; try again' });
      },
    } satisfies AgentBatchServiceServer);
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(new UnavailableError(`failed to listen on "${options.listen}": ${err.message}`, { cause: err }));
      else resolve(p);
    });
  });
  const address = `${hostOf(options.listen)}:${port}`;
  log.info('agent API listening', { address, methods: Object.keys(options.implementation ?? {}) });
  let closed = false;
  return {
    address,
    port,
    async close(graceMs = 2000): Promise<void> {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}
