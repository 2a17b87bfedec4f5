/**
 * Volumes on the controller: the record of each named volume (etcd, through
 * the VolumeStore) and the directory on its node (through the agent's
 * AgentVolumeService).
 *
 * Vocabulary
 *   volume record  `<prefix>volumes/<name>`: name, node, mountpoint, created,
 *                  labels. The name is unique in the cluster.
 *   in use         a container (a record not being removed, or a container
 *                  an agent reports) lists the volume in spec.mounts.
 *
 * Lifecycle
 *   create: the record first (an atomic create, so two creates of one name
 *     cannot both win), then the directory on the node; when the node fails,
 *     the record is deleted again (nothing half-made).
 *   first use (`berth run -v data:/x`): `locate` gives the scheduler the
 *     nodes of the volumes that exist; after placement, `claim` writes records
 *     for the new ones on the chosen node (the agent creates the directory
 *     when it starts the container); `release` undoes a claim when the
 *     container does not start.
 *   remove / prune: every name checked first (unknown, or in use: refused and
 *     nothing removed); then the directory on the node, then the record.
 */
import {
  AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, isCode, messageOf, mountProblems, volumeNameProblem, type Logger, type MountLike,
} from '../../lib/index.js';
import { ContainerState, type Container, type Node } from '../../proto/gen/berth/v1/types.js';
import type { Volume } from '../../proto/gen/berth/v1/volumes.js';
import type { AgentVolumeDialer } from '../agents/index.js';
import type { ObservedState } from '../nodes/index.js';
import { reconcileNodes } from '../reconcile/index.js';
import { schedule, type VolumeLocation } from '../scheduler/index.js';
import { matchesSelector, type CallOptions, type ContainerRecordStore, type VolumeStore } from '../store/index.js';

export interface VolumeManagerDeps {
  store: VolumeStore & Pick<ContainerRecordStore, 'listContainerRecords'>;
  observed: Pick<ObservedState, 'nodeNames' | 'containers'>;
  agents: AgentVolumeDialer;
  /** Node records with live state. */
  membership: { list(opts?: CallOptions): Promise<Node[]>; readonly listeningSinceUnixMs: number };
  logger: Logger;
  now?: () => number;
}

/** Most volumes named in one request. */
export const MAX_VOLUMES_PER_REQUEST = 50;

function q(v: string): string {
  return JSON.stringify(v);
}

/** Checks the mounts of a container spec from a client; throws InvalidArgumentError naming the first bad field. */
export function checkMounts(mounts: readonly MountLike[], path = 'spec.mounts'): void {
  const problems = mountProblems(mounts, path);
  const first = problems[0];
  if (first) throw new InvalidArgumentError(`${first.path}: ${first.message}`, { field: first.path });
}

function checkVolumeName(field: string, name: string): string {
  const p = volumeNameProblem(name);
  if (p) throw new InvalidArgumentError(`${field}: ${p}`, { field });
  return name;
}

export class VolumeManager {
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(private readonly deps: VolumeManagerDeps) {
    this.log = deps.logger.child({ component: 'volumes' });
    this.now = deps.now ?? Date.now;
  }

  /** volume name -> names of the containers that mount it. */
  private async usage(opts: CallOptions): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const seen = new Set<string>();
    const add = (c: Container): void => {
      if (seen.has(c.id)) return;
      seen.add(c.id);
      for (const m of c.spec?.mounts ?? []) {
        if (m.type !== 'volume') continue;
        const list = out.get(m.source) ?? [];
        if (!list.includes(c.name || c.id)) list.push(c.name || c.id);
        out.set(m.source, list);
      }
    };
    for (const r of await this.deps.store.listContainerRecords({}, opts)) {
      if (r.desiredState !== ContainerState.CONTAINER_STATE_REMOVED) add(r);
    }
    for (const node of this.deps.observed.nodeNames()) for (const c of this.deps.observed.containers(node)) add(c);
    return out;
  }

  private withUsage(v: Volume, usage: Map<string, string[]>): Volume {
    return { ...v, inUseBy: [...(usage.get(v.name) ?? [])].sort() };
  }

  /**
   * Records made on first use have no mountpoint until the node made the
   * directory: ask the node (once) and keep the answer. A node that cannot
   * be asked leaves it empty.
   */
  private async fillMountpoints(vs: Volume[], opts: CallOptions): Promise<Volume[]> {
    const missing = new Set(vs.filter((v) => v.mountpoint === '').map((v) => v.node));
    if (missing.size === 0) return vs;
    const nodes = await this.deps.membership.list(opts);
    const found = new Map<string, string>();
    for (const node of missing) {
      const address = nodes.find((n) => n.spec?.name === node)?.spec?.address;
      if (!address) continue;
      try {
        for (const v of await this.deps.agents.volumes(node, address).listVolumes(opts)) found.set(`${node}/${v.name}`, v.mountpoint);
      } catch (err) {
        this.log.debug('failed to ask a node for volume mountpoints', { node, error: messageOf(err) });
      }
    }
    const out: Volume[] = [];
    for (const v of vs) {
      const mp = found.get(`${v.node}/${v.name}`);
      if (v.mountpoint === '' && mp) {
        const next = { ...v, mountpoint: mp };
        await this.deps.store.putVolume({ ...next, inUseBy: [] }, opts).catch(() => undefined);
        out.push(next);
      } else {
        out.push(v);
      }
    }
    return out;
  }

  private async nodeRecord(name: string, opts: CallOptions): Promise<Node | undefined> {
    return (await this.deps.membership.list(opts)).find((n) => n.spec?.name === name);
  }

  /** Creates a volume on `node`, or on a node the scheduler picks. */
  async create(req: { name: string; node?: string; labels?: Record<string, string> }, opts: CallOptions = {}): Promise<Volume> {
    const name = checkVolumeName('name', req.name);
    const nodes = await this.deps.membership.list(opts);
    const view = reconcileNodes(nodes, this.now() - this.deps.membership.listeningSinceUnixMs);
    let node = req.node;
    if (node) {
      const n = view.find((x) => x.name === node);
      if (!n) throw new NotFoundError('node', node, { message: `failed to create volume "${name}": node "${node}" is not registered` });
      if (n.condition !== 'ready') throw new FailedPreconditionError(`failed to create volume "${name}": node "${node}" is NotReady; expected a Ready node`);
    } else {
      const plan = schedule({
        nodes: view.map((n) => ({ name: n.name, labels: n.labels, ready: n.condition === 'ready', cordoned: n.cordoned, capacity: { cpuMillis: Infinity, memoryBytes: Infinity, pids: Infinity } })),
        replicas: [],
      }, { workload: `volume/${name}`, replicas: [name], resources: { cpuMillis: 0, memoryBytes: 0, pids: 0 } }, { evalId: `volume/${name}` });
      node = plan.placements[0]?.node;
      if (!node) throw new FailedPreconditionError(`failed to create volume "${name}": no node can hold it: ${plan.unplaced?.summary ?? 'no nodes'}`);
    }
    const existing = await this.deps.store.getVolume(name, opts);
    if (existing) throw new AlreadyExistsError('volume', name, { message: `failed to create volume "${name}": the name is already in use (on node "${existing.node}"); expected a new name` });
    const created = this.now();
    const record: Volume = { name, node, mountpoint: '', createdUnixMs: created, labels: { ...(req.labels ?? {}) }, inUseBy: [] };
    try {
      await this.deps.store.createVolume(record, opts);
    } catch (err) {
      if (isCode(err, 'already_exists')) throw new AlreadyExistsError('volume', name, { message: `failed to create volume "${name}": the name is already in use; expected a new name`, cause: err });
      throw err;
    }
    const address = nodes.find((n) => n.spec?.name === node)?.spec?.address ?? '';
    try {
      const made = await this.deps.agents.volumes(node, address).createVolume({ name, labels: record.labels, createdUnixMs: created }, opts);
      const stored: Volume = { ...record, mountpoint: made.mountpoint };
      await this.deps.store.putVolume(stored, opts);
      this.log.info('volume created', { volume: name, node });
      return stored;
    } catch (err) {
      await this.deps.store.deleteVolumes([name]).catch((e: unknown) => this.log.warn('failed to delete the record of a volume that was not created', { volume: name, error: messageOf(e) }));
      throw err;
    }
  }

  /** Volumes (with their users), by name, filtered by labels and node. */
  async list(filter: { selector?: Record<string, string>; node?: string } = {}, opts: CallOptions = {}): Promise<Volume[]> {
    const [all, usage] = await Promise.all([this.deps.store.listVolumes(opts), this.usage(opts)]);
    return this.fillMountpoints(all
      .filter((v) => (filter.node === undefined || v.node === filter.node) && (filter.selector === undefined || matchesSelector(v.labels, filter.selector)))
      .map((v) => this.withUsage(v, usage)), opts);
  }

  /** The named volumes in request order; NotFoundError for an unknown one. */
  async inspect(names: readonly string[], opts: CallOptions = {}): Promise<Volume[]> {
    this.checkNames(names);
    const usage = await this.usage(opts);
    const out: Volume[] = [];
    for (const [i, n] of names.entries()) {
      checkVolumeName(`names[${i}]`, n);
      const v = await this.deps.store.getVolume(n, opts);
      if (!v) throw new NotFoundError('volume', n, { message: `volume "${n}" not found` });
      out.push(this.withUsage(v, usage));
    }
    return this.fillMountpoints(out, opts);
  }

  private checkNames(names: readonly string[]): void {
    if (names.length === 0) throw new InvalidArgumentError('names: expected at least one volume name, got none', { field: 'names' });
    if (names.length > MAX_VOLUMES_PER_REQUEST) throw new InvalidArgumentError(`names: expected at most ${MAX_VOLUMES_PER_REQUEST} names per request, got ${names.length}`, { field: 'names' });
  }

  /**
   * Removes volumes: every name is checked first (unknown or in use: nothing
   * is removed). With `force`, a volume whose node is gone or unreachable
   * loses its record anyway (its data stays on that node).
   */
  async remove(names: readonly string[], force: boolean, opts: CallOptions = {}): Promise<string[]> {
    const targets = await this.inspect(names, opts);
    for (const v of targets) {
      if (v.inUseBy.length > 0) {
        throw new FailedPreconditionError(`failed to remove volume "${v.name}": it is in use by ${v.inUseBy.length === 1 ? 'container' : 'containers'} ${v.inUseBy.map(q).join(', ')}; expected a volume no container uses (remove those containers first)`);
      }
    }
    const removed: string[] = [];
    for (const v of targets) {
      await this.removeOne(v, force, opts);
      removed.push(v.name);
    }
    return removed;
  }

  private async removeOne(v: Volume, force: boolean, opts: CallOptions): Promise<void> {
    const node = await this.nodeRecord(v.node, opts);
    try {
      if (!node) throw new NotFoundError('node', v.node, { message: `node "${v.node}" is not registered` });
      await this.deps.agents.volumes(v.node, node.spec?.address ?? '').removeVolume(v.name, opts);
    } catch (err) {
      const gone = isCode(err, 'not_found') || isCode(err, 'unavailable') || isCode(err, 'deadline_exceeded');
      if (!(force && gone)) {
        if (gone) throw new FailedPreconditionError(`failed to remove volume "${v.name}": its node "${v.node}" cannot be reached (${messageOf(err)}); expected a reachable node (use force to forget the volume; its data stays on that node)`, { cause: err });
        throw err;
      }
      this.log.warn('forgetting a volume whose node cannot be reached', { volume: v.name, node: v.node, error: messageOf(err) });
    }
    await this.deps.store.deleteVolumes([v.name], opts);
    this.log.info('volume removed', { volume: v.name, node: v.node });
  }

  /** Removes every volume (matching `selector`) that no container uses; volumes on unreachable nodes are skipped. */
  async prune(selector: Record<string, string> = {}, opts: CallOptions = {}): Promise<string[]> {
    const removed: string[] = [];
    for (const v of await this.list({ selector }, opts)) {
      if (v.inUseBy.length > 0) continue;
      try {
        await this.removeOne(v, false, opts);
        removed.push(v.name);
      } catch (err) {
        this.log.warn('failed to prune a volume', { volume: v.name, node: v.node, error: messageOf(err) });
      }
    }
    return removed;
  }

  /** The nodes of the volumes among `mounts` that exist already (for the scheduler). */
  async locate(mounts: readonly MountLike[], opts: CallOptions = {}): Promise<VolumeLocation[]> {
    const out: VolumeLocation[] = [];
    for (const m of mounts) {
      if (m.type !== 'volume' || out.some((v) => v.name === m.source)) continue;
      const v = await this.deps.store.getVolume(m.source, opts);
      if (v) out.push({ name: v.name, node: v.node });
    }
    return out;
  }

  /**
   * Records the volumes among `mounts` that have no record yet as living on
   * `node` (the agent creates them when the container starts). Returns the
   * names it recorded, for `release`. Fails when another caller recorded one
   * of them on a different node meanwhile (nothing is left recorded then).
   */
  async claim(mounts: readonly MountLike[], node: string, opts: CallOptions = {}): Promise<string[]> {
    const created: string[] = [];
    try {
      for (const m of mounts) {
        if (m.type !== 'volume' || created.includes(m.source)) continue;
        const have = await this.deps.store.getVolume(m.source, opts);
        if (have) {
          if (have.node !== node) throw new FailedPreconditionError(`failed to use volume "${m.source}": it is on node "${have.node}", not on "${node}"; try again`);
          continue;
        }
        try {
          await this.deps.store.createVolume({ name: m.source, node, mountpoint: '', createdUnixMs: this.now(), labels: {}, inUseBy: [] }, opts);
          created.push(m.source);
        } catch (err) {
          if (!isCode(err, 'already_exists')) throw err;
          const now = await this.deps.store.getVolume(m.source, opts);
          if (now && now.node !== node) throw new FailedPreconditionError(`failed to use volume "${m.source}": it was just created on node "${now.node}", not on "${node}"; try again`, { cause: err });
        }
      }
    } catch (err) {
      await this.release(created, node);
      throw err;
    }
    return created;
  }

  /** Undoes a claim: deletes the records and the directories (best effort; the container never started). */
  async release(names: readonly string[], node: string): Promise<void> {
    if (names.length === 0) return;
    const n = await this.nodeRecord(node, {}).catch(() => undefined);
    for (const name of names) {
      if (n) await this.deps.agents.volumes(node, n.spec?.address ?? '').removeVolume(name).catch((e: unknown) => this.log.warn('failed to remove a volume of a container that did not start', { volume: name, node, error: messageOf(e) }));
    }
    await this.deps.store.deleteVolumes(names).catch((e: unknown) => this.log.warn('failed to delete volume records of a container that did not start', { volumes: names, error: messageOf(e) }));
  }
}
