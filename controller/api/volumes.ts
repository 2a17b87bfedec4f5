/**
 * VolumeService: named volumes for the CLI (`berth volume ...`), over the
 * VolumeManager (controller/volumes). Requests are hostile: names, labels and
 * list sizes are checked before anything is read or written.
 */
import type { Logger } from '../../lib/index.js';
import type {
  CreateVolumeRequest, InspectVolumesRequest, ListVolumesRequest, ListVolumesResponse, PruneVolumesRequest, RemoveVolumesRequest, RemoveVolumesResponse, Volume, VolumeServiceServer,
} from '../../proto/gen/berth/v1/volumes.js';
import type { VolumeManager } from '../volumes/index.js';
import { unary } from './call.js';
import { checkLabels, checkName } from './validate.js';

export interface VolumeServiceDeps {
  volumes: VolumeManager;
  logger: Logger;
}

export function volumeService(deps: VolumeServiceDeps): VolumeServiceServer {
  const { volumes, logger } = deps;
  return {
    create: unary(logger, 'VolumeCreate', async (req: CreateVolumeRequest, { signal }): Promise<Volume> => {
      const labels = checkLabels('labels', req.labels);
      const node = req.node === '' ? undefined : checkName('node', req.node, 'node');
      return volumes.create({ name: req.name, labels, ...(node ? { node } : {}) }, { signal });
    }),
    list: unary(logger, 'VolumeList', async (req: ListVolumesRequest, { signal }): Promise<ListVolumesResponse> => {
      const selector = checkLabels('selector', req.selector);
      const node = req.node === '' ? undefined : checkName('node', req.node, 'node');
      return { volumes: await volumes.list({ selector, ...(node ? { node } : {}) }, { signal }) };
    }),
    inspect: unary(logger, 'VolumeInspect', async (req: InspectVolumesRequest, { signal }): Promise<ListVolumesResponse> => ({
      volumes: await volumes.inspect(req.names, { signal }),
    })),
    remove: unary(logger, 'VolumeRemove', async (req: RemoveVolumesRequest, { signal }): Promise<RemoveVolumesResponse> => ({
      removed: await volumes.remove(req.names, req.force, { signal }),
    })),
    prune: unary(logger, 'VolumePrune', async (req: PruneVolumesRequest, { signal }): Promise<RemoveVolumesResponse> => ({
      removed: await volumes.prune(checkLabels('selector', req.selector), { signal }),
    })),
  };
}
