/**
 * ServiceService: workloads with ports as services (virtual IP, ports,
 * endpoints) for `berth get services`, `berth describe service` and the
 * agents' service tables.
 */
import type { Logger } from '../../lib/index.js';
import type { GetServiceRequest, ListServicesRequest, ListServicesResponse, Service, ServiceServiceServer } from '../../proto/gen/berth/v1/services.js';
import type { ServiceDirectory } from '../services/index.js';
import { unary } from './call.js';
import { checkName } from './validate.js';

export interface ServiceServiceDeps {
  directory: ServiceDirectory;
  /** The service range, for List's answer. */
  serviceCidr: string;
  logger: Logger;
}

export function serviceService(deps: ServiceServiceDeps): ServiceServiceServer {
  const { directory, logger } = deps;
  return {
    list: unary(logger, 'ServiceList', async (_req: ListServicesRequest, { signal }): Promise<ListServicesResponse> => ({
      services: await directory.list({ signal }),
      serviceCidr: deps.serviceCidr,
    })),
    get: unary(logger, 'ServiceGet', async (req: GetServiceRequest, { signal }): Promise<Service> => directory.get(checkName('name', req.name, 'service'), { signal })),
  };
}
