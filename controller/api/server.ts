/**
 * The controller's gRPC server: the only place in controller/ that imports
 * @grpc/grpc-js. It serves WorkloadService, NodeService and SystemService, and
 * ContainerService, EventService and ImageService when `containers` is given (otherwise its calls get UNIMPLEMENTED).
 */
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, messageOf, type Logger } from '../../lib/index.js';
import { StreamServiceService } from '../../proto/gen/berth/v1/streams.js';
import { ContainerServiceService, EventServiceService, ImageServiceService, NodeServiceService, SystemServiceService, WorkloadServiceService } from '../../proto/gen/berth/v1/controller.js';
import type { AgentDialer, AgentStreamDialer } from '../agents/index.js';
import type { Membership, ObservedState } from '../nodes/index.js';
import type { ClusterStore, ContainerRecordStore, EventStore, LeaderElection, NodeStore, WorkloadStore } from '../store/index.js';
import { eventService } from './events.js';
import { volumeService } from './volumes.js';
import { VolumeServiceService } from '../../proto/gen/berth/v1/volumes.js';
import type { VolumeManager } from '../volumes/index.js';
import { imageService } from './images.js';
import { containerService } from './containers.js';
import { streamService } from './streams.js';
import { nodeService } from './nodes.js';
import { systemService } from './system.js';
import { workloadService } from './workloads.js';
import { serviceService } from './services.js';
import { ServiceServiceService } from '../../proto/gen/berth/v1/services.js';
import type { ServiceDirectory } from '../services/index.js';
import type { PullWatchers } from '../nodes/index.js';

/** Largest request accepted (a 1 MiB workload file plus framing). */
export const MAX_RECEIVE_BYTES = 2 * 1024 * 1024;

export interface ApiServerOptions {
  /** HOST:PORT; port 0 picks a free port. */
  listen: string;
  store: WorkloadStore & ClusterStore & Partial<ContainerRecordStore>;
  /** Serves ContainerService and workload status from container records when given. */
  containers?: {
    store: ContainerRecordStore & EventStore & Pick<NodeStore, 'getNode' | 'setNodeCordoned' | 'drainNode' | 'listDrainingNodes'> & WorkloadStore;
    observed: ObservedState;
    agents: AgentDialer;
    /** Attach and exec streams to agents (StreamService is served when given). */
    streams?: AgentStreamDialer;
    /** Named volumes: VolumeService is served, and one-off containers may mount volumes, when given. */
    volumes?: VolumeManager;
    /** Pull progress from agents, relayed to `berth run` (a `run` start on StreamService) when given. */
    pulls?: PullWatchers;
  };
  election: Pick<LeaderElection, 'controllerId' | 'isLeader' | 'leaderId'>;
  membership: Membership;
  defaultRegistry?: string;
  /** The controller's --cluster-cidr (node container subnets come from it). */
  clusterCidr?: string;
  /** ServiceService (virtual IPs, endpoints) is served when given. */
  services?: { directory: ServiceDirectory; serviceCidr: string };
  logger: Logger;
}

export interface ApiServer {
  /** The bound HOST:PORT. */
  readonly address: string;
  /** Stops accepting calls, ends watches, waits up to graceMs for calls in flight, then cuts the rest. */
  stop(graceMs?: number): Promise<void>;
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const logger = opts.logger.child({ component: 'api' });
  const stopping = new AbortController();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
  });
  if (opts.containers) {
    server.addService(ContainerServiceService, containerService({
      ...opts.containers, membership: opts.membership, logger, stopping: stopping.signal,
      ...(opts.defaultRegistry ? { defaultRegistry: opts.defaultRegistry } : {}),
    }));
    server.addService(EventServiceService, eventService({ store: opts.containers.store, logger }));
    if (opts.containers.streams) {
      server.addService(StreamServiceService, streamService({
        ...opts.containers, streams: opts.containers.streams, membership: opts.membership, logger, stopping: stopping.signal,
        ...(opts.defaultRegistry ? { defaultRegistry: opts.defaultRegistry } : {}),
      }));
    }
    if (opts.containers.volumes) server.addService(VolumeServiceService, volumeService({ volumes: opts.containers.volumes, logger }));
    server.addService(ImageServiceService, imageService({
      membership: opts.membership, agents: opts.containers.agents, logger, stopping: stopping.signal,
      ...(opts.defaultRegistry ? { defaultRegistry: opts.defaultRegistry } : {}),
    }));
  }
  server.addService(WorkloadServiceService, workloadService({
    store: opts.store, logger, stopping: stopping.signal, ...(opts.containers ? { statuses: opts.containers.store } : {}), ...(opts.defaultRegistry ? { defaultRegistry: opts.defaultRegistry } : {}),
    ...(opts.containers ? { cluster: { records: opts.containers.store, observed: opts.containers.observed, membership: opts.membership } } : {}),
  }));
  server.addService(NodeServiceService, nodeService({
    membership: opts.membership, cluster: opts.store, logger, ...(opts.containers ? { records: opts.containers.store, nodeStore: opts.containers.store } : {}),
    ...(opts.defaultRegistry ? { defaultRegistry: opts.defaultRegistry } : {}),
    ...(opts.clusterCidr ? { clusterCidr: opts.clusterCidr } : {}),
  }));
  if (opts.services) server.addService(ServiceServiceService, serviceService({ ...opts.services, logger }));
  server.addService(SystemServiceService, systemService({ election: opts.election, logger }));

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.listen, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(new UnavailableError(`failed to listen on "${opts.listen}": ${messageOf(err)}`, { cause: err }));
      else resolve(p);
    });
  });
  const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info('api listening', { listen: address });

  let stopped: Promise<void> | undefined;
  return {
    address,
    stop(graceMs = 5000) {
      stopped ??= new Promise<void>((resolve) => {
        stopping.abort();
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return stopped;
    },
  };
}
