/** SystemService: versions and who leads. */
import { API_VERSION, BERTH_VERSION, type Logger } from '../../lib/index.js';
import type { SystemServiceServer, VersionRequest, VersionResponse } from '../../proto/gen/berth/v1/controller.js';
import type { LeaderElection } from '../store/index.js';
import { unary } from './call.js';

export interface SystemServiceDeps {
  election: Pick<LeaderElection, 'controllerId' | 'isLeader' | 'leaderId'>;
  logger: Logger;
}

export function systemService(deps: SystemServiceDeps): SystemServiceServer {
  return {
    version: unary(deps.logger, 'Version', async (_req: VersionRequest): Promise<VersionResponse> => ({
      version: BERTH_VERSION,
      apiVersion: API_VERSION,
      controllerId: deps.election.controllerId,
      leader: deps.election.isLeader(),
      leaderId: deps.election.leaderId() ?? '',
    })),
  };
}
