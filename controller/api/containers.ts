/**
 * ContainerService: list containers (records merged with what agents report),
 * stream one container's logs from its agent, remove containers.
 *
 * A container is named by its name or an unambiguous prefix of its id (at
 * least 4 hex characters). Remove of a running container needs `force`.
 * Removing a replica of a workload marks its record REMOVED, removes it on its
 * node and deletes the record; the reconciler then starts a replacement (the
 * workload still asks for that many replicas), as `kubectl delete pod` does.
 */
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, isCode, type Logger } from '../../lib/index.js';
import type {
  ContainerLogsRequest, ContainerServiceServer, ListContainersRequest, ListContainersResponse, RemoveContainersRequest, RemoveContainersResponse,
} from '../../proto/gen/berth/v1/controller.js';
import { ContainerState, type Container, type LogLine } from '../../proto/gen/berth/v1/types.js';
import type { AgentDialer } from '../agents/index.js';
import type { ObservedState } from '../nodes/index.js';
import { matchesSelector, type ContainerRecordStore, type NodeStore, type WorkloadReader } from '../store/index.js';
import { serverStream, unary } from './call.js';
import { checkLabels, checkName, checkText, MAX_NAMES_PER_REQUEST } from './validate.js';

export interface ContainerServiceDeps {
  store: ContainerRecordStore & Pick<NodeStore, 'getNode'> & Pick<WorkloadReader, 'listWorkloads'>;
  observed: ObservedState;
  agents: AgentDialer;
  logger: Logger;
  stopping: AbortSignal;
}

const LIVE = new Set([ContainerState.CONTAINER_STATE_PENDING, ContainerState.CONTAINER_STATE_CREATED, ContainerState.CONTAINER_STATE_RUNNING]);

/** Records with their observed status, plus reported containers without a record (one-offs, leftovers). */
export async function mergedContainers(deps: Pick<ContainerServiceDeps, 'store' | 'observed'>, signal?: AbortSignal): Promise<Container[]> {
  const records = await deps.store.listContainerRecords({}, signal ? { signal } : {});
  const seen = new Set<string>();
  const out: Container[] = [];
  for (const r of records) {
    seen.add(r.id);
    const obs = deps.observed.get(r.node, r.id);
    const status = obs?.status ?? {
      state: ContainerState.CONTAINER_STATE_PENDING, exitCode: 0, reason: r.desiredState === ContainerState.CONTAINER_STATE_REMOVED ? 'Removing' : 'Starting',
      message: '', startedUnixMs: 0, finishedUnixMs: 0, restartCount: 0, health: '', pid: 0, ipAddress: '',
    };
    out.push({ ...r, status });
  }
  for (const node of deps.observed.nodeNames()) {
    for (const c of deps.observed.containers(node)) if (!seen.has(c.id)) out.push({ ...c, node });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/** Finds one container by name or unambiguous id prefix. */
export function resolveContainer(all: readonly Container[], ref: string, field: string): Container {
  if (ref === '') throw new InvalidArgumentError(`${field}: expected a container name or id, got nothing`, { field });
  checkText(field, ref, 128);
  const byName = all.filter((c) => c.name === ref);
  if (byName.length === 1) return byName[0] as Container;
  if (/^[0-9a-f]{4,64}$/.test(ref)) {
    const byId = all.filter((c) => c.id.startsWith(ref));
    if (byId.length === 1) return byId[0] as Container;
    if (byId.length > 1) {
      throw new InvalidArgumentError(`${field}: id prefix "${ref}" matches ${byId.length} containers (${byId.slice(0, 3).map((c) => `"${c.name}"`).join(', ')}); expected a longer prefix`, { field });
    }
  }
  throw new NotFoundError('container', ref);
}

export function containerService(deps: ContainerServiceDeps): ContainerServiceServer {
  const { store, logger } = deps;
  return {
    list: unary(logger, 'ContainerList', async (req: ListContainersRequest, { signal }): Promise<ListContainersResponse> => {
      const selector = checkLabels('selector', req.selector);
      const node = req.node === '' ? undefined : checkName('node', req.node, 'node');
      const workload = req.workload === '' ? undefined : checkName('workload', req.workload);
      const selected = Object.keys(selector).length > 0
        ? new Set((await store.listWorkloads(selector, { signal })).map((w) => w.metadata?.name ?? ''))
        : undefined;
      const all = await mergedContainers(deps, signal);
      const containers = all.filter((c) =>
        (node === undefined || c.node === node) &&
        (workload === undefined || c.workload === workload) &&
        (selected === undefined || selected.has(c.workload) || (Object.keys(selector).length > 0 && matchesSelector(c.spec?.labels, selector))) &&
        (req.all || LIVE.has(c.status?.state ?? ContainerState.CONTAINER_STATE_UNSPECIFIED)),
      );
      return { containers };
    }),

    logs: serverStream(logger, 'ContainerLogs', deps.stopping, async (req: ContainerLogsRequest, send: (l: LogLine) => void, { signal }) => {
      const c = resolveContainer(await mergedContainers(deps, signal), req.container, 'container');
      const node = await store.getNode(c.node, { signal });
      const agent = deps.agents.agent(c.node, node.spec?.address ?? '');
      for await (const line of agent.logs({ id: c.id, follow: req.follow, tail: req.tail, sinceUnixMs: req.sinceUnixMs }, { signal })) {
        send({ ...line, source: line.source || c.name });
      }
    }),

    remove: unary(logger, 'ContainerRemove', async (req: RemoveContainersRequest, { signal }): Promise<RemoveContainersResponse> => {
      if (req.containers.length === 0) throw new InvalidArgumentError('containers: expected at least one container name or id, got none', { field: 'containers' });
      if (req.containers.length > MAX_NAMES_PER_REQUEST) {
        throw new InvalidArgumentError(`containers: expected at most ${MAX_NAMES_PER_REQUEST} names per request, got ${req.containers.length}`, { field: 'containers' });
      }
      const all = await mergedContainers(deps, signal);
      // Resolve and check everything before removing anything.
      const targets = req.containers.map((ref, i) => resolveContainer(all, ref, `containers[${i}]`));
      for (const c of targets) {
        if (!req.force && c.status?.state === ContainerState.CONTAINER_STATE_RUNNING) {
          throw new FailedPreconditionError(`failed to remove container "${c.name}": it is running; expected a stopped container (stop it first or use force)`);
        }
      }
      const removed: string[] = [];
      for (const c of targets) {
        let record: Container | undefined;
        try {
          record = await store.getContainerRecord(c.id, { signal });
        } catch (err) {
          if (!isCode(err, 'not_found')) throw err;
        }
        if (record) await store.writeContainerRecords({ put: [{ ...record, desiredState: ContainerState.CONTAINER_STATE_REMOVED, updatedUnixMs: Date.now() }] }, { signal });
        const node = await store.getNode(c.node, { signal });
        try {
          await deps.agents.agent(c.node, node.spec?.address ?? '').removeContainer({ id: c.id, force: true }, { signal });
        } catch (err) {
          if (!isCode(err, 'not_found')) throw err;
        }
        deps.observed.forget(c.node, c.id);
        if (record) await store.writeContainerRecords({ delete: [c.id] }, { signal });
        logger.info('container removed', { containerId: c.id, name: c.name, node: c.node });
        removed.push(c.name);
      }
      return { removed };
    }),
  };
}
