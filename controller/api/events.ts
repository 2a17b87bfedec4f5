/** EventService: the controller's recent decisions and observations, oldest first. */
import { InvalidArgumentError, type Logger } from '../../lib/index.js';
import type { EventServiceServer, ListEventsRequest, ListEventsResponse } from '../../proto/gen/berth/v1/controller.js';
import { EVENTS_KEPT, type EventStore } from '../store/index.js';
import { unary } from './call.js';
import { checkName } from './validate.js';

const KINDS = ['workload', 'container', 'node'];

export function eventService(deps: { store: EventStore; logger: Logger }): EventServiceServer {
  return {
    list: unary(deps.logger, 'EventList', async (req: ListEventsRequest, { signal }): Promise<ListEventsResponse> => {
      if (req.kind !== '' && !KINDS.includes(req.kind)) {
        throw new InvalidArgumentError(`kind: expected one of ${KINDS.join(', ')}, got ${JSON.stringify(req.kind.slice(0, 40))}`, { field: 'kind' });
      }
      if (req.sinceUnixMs < 0) throw new InvalidArgumentError(`since_unix_ms: expected 0 or more, got "${req.sinceUnixMs}"`, { field: 'since_unix_ms' });
      if (req.limit > EVENTS_KEPT) throw new InvalidArgumentError(`limit: expected at most ${EVENTS_KEPT}, got "${req.limit}"`, { field: 'limit' });
      const workload = req.workload === '' ? undefined : checkName('workload', req.workload);
      const events = await deps.store.listEvents({
        ...(req.sinceUnixMs > 0 ? { sinceUnixMs: req.sinceUnixMs } : {}),
        ...(req.limit > 0 ? { limit: req.limit } : {}),
        ...(workload ? { workload } : {}),
        ...(req.kind ? { kind: req.kind } : {}),
      }, { signal });
      return { events };
    }),
  };
}
