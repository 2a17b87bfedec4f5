/**
 * An in-memory DesiredStore with the same behaviour as the etcd one (the shared
 * suite in test/controller/store/ proves it). For tests and for tools that do
 * not need persistence. Writes are synchronous, so every call is atomic.
 */
import { randomUUID } from 'node:crypto';
import { AlreadyExistsError, CancelledError, NotFoundError, UnavailableError } from '../../lib/index.js';
import { Volume } from '../../proto/gen/berth/v1/volumes.js';
import { Event as EventCodec, WorkloadStatus as StatusCodec } from '../../proto/gen/berth/v1/types.js';
import type { Container, Event, NodeSpec, NodeStatus, WorkloadStatus } from '../../proto/gen/berth/v1/types.js';
import { Channel } from './channel.js';
import { chooseSubnet } from './subnets.js';
import { DEFAULT_CLUSTER_CIDR, nodeSubnetIndex, parseClusterCidr } from '../../lib/network.js';
import { checkContainerId, checkRecordChange, filterEvents, cloneContainer, cloneNode, cloneWorkload, copyMessage, matchesSelector, planApply, planDelete, planRegister, planScale, type WorkloadWrite } from './plan.js';
import type {
  VolumeStore, ApplyOptions, ApplyOutcome, CallOptions, ContainerFilter, EventFilter, ContainerRecordChange, DeleteOptions, DesiredStore, LabelSelector, LeaderElection, LeadershipTerm, Node, Workload,
  WorkloadChange, WorkloadDocument, WorkloadRevision,
} from './types.js';
import { EVENTS_KEPT } from './types.js';
import { WorkloadRevision as RevisionCodec } from '../../proto/gen/berth/v1/types.js';

export class MemoryStore implements DesiredStore, VolumeStore {
  private readonly volumes = new Map<string, Volume>();
  private readonly workloads = new Map<string, Workload>();
  private readonly revisions = new Map<string, Map<number, WorkloadRevision>>();
  private readonly nodes = new Map<string, Node>();
  private readonly containers = new Map<string, Container>();
  private readonly statuses = new Map<string, WorkloadStatus>();
  private events: Event[] = [];
  private readonly draining = new Set<string>();
  private readonly watchers = new Set<Channel<WorkloadChange>>();
  private closed = false;
  private readonly id = randomUUID();

  constructor(private readonly now: () => number = Date.now) {}

  private check(opts?: CallOptions): void {
    if (this.closed) throw new UnavailableError('failed to use the store: it is closed');
    if (opts?.signal?.aborted) throw new CancelledError();
  }

  private emit(change: WorkloadChange): void {
    for (const w of this.watchers) w.push({ type: change.type, workload: cloneWorkload(change.workload) });
  }

  private write(w: WorkloadWrite): void {
    const name = w.workload.metadata?.name ?? '';
    const existed = this.workloads.has(name);
    this.workloads.set(name, cloneWorkload(w.workload));
    if (w.revision) {
      let revs = this.revisions.get(name);
      if (!revs) this.revisions.set(name, (revs = new Map()));
      revs.set(w.revision.revision, copyMessage(RevisionCodec, w.revision));
      for (const r of [...revs.keys()]) if (r <= w.pruneThrough) revs.delete(r);
    }
    this.emit({ type: existed ? 'modified' : 'added', workload: w.workload });
  }

  async getWorkload(name: string, opts?: CallOptions): Promise<Workload> {
    this.check(opts);
    const w = this.workloads.get(name);
    if (!w) throw new NotFoundError('workload', name);
    return cloneWorkload(w);
  }

  async listWorkloads(selector?: LabelSelector, opts?: CallOptions): Promise<Workload[]> {
    this.check(opts);
    return [...this.workloads.values()]
      .filter((w) => matchesSelector(w.metadata?.labels, selector))
      .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
      .map(cloneWorkload);
  }

  async workloadHistory(name: string, opts?: CallOptions): Promise<WorkloadRevision[]> {
    this.check(opts);
    if (!this.workloads.has(name)) throw new NotFoundError('workload', name);
    return [...(this.revisions.get(name)?.values() ?? [])]
      .sort((a, b) => a.revision - b.revision)
      .map((r) => copyMessage(RevisionCodec, r));
  }

  async applyWorkloads(docs: readonly WorkloadDocument[], opts: ApplyOptions = {}): Promise<ApplyOutcome[]> {
    this.check(opts);
    const current = new Map(docs.map((d) => [d.name, this.workloads.get(d.name)]));
    const plan = planApply(docs, current, this.now(), opts.cause);
    if (!opts.dryRun) for (const w of plan.writes) this.write(w);
    return plan.outcomes;
  }

  async deleteWorkloads(names: readonly string[], opts: DeleteOptions = {}): Promise<string[]> {
    this.check(opts);
    const doomed = planDelete(names, (n) => this.workloads.has(n), opts.ignoreNotFound ?? false);
    for (const name of doomed) {
      const old = this.workloads.get(name) as Workload;
      this.workloads.delete(name);
      this.revisions.delete(name);
      this.statuses.delete(name);
      this.emit({ type: 'deleted', workload: old });
    }
    return doomed;
  }

  async scaleWorkload(name: string, replicas: number, opts?: CallOptions): Promise<Workload> {
    this.check(opts);
    const old = this.workloads.get(name);
    const w = planScale(name, old, replicas, this.now());
    if (!w) return cloneWorkload(old as Workload);
    this.write(w);
    return cloneWorkload(w.workload);
  }

  watchWorkloads(opts: CallOptions = {}): AsyncIterable<WorkloadChange> {
    this.check(opts);
    const ch = new Channel<WorkloadChange>(opts.signal);
    const names = [...this.workloads.keys()].sort();
    for (const n of names) ch.push({ type: 'added', workload: cloneWorkload(this.workloads.get(n) as Workload) });
    this.watchers.add(ch);
    ch.onClosed(() => this.watchers.delete(ch));
    return ch;
  }

  async registerNode(spec: NodeSpec, opts?: CallOptions): Promise<Node> {
    this.check(opts);
    const old = this.nodes.get(spec.name);
    const cluster = parseClusterCidr(DEFAULT_CLUSTER_CIDR);
    const owners = new Map<number, string>();
    for (const n of this.nodes.values()) {
      const i = nodeSubnetIndex(cluster, n.network?.subnet ?? '');
      if (i !== undefined) owners.set(i, n.spec?.name ?? '');
    }
    const { subnet } = chooseSubnet(cluster, spec.name, old?.network?.subnet, owners);
    const node: Node = { ...planRegister(old, spec, this.now()), network: { subnet } };
    this.nodes.set(spec.name, node);
    return cloneNode(node);
  }

  async deleteNode(name: string, opts?: CallOptions): Promise<void> {
    this.check(opts);
    if (!this.nodes.has(name)) throw new NotFoundError('node', name);
    this.nodes.delete(name);
    this.draining.delete(name);
  }

  async getNode(name: string, opts?: CallOptions): Promise<Node> {
    this.check(opts);
    const n = this.nodes.get(name);
    if (!n) throw new NotFoundError('node', name);
    return cloneNode(n);
  }

  async listNodes(opts?: CallOptions): Promise<Node[]> {
    this.check(opts);
    return [...this.nodes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, n]) => cloneNode(n));
  }

  async setNodeCordoned(name: string, cordoned: boolean, opts?: CallOptions): Promise<Node> {
    const n = await this.getNode(name, opts);
    if (n.spec) n.spec.cordoned = cordoned;
    if (!cordoned) this.draining.delete(name);
    this.nodes.set(name, n);
    return cloneNode(n);
  }

  async drainNode(name: string, opts?: CallOptions): Promise<Node> {
    const n = await this.setNodeCordoned(name, true, opts);
    this.draining.add(name);
    return n;
  }

  async listDrainingNodes(opts?: CallOptions): Promise<string[]> {
    this.check(opts);
    return [...this.draining].sort();
  }

  async setNodeStatus(name: string, status: NodeStatus, opts?: CallOptions): Promise<Node> {
    const n = await this.getNode(name, opts);
    n.status = { ...status };
    this.nodes.set(name, n);
    return cloneNode(n);
  }

  async listContainerRecords(filter: ContainerFilter = {}, opts?: CallOptions): Promise<Container[]> {
    this.check(opts);
    return [...this.containers.values()]
      .filter((c) => (filter.workload === undefined || c.workload === filter.workload) && (filter.node === undefined || c.node === filter.node))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map(cloneContainer);
  }

  async getContainerRecord(id: string, opts?: CallOptions): Promise<Container> {
    this.check(opts);
    checkContainerId(id);
    const c = this.containers.get(id);
    if (!c) throw new NotFoundError('container', id);
    return cloneContainer(c);
  }

  async writeContainerRecords(change: ContainerRecordChange, opts?: CallOptions): Promise<void> {
    this.check(opts);
    const put = change.put ?? [];
    const del = checkRecordChange(put, change.delete ?? []);
    for (const c of put) this.containers.set(c.id, cloneContainer(c));
    for (const id of del) this.containers.delete(id);
  }

  async getWorkloadStatus(name: string, opts?: CallOptions): Promise<WorkloadStatus | undefined> {
    this.check(opts);
    const s = this.statuses.get(name);
    return s ? copyMessage(StatusCodec, s) : undefined;
  }

  async setWorkloadStatus(name: string, status: WorkloadStatus, opts?: CallOptions): Promise<void> {
    this.check(opts);
    this.statuses.set(name, copyMessage(StatusCodec, status));
  }

  async appendEvents(events: readonly Event[], opts?: CallOptions): Promise<void> {
    this.check(opts);
    this.events.push(...events.map((e) => copyMessage(EventCodec, e)));
    // Stable sort keeps the order of events with equal times, as the etcd keys do within one append.
    this.events.sort((a, b) => a.unixMs - b.unixMs);
    if (this.events.length > EVENTS_KEPT) this.events = this.events.slice(this.events.length - EVENTS_KEPT);
  }

  async listEvents(filter: EventFilter = {}, opts?: CallOptions): Promise<Event[]> {
    this.check(opts);
    return filterEvents(this.events, filter).map((e) => copyMessage(EventCodec, e));
  }

  async listVolumes(opts?: CallOptions): Promise<Volume[]> {
    this.check(opts);
    return [...this.volumes.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((v) => copyMessage(Volume, v));
  }

  async getVolume(name: string, opts?: CallOptions): Promise<Volume | undefined> {
    this.check(opts);
    const v = this.volumes.get(name);
    return v ? copyMessage(Volume, v) : undefined;
  }

  async createVolume(volume: Volume, opts?: CallOptions): Promise<Volume> {
    this.check(opts);
    if (this.volumes.has(volume.name)) throw new AlreadyExistsError('volume', volume.name, { message: `volume "${volume.name}" already exists` });
    const stored = copyMessage(Volume, { ...volume, inUseBy: [] });
    this.volumes.set(volume.name, stored);
    return copyMessage(Volume, stored);
  }

  async putVolume(volume: Volume, opts?: CallOptions): Promise<void> {
    this.check(opts);
    this.volumes.set(volume.name, copyMessage(Volume, { ...volume, inUseBy: [] }));
  }

  async deleteVolumes(names: readonly string[], opts?: CallOptions): Promise<void> {
    this.check(opts);
    for (const n of names) this.volumes.delete(n);
  }

  async clusterId(opts?: CallOptions): Promise<string> {
    this.check(opts);
    return this.id;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers.clear();
  }
}

/** An election with one candidate: leader from start() until stop(). For tests and single-controller tools. */
export class SoloElection implements LeaderElection {
  private term: (LeadershipTerm & { ctrl: AbortController }) | undefined;
  private readonly listeners = new Set<(t: LeadershipTerm) => void>();
  constructor(readonly controllerId: string) {}
  start(): void {
    if (this.term) return;
    const ctrl = new AbortController();
    this.term = { controllerId: this.controllerId, startedUnixMs: Date.now(), signal: ctrl.signal, ctrl };
    for (const fn of this.listeners) fn(this.term);
  }
  isLeader(): boolean {
    return this.term !== undefined;
  }
  leaderId(): string | undefined {
    return this.term ? this.controllerId : undefined;
  }
  currentTerm(): LeadershipTerm | undefined {
    return this.term;
  }
  onTerm(fn: (term: LeadershipTerm) => void): () => void {
    this.listeners.add(fn);
    if (this.term) fn(this.term);
    return () => this.listeners.delete(fn);
  }
  async stop(): Promise<void> {
    this.term?.ctrl.abort();
    this.term = undefined;
  }
}
