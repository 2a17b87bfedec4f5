/** NodeService: agents register their node; clients list nodes with live status. */
import { InvalidArgumentError, type Logger } from '../../lib/index.js';
import { parseIpv4 } from '../../lib/network.js';
import type {
  CordonNodeRequest, DrainNodeRequest, ListNodesRequest, ListNodesResponse, NodeServiceServer, RegisterNodeRequest, RegisterNodeResponse,
} from '../../proto/gen/berth/v1/controller.js';
import type { RemoveNodeRequest, RemoveNodeResponse } from '../../proto/gen/berth/v1/controller.js';
import { NodeState } from '../../proto/gen/berth/v1/types.js';
import type { NodeSpec } from '../../proto/gen/berth/v1/types.js';
import { HEARTBEAT_INTERVAL_MS, type Membership } from '../nodes/index.js';
import { ContainerState } from '../../proto/gen/berth/v1/types.js';
import { FailedPreconditionError } from '../../lib/index.js';
import type { ClusterStore, ContainerRecordStore, NodeStore } from '../store/index.js';
import { unary } from './call.js';
import { checkHostPort, checkLabels, checkName, checkNonNegative, checkText } from './validate.js';

export interface NodeServiceDeps {
  membership: Membership;
  cluster: ClusterStore;
  /** When given, List adds each node's allocated resources (the sum of its records' requests). */
  records?: Pick<ContainerRecordStore, 'listContainerRecords'>;
  /** Where Cordon and Drain write; those calls fail with FAILED_PRECONDITION without it. */
  nodeStore?: Pick<NodeStore, 'setNodeCordoned' | 'drainNode'> & Partial<Pick<NodeStore, 'getNode' | 'deleteNode'>>;
  defaultRegistry?: string;
  /** The controller's --cluster-cidr, sent to registering agents. */
  clusterCidr?: string;
  logger: Logger;
}

/** Checks what an agent reports about its node. */
export function checkNodeSpec(spec: NodeSpec | undefined): NodeSpec {
  if (!spec) throw new InvalidArgumentError('node: expected the node to register, got nothing', { field: 'node' });
  const capacity = spec.capacity ?? { cpuMillis: 0, memoryBytes: 0, pids: 0 };
  return {
    name: checkName('node.name', spec.name, 'node'),
    labels: checkLabels('node.labels', spec.labels),
    address: checkHostPort('node.address', spec.address),
    capacity: {
      cpuMillis: checkNonNegative('node.capacity.cpu_millis', capacity.cpuMillis),
      memoryBytes: checkNonNegative('node.capacity.memory_bytes', capacity.memoryBytes),
      pids: checkNonNegative('node.capacity.pids', capacity.pids),
    },
    // Cordoning is the operator's decision; an agent cannot set or clear it.
    cordoned: false,
    agentVersion: checkText('node.agent_version', spec.agentVersion, 64),
    os: checkText('node.os', spec.os, 64),
    arch: checkText('node.arch', spec.arch, 64),
    kernel: checkText('node.kernel', spec.kernel, 256),
    cgroupVersion: checkText('node.cgroup_version', spec.cgroupVersion, 16),
    ...(spec.internalIp !== undefined && spec.internalIp !== '' ? { internalIp: checkInternalIp(spec.internalIp) } : {}),
  };
}

function checkInternalIp(ip: string): string {
  const n = parseIpv4(ip);
  if (n === undefined || Math.floor(n / 2 ** 24) === 127 || n === 0) {
    throw new InvalidArgumentError(`node.internal_ip: expected an IPv4 address other nodes can reach (not loopback), got ${JSON.stringify(ip.slice(0, 64))}`, { field: 'node.internal_ip' });
  }
  return ip;
}

export function nodeService(deps: NodeServiceDeps): NodeServiceServer {
  const { membership, logger } = deps;
  return {
    list: unary(logger, 'NodeList', async (_req: ListNodesRequest, { signal }): Promise<ListNodesResponse> => {
      const nodes = await membership.list({ signal });
      if (!deps.records) return { nodes };
      const records = await deps.records.listContainerRecords({}, { signal });
      const per = new Map<string, { cpuMillis: number; memoryBytes: number; pids: number; replicas: number }>();
      for (const r of records) {
        if (r.desiredState === ContainerState.CONTAINER_STATE_REMOVED || r.node === '') continue;
        const a = per.get(r.node) ?? { cpuMillis: 0, memoryBytes: 0, pids: 0, replicas: 0 };
        a.cpuMillis += r.spec?.resources?.cpuMillis ?? 0;
        a.memoryBytes += r.spec?.resources?.memoryBytes ?? 0;
        a.pids += r.spec?.resources?.pids ?? 0;
        if (r.workload !== '') a.replicas++;
        per.set(r.node, a);
      }
      return {
        nodes: nodes.map((n) => {
          const a = per.get(n.spec?.name ?? '');
          if (!n.status) return n;
          return { ...n, status: { ...n.status, allocated: { cpuMillis: a?.cpuMillis ?? 0, memoryBytes: a?.memoryBytes ?? 0, pids: a?.pids ?? 0 }, replicas: a?.replicas ?? 0 } };
        }),
      };
    }),
    cordon: unary(logger, 'Cordon', async (req: CordonNodeRequest, { signal }) => {
      if (!deps.nodeStore) throw new FailedPreconditionError('failed to cordon a node: this controller has no node store');
      const name = checkName('name', req.name, 'node');
      const node = await deps.nodeStore.setNodeCordoned(name, req.cordoned, { signal });
      logger.info(req.cordoned ? 'node cordoned' : 'node uncordoned', { node: name });
      return membership.merge(node);
    }),

    drain: unary(logger, 'Drain', async (req: DrainNodeRequest, { signal }) => {
      if (!deps.nodeStore) throw new FailedPreconditionError('failed to drain a node: this controller has no node store');
      const name = checkName('name', req.name, 'node');
      const node = await deps.nodeStore.drainNode(name, { signal });
      logger.info('node draining', { node: name });
      return membership.merge(node);
    }),

    remove: unary(logger, 'NodeRemove', async (req: RemoveNodeRequest, { signal }): Promise<RemoveNodeResponse> => {
      const store = deps.nodeStore;
      if (!store?.getNode || !store.deleteNode) throw new FailedPreconditionError('failed to remove a node: this controller has no node store');
      const name = checkName('name', req.name, 'node');
      if (membership.liveStatus(name).state === NodeState.NODE_STATE_READY && !req.force) {
        throw new FailedPreconditionError(`failed to remove node "${name}": it is Ready (its agent still heartbeats); stop its agent first, or force the removal`);
      }
      const node = await store.getNode(name, { signal });
      await store.deleteNode(name, { signal });
      const subnet = node.network?.subnet ?? '';
      logger.info('node removed', { node: name, subnet });
      return { releasedSubnet: subnet };
    }),

    register: unary(logger, 'Register', async (req: RegisterNodeRequest, { signal }): Promise<RegisterNodeResponse> => {
      const node = await membership.register(checkNodeSpec(req.node), { signal });
      return {
        node,
        heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
        clusterId: await deps.cluster.clusterId({ signal }),
        defaultRegistry: deps.defaultRegistry ?? '',
        ...(deps.clusterCidr ? { clusterCidr: deps.clusterCidr } : {}),
      };
    }),
  };
}
