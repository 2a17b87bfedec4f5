/**
 * AgentBatchService handlers (proto/berth/v1/batch.proto): many containers in
 * one call from the controller. Each entry is run exactly as RunContainer
 * runs it (validated by the container manager, idempotent by id), all
 * entries concurrently; a failing entry gets its own status in the answer and
 * does not fail the others. Only a malformed batch as a whole (too many
 * entries, an id twice) fails the call, before anything runs.
 */
import { status as GrpcCode, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { InvalidArgumentError, messageOf, toGrpcStatus, type Logger } from '../../lib/index.js';
import type { AgentBatchServiceServer, RunContainerResult, RunContainersRequest, RunContainersResponse } from '../../proto/gen/berth/v1/batch.js';
import type { ContainerManager } from '../containers/index.js';

/** Most entries in one RunContainers call. */
export const MAX_BATCH_CONTAINERS = 1000;

export interface AgentBatchDeps {
  containers: Pick<ContainerManager, 'run'>;
  logger: Logger;
}

/** Checks the batch as a whole; entries are checked one by one when they run. */
export function checkRunBatch(req: RunContainersRequest): void {
  if (req.containers.length > MAX_BATCH_CONTAINERS) {
    throw new InvalidArgumentError(`containers: expected at most ${MAX_BATCH_CONTAINERS} entries, got ${req.containers.length}`, { field: 'containers' });
  }
  const seen = new Map<string, number>();
  req.containers.forEach((c, i) => {
    const first = seen.get(c.id);
    if (first !== undefined) {
      throw new InvalidArgumentError(`containers[${i}].id: "${c.id.slice(0, 80)}" also appears at containers[${first}]; expected each id once`, { field: `containers[${i}].id` });
    }
    seen.set(c.id, i);
  });
}

export function agentBatchHandlers(deps: AgentBatchDeps): AgentBatchServiceServer {
  const log = deps.logger.child({ component: 'api' });
  return {
    runContainers: (call: ServerUnaryCall<RunContainersRequest, RunContainersResponse>, callback: sendUnaryData<RunContainersResponse>): void => {
      const req = call.request;
      try {
        checkRunBatch(req);
      } catch (err) {
        const s = toGrpcStatus(err);
        callback({ code: s.code, details: s.details });
        return;
      }
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      void Promise.all(req.containers.map(async (r): Promise<RunContainerResult> => {
        try {
          const container = await deps.containers.run(r, { signal: ac.signal });
          return { id: r.id, container, code: 0, message: '' };
        } catch (err) {
          const s = toGrpcStatus(err);
          if (s.code === GrpcCode.INTERNAL || s.code === GrpcCode.UNKNOWN) log.error('agent API call failed', { method: 'RunContainers', containerId: r.id, reason: messageOf(err) });
          return { id: r.id, code: s.code, message: s.details };
        }
      })).then((results) => callback(null, { results }));
    },
  };
}
