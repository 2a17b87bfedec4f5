/**
 * AgentVolumeService handlers: the node's volumes (agent/volumes) over gRPC
 * for the controller. Requests are validated by LocalVolumes; errors leave as
 * gRPC statuses through toGrpcStatus.
 */
import type { Logger } from '../../lib/index.js';
import type { AgentVolumeServiceServer, Volume } from '../../proto/gen/berth/v1/volumes.js';
import type { LocalVolumes, VolumeInfo } from '../volumes/index.js';
import { unary } from './call.js';

export interface AgentVolumeServiceDeps {
  node: string;
  volumes: LocalVolumes;
  logger: Logger;
}

function toProto(node: string, v: VolumeInfo, inUseBy: string[]): Volume {
  return { name: v.name, node, mountpoint: v.mountpoint, createdUnixMs: v.createdUnixMs, labels: v.labels, inUseBy };
}

/** Builds the AgentVolumeService implementation. */
export function agentVolumeHandlers(deps: AgentVolumeServiceDeps): AgentVolumeServiceServer {
  const log = deps.logger.child({ component: 'api' });
  const { volumes, node } = deps;
  return {
    createVolume: unary(log, 'CreateVolume', async (req) => {
      const v = await volumes.create(req.name, { labels: req.labels, createdUnixMs: req.createdUnixMs });
      return toProto(node, v, volumes.usedBy(v.name));
    }),
    listVolumes: unary(log, 'ListVolumes', async () => ({
      volumes: (await volumes.list()).map((v) => toProto(node, v, volumes.usedBy(v.name))),
    })),
    removeVolume: unary(log, 'RemoveVolume', async (req) => ({ removed: await volumes.remove(req.name) })),
  };
}
