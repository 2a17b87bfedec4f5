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
import { randomBytes, randomInt } from 'node:crypto';
import {
  AlreadyExistsError, ErrorCode, FailedPreconditionError, InvalidArgumentError, NotFoundError, envNameProblem, isCode, messageOf, normalizeImageReference, type Logger,
} from '../../lib/index.js';
import type {
  ContainerLogsRequest, ContainerServiceServer, ListContainersRequest, ListContainersResponse, RemoveContainersRequest, RemoveContainersResponse, RunRequest, StopContainersRequest, StopContainersResponse,
} from '../../proto/gen/berth/v1/controller.js';
import { ContainerSpec, ContainerState, type Container, type LogLine, type Node } from '../../proto/gen/berth/v1/types.js';
import type { AgentDialer } from '../agents/index.js';
import type { Membership, ObservedState } from '../nodes/index.js';
import { generateName, placeOneOff, reconcileNodes } from '../reconcile/index.js';
import { matchesSelector, type ContainerRecordStore, type NodeStore, type WorkloadReader } from '../store/index.js';
import { serverStream, unary } from './call.js';
import { containerVerbs } from './container-verbs.js';
import { checkLabels, checkName, checkNonNegative, checkText, MAX_NAMES_PER_REQUEST } from './validate.js';
import { checkMounts, type VolumeManager } from '../volumes/index.js';

export interface ContainerServiceDeps {
  store: ContainerRecordStore & Pick<NodeStore, 'getNode'> & Pick<WorkloadReader, 'listWorkloads'>;
  observed: ObservedState;
  agents: AgentDialer;
  /** Node records with live state, for placing one-off containers (Run). */
  membership?: Pick<Membership, 'list' | 'listeningSinceUnixMs'>;
  defaultRegistry?: string;
  /** Named volumes (spec.mounts of one-off containers); without it, containers with mounts are refused. */
  volumes?: VolumeManager;
  logger: Logger;
  stopping: AbortSignal;
}

/** Longest grace period a stop may ask for, in seconds. */
const MAX_GRACE_SECONDS = 3600;

/** Most entries in one list or map of a run request (command, env, labels). */
const MAX_ITEMS = 256;

/** Checks a one-off container spec from a client; returns a normalized copy. */
export function checkRunSpec(spec: ContainerSpec | undefined, defaultRegistry?: string): ContainerSpec {
  if (!spec) throw new InvalidArgumentError('spec: expected the container to run, got nothing', { field: 'spec' });
  if (spec.image === '') throw new InvalidArgumentError('spec.image: expected an image reference such as "busybox" or "registry.example.com/team/web:1.0", got nothing', { field: 'spec.image' });
  let image: string;
  try {
    image = normalizeImageReference(spec.image, defaultRegistry ? { field: 'spec.image', defaultRegistry } : { field: 'spec.image' });
  } catch (err) {
    throw new InvalidArgumentError(`spec.image: ${messageOf(err)}`, { field: 'spec.image', cause: err });
  }
  for (const [field, list] of [['spec.entrypoint', spec.entrypoint], ['spec.command', spec.command]] as const) {
    if (list.length > MAX_ITEMS) throw new InvalidArgumentError(`${field}: expected at most ${MAX_ITEMS} arguments, got ${list.length}`, { field });
    list.forEach((a, i) => checkText(`${field}[${i}]`, a, 4096));
  }
  const env = Object.entries(spec.env);
  if (env.length > MAX_ITEMS) throw new InvalidArgumentError(`spec.env: expected at most ${MAX_ITEMS} variables, got ${env.length}`, { field: 'spec.env' });
  for (const [k, v] of env) {
    const p = envNameProblem(k);
    if (p) throw new InvalidArgumentError(`spec.env: ${p}`, { field: 'spec.env' });
    if (v.length > 32768) throw new InvalidArgumentError(`spec.env[${JSON.stringify(k)}]: expected at most 32768 characters, got ${v.length}`, { field: `spec.env.${k}` });
  }
  checkText('spec.working_dir', spec.workingDir, 4096);
  checkText('spec.user', spec.user, 256);
  checkText('spec.hostname', spec.hostname, 63);
  const r = spec.resources;
  if (r) {
    checkNonNegative('spec.resources.cpu_millis', r.cpuMillis);
    checkNonNegative('spec.resources.memory_bytes', r.memoryBytes);
    checkNonNegative('spec.resources.pids', r.pids);
  }
  return { ...ContainerSpec.decode(ContainerSpec.encode(spec).finish()), image, labels: checkLabels('spec.labels', spec.labels) };
}

const LIVE = new Set([ContainerState.CONTAINER_STATE_PENDING, ContainerState.CONTAINER_STATE_CREATED, ContainerState.CONTAINER_STATE_RUNNING, ContainerState.CONTAINER_STATE_UNKNOWN]);

/**
 * Records with their observed status, plus reported containers without a record (one-offs, leftovers).
 * A container on a lost node (NotReady once this controller has listened long enough, or no longer
 * registered) is UNKNOWN with reason "NodeLost", as Kubernetes shows pods of a lost node: its last
 * report may say running, but nobody knows, and its replacement runs elsewhere.
 */
export async function mergedContainers(deps: Pick<ContainerServiceDeps, 'store' | 'observed' | 'membership'>, signal?: AbortSignal): Promise<Container[]> {
  const [records, nodes] = await Promise.all([
    deps.store.listContainerRecords({}, signal ? { signal } : {}),
    deps.membership ? deps.membership.list(signal ? { signal } : {}) : undefined,
  ]);
  return mergeContainers(deps, records, nodes);
}

/** mergedContainers over records and node records already read (Run reads them once for its checks and its placement). */
export function mergeContainers(deps: Pick<ContainerServiceDeps, 'observed' | 'membership'>, records: readonly Container[], nodes: readonly Node[] | undefined): Container[] {
  const conditions = nodes && deps.membership ? new Map(reconcileNodes(nodes, Date.now() - deps.membership.listeningSinceUnixMs).map((n) => [n.name, n.condition])) : undefined;
  const reasons = new Map((nodes ?? []).map((n) => [n.spec?.name ?? '', n.status?.reason ?? '']));
  const lost = (c: Container): Container => {
    if (!conditions || c.node === '' || (conditions.get(c.node) ?? 'lost') !== 'lost' || !c.status) return c;
    const why = reasons.get(c.node);
    return { ...c, status: { ...c.status, state: ContainerState.CONTAINER_STATE_UNKNOWN, reason: 'NodeLost', message: `node "${c.node}" is not ready${why ? `: ${why}` : ''}` } };
  };
  const seen = new Set<string>();
  const out: Container[] = [];
  for (const r of records) {
    seen.add(r.id);
    const obs = deps.observed.get(r.node, r.id);
    const status = obs?.status ?? {
      state: ContainerState.CONTAINER_STATE_PENDING, exitCode: 0, reason: r.desiredState === ContainerState.CONTAINER_STATE_REMOVED ? 'Removing' : 'Starting',
      message: '', startedUnixMs: 0, finishedUnixMs: 0, restartCount: 0, health: '', pid: 0, ipAddress: '', draining: false,
    };
    out.push(lost({ ...r, status }));
  }
  for (const node of deps.observed.nodeNames()) {
    for (const c of deps.observed.containers(node)) if (!seen.has(c.id)) out.push(lost({ ...c, node }));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/**
 * Finds one container by name or id prefix like resolveContainer; a full id
 * (64 hex digits, as clients pass after Run) is read by itself instead of
 * listing every container.
 */
export async function findContainer(deps: Pick<ContainerServiceDeps, 'store' | 'observed' | 'membership'>, ref: string, field: string, signal?: AbortSignal): Promise<Container> {
  if (/^[0-9a-f]{64}$/.test(ref)) {
    const record = await deps.store.getContainerRecord(ref, signal ? { signal } : {}).catch((err: unknown) => {
      if (isCode(err, ErrorCode.NotFound)) return undefined;
      throw err;
    });
    if (record) {
      const status = deps.observed.get(record.node, record.id)?.status;
      if (status) return { ...record, status };
    }
  }
  return resolveContainer(await mergedContainers(deps, signal), ref, field);
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

/** What runOneOff's caller may do while it runs (StreamService's `run` start). */
export interface RunHooks {
  /** The container was placed on `node` and the agent is about to create it (and pull `image` if missing); returns a function called when that ends. */
  onPlaced?(node: string, image: string): (() => void) | undefined;
}

/**
 * ContainerService.Run: checks the request, places the one-off container,
 * records it and has the agent create it (started, or waiting for an attach
 * with wait_for_attach). Returns it and its node's address. Nothing is left
 * behind when it fails.
 */
export async function runOneOff(deps: ContainerServiceDeps, req: RunRequest, signal: AbortSignal, hooks: RunHooks = {}): Promise<{ container: Container; address: string }> {
  const { store } = deps;
  const membership = deps.membership;
  if (!membership) throw new FailedPreconditionError('failed to run a container: this controller has no node membership');
  const spec = checkRunSpec(req.spec, deps.defaultRegistry);
  for (const [f, v] of [['console_size.rows', req.consoleSize?.rows ?? 0], ['console_size.cols', req.consoleSize?.cols ?? 0]] as const) {
    if (v > 65535) throw new InvalidArgumentError(`${f}: expected 0 (unset) to 65535, got ${v}`, { field: f });
  }
  checkMounts(spec.mounts);
  const volumes = deps.volumes;
  if (spec.mounts.length > 0 && !volumes) throw new FailedPreconditionError('failed to run a container with mounts: this controller does not manage volumes');
  const node = req.node === '' ? undefined : checkName('node', req.node, 'node');
  const nodeSelector = checkLabels('node_selector', req.nodeSelector);
  const [nodes, records] = await Promise.all([membership.list({ signal }), store.listContainerRecords({}, { signal })]);
  const all = mergeContainers(deps, records, nodes);
  const taken = (n: string): boolean => all.some((c) => c.name === n);
  let name: string;
  if (req.name !== '') {
    name = checkName('name', req.name, 'container');
    if (taken(name)) throw new AlreadyExistsError('container', name, { message: `failed to run container "${name}": the name is already in use; expected a new name (or remove the old container first)` });
  } else {
    name = generateName(() => randomInt(1 << 30) / (1 << 30), taken);
  }
  const id = randomBytes(32).toString('hex');
  const placed = placeOneOff(reconcileNodes(nodes, Date.now() - membership.listeningSinceUnixMs), records, {
    id, name, spec: { ...spec, hostname: spec.hostname || name }, ...(node ? { node } : {}), nodeSelector, evalId: `run/${id}`, now: Date.now(),
    volumes: volumes ? await volumes.locate(spec.mounts, { signal }) : [],
  });
  if ('unplaced' in placed) throw new FailedPreconditionError(`failed to run container "${name}": no node can take it: ${placed.unplaced}`);
  const record = placed.record;
  // Volumes used for the first time live where the container landed.
  const claimed = volumes ? await volumes.claim(spec.mounts, record.node, { signal }) : [];
  // The record first: a controller that dies now leaves a record, never an unrecorded container.
  await store.writeContainerRecords({ put: [record] }, { signal });
  const address = nodes.find((n) => n.spec?.name === record.node)?.spec?.address ?? '';
  const agent = deps.agents.agent(record.node, address);
  const unwatch = hooks.onPlaced?.(record.node, spec.image);
  try {
    const started = await agent.runContainer({
      id, name, spec: record.spec as ContainerSpec, workload: '', revision: 0, replica: 0,
      ...(req.waitForAttach ? { waitForAttach: true } : {}), ...(req.consoleSize ? { consoleSize: req.consoleSize } : {}),
    }, { signal });
    deps.logger.info('container started', { containerId: id, name, node: record.node, image: spec.image });
    return { container: { ...record, status: started.status }, address };
  } catch (err) {
    // Nothing half-made stays behind: remove whatever the agent made, then the record.
    await agent.removeContainer({ id, force: true }).catch(() => undefined);
    await store.writeContainerRecords({ delete: [id] }).catch((e: unknown) => deps.logger.warn('failed to delete the record of a container that did not start', { containerId: id, error: messageOf(e) }));
    await volumes?.release(claimed, record.node);
    throw err;
  } finally {
    unwatch?.();
  }
}

export function containerService(deps: ContainerServiceDeps): ContainerServiceServer {
  const { store, logger } = deps;
  return {
    ...containerVerbs(deps),
    run: unary(logger, 'ContainerRun', async (req: RunRequest, { signal }): Promise<Container> => (await runOneOff(deps, req, signal)).container),

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

    stop: unary(logger, 'ContainerStop', async (req: StopContainersRequest, { signal }): Promise<StopContainersResponse> => {
      if (req.containers.length === 0) throw new InvalidArgumentError('containers: expected at least one container name or id, got none', { field: 'containers' });
      if (req.containers.length > MAX_NAMES_PER_REQUEST) {
        throw new InvalidArgumentError(`containers: expected at most ${MAX_NAMES_PER_REQUEST} names per request, got ${req.containers.length}`, { field: 'containers' });
      }
      if (req.graceSeconds > MAX_GRACE_SECONDS) {
        throw new InvalidArgumentError(`grace_seconds: expected at most ${MAX_GRACE_SECONDS}, got ${req.graceSeconds}`, { field: 'grace_seconds' });
      }
      const all = await mergedContainers(deps, signal);
      // Resolve every name before stopping anything.
      const targets = req.containers.map((ref, i) => resolveContainer(all, ref, `containers[${i}]`));
      const stopped: string[] = [];
      for (const c of targets) {
        const node = await store.getNode(c.node, { signal });
        await deps.agents.agent(c.node, node.spec?.address ?? '').stopContainer({ id: c.id, graceSeconds: req.graceSeconds }, { signal });
        logger.info('container stopped', { containerId: c.id, name: c.name, node: c.node });
        stopped.push(c.name);
      }
      return { stopped };
    }),
  };
}
