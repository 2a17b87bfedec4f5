/**
 * The DesiredStore on etcd: the only file (with election.ts beside it) that
 * imports etcd3. Key layout: keys.ts and docs/internals.md. Values are protobuf.
 *
 * Every write is one etcd transaction guarded by the mod revision of each key
 * the decision was based on; on a conflict the read-decide-write cycle runs
 * again, up to CONFLICT_ATTEMPTS times, then fails with ConflictError.
 */
import { randomUUID } from 'node:crypto';
import { Etcd3, isRecoverableError, type ICompare, type IKeyValue, type IRequestOp, type ITxnResponse, type Watcher } from 'etcd3';
import { AlreadyExistsError, BerthError, CancelledError, InternalError, InvalidArgumentError, NotFoundError, UnavailableError, messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { Container, Event, Node, Workload, WorkloadRevision, WorkloadStatus } from '../../proto/gen/berth/v1/types.js';
import type { NodeSpec, NodeStatus } from '../../proto/gen/berth/v1/types.js';
import { Volume } from '../../proto/gen/berth/v1/volumes.js';
import { Channel } from './channel.js';
import { chooseSubnet, subnetIndexOfKey, subnetKey, subnetsPrefix } from './subnets.js';
import { DEFAULT_CLUSTER_CIDR, parseClusterCidr, type Ipv4Cidr } from '../../lib/network.js';
import { ConflictError, EtcdUnavailableError } from './errors.js';
import { KeyLayout, prefixEnd } from './keys.js';
import { checkContainerId, checkRecordChange, filterEvents, cloneNode, cloneWorkload, matchesSelector, planApply, planDelete, planRegister, planScale, type WorkloadWrite } from './plan.js';
import { CONTAINER_OPS_PER_TXN, EVENTS_KEPT } from './types.js';
import type {
  ApplyOptions, ApplyOutcome, CallOptions, ContainerFilter, EventFilter, ContainerRecordChange, DeleteOptions, DesiredStore, LabelSelector, VolumeStore,
  WorkloadChange, WorkloadDocument,
} from './types.js';

/** Attempts of one read-decide-write cycle before ConflictError. */
export const CONFLICT_ATTEMPTS = 5;
/** Container record batches written at once by writeContainerRecords. */
export const CONTAINER_TXNS_IN_FLIGHT = 8;
/** etcd's default --max-txn-ops; a write needing more operations is refused up front. */
export const MAX_TXN_OPS = 128;

export interface EtcdStoreOptions {
  /** Client URLs such as http://127.0.0.1:2379. */
  endpoints: string[];
  /** Key prefix; "/berth/v1/" unless a test isolates itself. */
  prefix?: string;
  /** Deadline of each etcd call, in ms (default 5000). */
  timeoutMs?: number;
  logger?: Logger;
  now?: () => number;
  /** Test hook: runs between the read and the guarded write of every attempt (to inject conflicts). */
  beforeCommit?: (attempt: number) => Promise<void>;
  /** Range node container subnets (/24s) are allocated from; default 10.244.0.0/16. */
  clusterCidr?: string;
}

/** The current value of a key and the mod revision to compare against (0 when absent). */
interface Read<T> {
  value: T | undefined;
  modRevision: string;
}

export class EtcdStore implements DesiredStore, VolumeStore {
  /** @internal the client, for election.ts in this directory only. */
  readonly client: Etcd3;
  readonly keys: KeyLayout;
  readonly endpoints: readonly string[];
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly cluster: Ipv4Cidr;
  private readonly beforeCommit: ((attempt: number) => Promise<void>) | undefined;
  private readonly watchers = new Set<Channel<WorkloadChange>>();
  private closed = false;
  private cachedClusterId: string | undefined;
  private eventSeq = 0;

  constructor(opts: EtcdStoreOptions) {
    if (opts.endpoints.length === 0) throw new InternalError('failed to create the etcd store: no endpoints given');
    this.endpoints = [...opts.endpoints];
    this.keys = new KeyLayout(opts.prefix);
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'store' });
    this.now = opts.now ?? Date.now;
    this.beforeCommit = opts.beforeCommit;
    this.cluster = parseClusterCidr(opts.clusterCidr ?? DEFAULT_CLUSTER_CIDR);
    this.client = new Etcd3({
      hosts: [...this.endpoints],
      dialTimeout: Math.min(this.timeoutMs, 3000),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeoutMs }),
    });
  }

  /** Maps an etcd3 error to a Berth error; Berth errors pass through. */
  mapError(err: unknown, what: string): BerthError {
    if (err instanceof BerthError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const name = e.constructor?.name ?? e.name;
    if (
      isRecoverableError(e) ||
      /Unavailable|DeadlineExceeded|BrokenCircuit|ConnectFailed|Cancelled|TaskCancelled/.test(name) ||
      /ECONNREFUSED|deadline|unavailable|no connection/i.test(e.message)
    ) {
      return new EtcdUnavailableError(this.endpoints, { detail: e.message, cause: err });
    }
    return new InternalError(`failed to ${what}: ${e.message}`, { cause: err });
  }

  /** Runs one etcd operation with the store's deadline, the caller's signal and error mapping. */
  async call<T>(what: string, opts: CallOptions | undefined, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new UnavailableError(`failed to ${what}: the store is closed`);
    const signal = opts?.signal;
    if (signal?.aborted) throw new CancelledError(`failed to ${what}: cancelled`);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new CancelledError(`failed to ${what}: cancelled`));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    // A backstop: etcd3 retries across hosts, so bound the whole operation too.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new EtcdUnavailableError(this.endpoints, { detail: `no answer within ${this.timeoutMs * 2} ms` })), this.timeoutMs * 2);
    });
    try {
      return await Promise.race([fn(), aborted, timeout]);
    } catch (err) {
      throw this.mapError(err, what);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Checks that etcd answers (used at start-up). */
  async ping(opts?: CallOptions): Promise<void> {
    await this.call('reach etcd', opts, () => this.client.kv.range({ key: Buffer.from(this.keys.leader()), count_only: true }));
  }

  private async txn(what: string, opts: CallOptions | undefined, compare: ICompare[], success: IRequestOp[], failure: IRequestOp[] = []): Promise<ITxnResponse> {
    return this.call(what, opts, () => this.client.kv.txn({ compare, success, failure }));
  }

  /** Reads several keys at one etcd revision. */
  private async readMany<T>(what: string, keys: string[], decode: (b: Buffer) => T, opts?: CallOptions): Promise<Read<T>[]> {
    if (keys.length === 0) return [];
    const res = await this.txn(what, opts, [], keys.map((k) => ({ request_range: { key: Buffer.from(k) } })));
    return res.responses.map((r, i) => {
      const kv = r.response_range?.kvs[0];
      if (!kv) return { value: undefined, modRevision: '0' };
      try {
        return { value: decode(kv.value), modRevision: kv.mod_revision };
      } catch (err) {
        throw new InternalError(`failed to decode "${keys[i]}": ${messageOf(err)}`, { cause: err });
      }
    });
  }

  private async listPrefix(what: string, prefix: string, opts?: CallOptions): Promise<{ kvs: IKeyValue[]; revision: string }> {
    const res = await this.call(what, opts, () =>
      this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix), sort_order: 'Ascend', sort_target: 'Key' }),
    );
    return { kvs: res.kvs, revision: res.header.revision };
  }

  private static unchanged(key: string, modRevision: string): ICompare {
    return { key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: modRevision };
  }

  private writeOps(w: WorkloadWrite): IRequestOp[] {
    const name = w.workload.metadata?.name ?? '';
    const ops: IRequestOp[] = [
      { request_put: { key: Buffer.from(this.keys.workload(name)), value: Buffer.from(Workload.encode(w.workload).finish()) } },
    ];
    if (w.revision) {
      ops.push({
        request_put: {
          key: Buffer.from(this.keys.revision(name, w.revision.revision)),
          value: Buffer.from(WorkloadRevision.encode(w.revision).finish()),
        },
      });
    }
    if (w.pruneThrough > 0) {
      ops.push({
        request_delete_range: { key: Buffer.from(this.keys.revision(name, 0)), range_end: Buffer.from(this.keys.revision(name, w.pruneThrough + 1)) },
      });
    }
    return ops;
  }

  /** Runs read-decide-write until the guarded transaction commits. */
  private async cas<T>(what: string, keys: string[], opts: CallOptions | undefined, attempt: () => Promise<{ compare: ICompare[]; ops: IRequestOp[]; result: T }>): Promise<T> {
    for (let i = 0; i < CONFLICT_ATTEMPTS; i++) {
      const { compare, ops, result } = await attempt();
      if (ops.length === 0) return result;
      if (ops.length > MAX_TXN_OPS || compare.length > MAX_TXN_OPS) {
        throw new InvalidArgumentError(`failed to ${what}: the change needs ${Math.max(ops.length, compare.length)} etcd operations in one transaction; expected at most ${MAX_TXN_OPS} (apply fewer workloads at once)`);
      }
      if (this.beforeCommit) await this.beforeCommit(i + 1);
      const res = await this.txn(what, opts, compare, ops);
      if (res.succeeded) return result;
      this.logger.debug('write conflict; retrying', { what, attempt: i + 1 });
    }
    throw new ConflictError(`failed to ${what}: other writers kept changing ${keys.map((k) => `"${k}"`).join(', ')}; tried ${CONFLICT_ATTEMPTS} times, try again`, { keys });
  }

  async getWorkload(name: string, opts?: CallOptions): Promise<Workload> {
    const [r] = await this.readMany(`get workload "${name}"`, [this.keys.workload(name)], (b) => Workload.decode(b), opts);
    if (!r?.value) throw new NotFoundError('workload', name);
    return r.value;
  }

  async listWorkloads(selector?: LabelSelector, opts?: CallOptions): Promise<Workload[]> {
    const { kvs } = await this.listPrefix('list workloads', this.keys.workloads(), opts);
    return kvs.map((kv) => Workload.decode(kv.value)).filter((w) => matchesSelector(w.metadata?.labels, selector));
  }

  async workloadHistory(name: string, opts?: CallOptions): Promise<WorkloadRevision[]> {
    const what = `read the history of workload "${name}"`;
    const res = await this.txn(what, opts, [], [
      { request_range: { key: Buffer.from(this.keys.workload(name)), count_only: true } },
      { request_range: { key: Buffer.from(this.keys.revisions(name)), range_end: prefixEnd(this.keys.revisions(name)), sort_order: 'Ascend', sort_target: 'Key' } },
    ]);
    if (Number(res.responses[0]?.response_range.count ?? 0) === 0) throw new NotFoundError('workload', name);
    return (res.responses[1]?.response_range.kvs ?? []).map((kv) => WorkloadRevision.decode(kv.value));
  }

  async applyWorkloads(docs: readonly WorkloadDocument[], opts: ApplyOptions = {}): Promise<ApplyOutcome[]> {
    const what = docs.length === 1 ? `apply workload "${docs[0]?.name}"` : `apply ${docs.length} workloads`;
    const keys = docs.map((d) => this.keys.workload(d.name));
    return this.cas(what, keys, opts, async () => {
      const reads = await this.readMany(what, keys, (b) => Workload.decode(b), opts);
      const current = new Map(docs.map((d, i) => [d.name, reads[i]?.value]));
      const plan = planApply(docs, current, this.now(), opts.cause);
      if (opts.dryRun || plan.writes.length === 0) return { compare: [], ops: [], result: plan.outcomes };
      return {
        compare: keys.map((k, i) => EtcdStore.unchanged(k, reads[i]?.modRevision ?? '0')),
        ops: plan.writes.flatMap((w) => this.writeOps(w)),
        result: plan.outcomes,
      };
    });
  }

  async deleteWorkloads(names: readonly string[], opts: DeleteOptions = {}): Promise<string[]> {
    const unique = [...new Set(names)];
    const what = unique.length === 1 ? `delete workload "${unique[0]}"` : `delete ${unique.length} workloads`;
    const keys = unique.map((n) => this.keys.workload(n));
    return this.cas(what, keys, opts, async () => {
      const reads = await this.readMany(what, keys, (b) => b, opts);
      const exists = new Map(unique.map((n, i) => [n, reads[i]?.value !== undefined]));
      const doomed = planDelete(unique, (n) => exists.get(n) === true, opts.ignoreNotFound ?? false);
      return {
        compare: keys.map((k, i) => EtcdStore.unchanged(k, reads[i]?.modRevision ?? '0')),
        ops: doomed.flatMap((n): IRequestOp[] => [
          { request_delete_range: { key: Buffer.from(this.keys.workload(n)) } },
          { request_delete_range: { key: Buffer.from(this.keys.revisions(n)), range_end: prefixEnd(this.keys.revisions(n)) } },
          { request_delete_range: { key: Buffer.from(this.keys.workloadStatus(n)) } },
        ]),
        result: doomed,
      };
    });
  }

  async scaleWorkload(name: string, replicas: number, opts?: CallOptions): Promise<Workload> {
    const what = `scale workload "${name}"`;
    const key = this.keys.workload(name);
    return this.cas(what, [key], opts, async () => {
      const [r] = await this.readMany(what, [key], (b) => Workload.decode(b), opts);
      const w = planScale(name, r?.value, replicas, this.now());
      if (!w) return { compare: [], ops: [], result: r?.value as Workload };
      return { compare: [EtcdStore.unchanged(key, r?.modRevision ?? '0')], ops: this.writeOps(w), result: cloneWorkload(w.workload) };
    });
  }

  watchWorkloads(opts: CallOptions = {}): AsyncIterable<WorkloadChange> {
    const ch = new Channel<WorkloadChange>(opts.signal);
    this.watchers.add(ch);
    ch.onClosed(() => this.watchers.delete(ch));
    const prefix = this.keys.workloads();
    const run = async (): Promise<void> => {
      const { kvs, revision } = await this.listPrefix('watch workloads', prefix, opts);
      for (const kv of kvs) ch.push({ type: 'added', workload: Workload.decode(kv.value) });
      if (ch.closed) return;
      const watcher: Watcher = await this.call('watch workloads', opts, () =>
        this.client.watch().prefix(prefix).withPreviousKV().startRevision(String(BigInt(revision) + 1n)).create(),
      );
      ch.onClosed(() => {
        watcher.cancel().catch(() => undefined);
      });
      watcher.on('put', (kv) => {
        try {
          ch.push({ type: kv.create_revision === kv.mod_revision ? 'added' : 'modified', workload: Workload.decode(kv.value) });
        } catch (err) {
          ch.fail(new InternalError(`failed to decode "${kv.key.toString()}": ${messageOf(err)}`));
        }
      });
      watcher.on('delete', (kv, previous) => {
        const name = this.keys.nameOf(kv.key.toString(), prefix);
        const workload = previous && previous.value.length > 0 ? Workload.decode(previous.value) : { metadata: { name, labels: {}, uid: '', createdUnixMs: 0, updatedUnixMs: 0 } };
        ch.push({ type: 'deleted', workload });
      });
      // etcd3 reconnects the stream by itself; errors are logged, not fatal.
      watcher.on('error', (err: unknown) => this.logger.warn('workload watch interrupted; reconnecting', { error: messageOf(err) }));
    };
    run().catch((err: unknown) => ch.fail(this.mapError(err, 'watch workloads')));
    return ch;
  }

  private async updateNode(name: string, what: string, opts: CallOptions | undefined, change: (old: Node | undefined) => Node): Promise<Node> {
    const key = this.keys.node(name);
    return this.cas(what, [key], opts, async () => {
      const [r] = await this.readMany(what, [key], (b) => Node.decode(b), opts);
      const next = change(r?.value);
      return {
        compare: [EtcdStore.unchanged(key, r?.modRevision ?? '0')],
        ops: [{ request_put: { key: Buffer.from(key), value: Buffer.from(Node.encode(next).finish()) } }],
        result: cloneNode(next),
      };
    });
  }

  /** Creates or refreshes the node record and gives the node a container subnet (its own again when it has one), atomically. */
  async registerNode(spec: NodeSpec, opts?: CallOptions): Promise<Node> {
    const what = `register node "${spec.name}"`;
    const key = this.keys.node(spec.name);
    const prefix = this.keys.prefix;
    return this.cas(what, [key, subnetsPrefix(prefix)], opts, async () => {
      const [r] = await this.readMany(what, [key], (b) => Node.decode(b), opts);
      const { kvs } = await this.listPrefix(what, subnetsPrefix(prefix), opts);
      const owners = new Map<number, string>();
      for (const kv of kvs) {
        const i = subnetIndexOfKey(prefix, kv.key.toString());
        if (i !== undefined) owners.set(i, kv.value.toString());
      }
      const { index, subnet } = chooseSubnet(this.cluster, spec.name, r?.value?.network?.subnet, owners);
      const next: Node = { ...planRegister(r?.value, spec, this.now()), network: { subnet } };
      const sk = Buffer.from(subnetKey(prefix, index));
      const owned = owners.get(index) === spec.name;
      return {
        compare: [EtcdStore.unchanged(key, r?.modRevision ?? '0'), ...(owned ? [] : [{ key: sk, target: 'Create', result: 'Equal', create_revision: 0 } as ICompare])],
        ops: [
          { request_put: { key: Buffer.from(key), value: Buffer.from(Node.encode(next).finish()) } },
          ...(owned ? [] : [{ request_put: { key: sk, value: Buffer.from(spec.name) } }]),
        ],
        result: cloneNode(next),
      };
    });
  }

  /** Deletes a node record, its drain mark and its subnet in one write (the subnet becomes free). */
  async deleteNode(name: string, opts?: CallOptions): Promise<void> {
    const what = `delete node "${name}"`;
    const key = this.keys.node(name);
    const prefix = this.keys.prefix;
    await this.cas(what, [key], opts, async () => {
      const [r] = await this.readMany(what, [key], (b) => Node.decode(b), opts);
      if (!r?.value) throw new NotFoundError('node', name);
      const { kvs } = await this.listPrefix(what, subnetsPrefix(prefix), opts);
      const mine = kvs.filter((kv) => kv.value.toString() === name && subnetIndexOfKey(prefix, kv.key.toString()) !== undefined);
      return {
        compare: [EtcdStore.unchanged(key, r.modRevision)],
        ops: [
          { request_delete_range: { key: Buffer.from(key) } },
          { request_delete_range: { key: Buffer.from(this.keys.drain(name)) } },
          ...mine.map((kv): IRequestOp => ({ request_delete_range: { key: kv.key } })),
        ],
        result: undefined,
      };
    });
  }

  async getNode(name: string, opts?: CallOptions): Promise<Node> {
    const [r] = await this.readMany(`get node "${name}"`, [this.keys.node(name)], (b) => Node.decode(b), opts);
    if (!r?.value) throw new NotFoundError('node', name);
    return r.value;
  }

  async listNodes(opts?: CallOptions): Promise<Node[]> {
    const { kvs } = await this.listPrefix('list nodes', this.keys.nodes(), opts);
    return kvs.map((kv) => Node.decode(kv.value));
  }

  async setNodeCordoned(name: string, cordoned: boolean, opts?: CallOptions): Promise<Node> {
    return this.updateNodeAnd(name, `${cordoned ? 'cordon' : 'uncordon'} node "${name}"`, cordoned, opts, cordoned
      ? []
      : [{ request_delete_range: { key: Buffer.from(this.keys.drain(name)) } }]);
  }

  async drainNode(name: string, opts?: CallOptions): Promise<Node> {
    return this.updateNodeAnd(name, `drain node "${name}"`, true, opts, [
      { request_put: { key: Buffer.from(this.keys.drain(name)), value: Buffer.from(String(this.now())) } },
    ]);
  }

  /** Sets the cordon flag of an existing node and runs `extra` in the same transaction. */
  private async updateNodeAnd(name: string, what: string, cordoned: boolean, opts: CallOptions | undefined, extra: IRequestOp[]): Promise<Node> {
    const key = this.keys.node(name);
    return this.cas(what, [key], opts, async () => {
      const [r] = await this.readMany(what, [key], (b) => Node.decode(b), opts);
      if (!r?.value) throw new NotFoundError('node', name);
      const next: Node = { ...r.value, spec: { ...(r.value.spec as NodeSpec), cordoned } };
      return {
        compare: [EtcdStore.unchanged(key, r.modRevision)],
        ops: [{ request_put: { key: Buffer.from(key), value: Buffer.from(Node.encode(next).finish()) } }, ...extra],
        result: cloneNode(next),
      };
    });
  }

  async listDrainingNodes(opts?: CallOptions): Promise<string[]> {
    const { kvs } = await this.listPrefix('list draining nodes', this.keys.drains(), opts);
    return kvs.map((kv) => this.keys.nameOf(kv.key.toString(), this.keys.drains()));
  }

  async setNodeStatus(name: string, status: NodeStatus, opts?: CallOptions): Promise<Node> {
    return this.updateNode(name, `update the status of node "${name}"`, opts, (old) => {
      if (!old) throw new NotFoundError('node', name);
      return { ...old, status: { ...status } };
    });
  }

  async listContainerRecords(filter: ContainerFilter = {}, opts?: CallOptions): Promise<Container[]> {
    const { kvs } = await this.listPrefix('list container records', this.keys.containers(), opts);
    const out: Container[] = [];
    for (const kv of kvs) {
      let c: Container;
      try {
        c = Container.decode(kv.value);
      } catch (err) {
        throw new InternalError(`failed to decode "${kv.key.toString()}": ${messageOf(err)}`, { cause: err });
      }
      if (filter.workload !== undefined && c.workload !== filter.workload) continue;
      if (filter.node !== undefined && c.node !== filter.node) continue;
      out.push(c);
    }
    return out;
  }

  async getContainerRecord(id: string, opts?: CallOptions): Promise<Container> {
    checkContainerId(id);
    const [r] = await this.readMany(`get container "${id}"`, [this.keys.container(id)], (b) => Container.decode(b), opts);
    if (!r?.value) throw new NotFoundError('container', id);
    return r.value;
  }

  async writeContainerRecords(change: ContainerRecordChange, opts?: CallOptions): Promise<void> {
    const put = change.put ?? [];
    const del = checkRecordChange(put, change.delete ?? []);
    const ops: IRequestOp[] = [
      ...put.map((c): IRequestOp => ({ request_put: { key: Buffer.from(this.keys.container(c.id)), value: Buffer.from(Container.encode(c).finish()) } })),
      ...del.map((id): IRequestOp => ({ request_delete_range: { key: Buffer.from(this.keys.container(id)) } })),
    ];
    const batches: IRequestOp[][] = [];
    for (let i = 0; i < ops.length; i += CONTAINER_OPS_PER_TXN) batches.push(ops.slice(i, i + CONTAINER_OPS_PER_TXN));
    // Batches touch different keys unless an id is both put and deleted: then they go in order.
    const puts = new Set(put.map((c) => c.id));
    const inOrder = del.some((id) => puts.has(id));
    const write = (batch: IRequestOp[]): Promise<unknown> => this.txn(`write ${batch.length} container records`, opts, [], batch);
    if (inOrder) {
      for (const batch of batches) await write(batch);
      return;
    }
    // Placing thousands of replicas is tens of batches: several in flight rather than one etcd round trip each.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batches.length) await write(batches[next++] as IRequestOp[]);
    };
    await Promise.all(Array.from({ length: Math.min(CONTAINER_TXNS_IN_FLIGHT, batches.length) }, worker));
  }

  async getWorkloadStatus(name: string, opts?: CallOptions): Promise<WorkloadStatus | undefined> {
    const [r] = await this.readMany(`get the status of workload "${name}"`, [this.keys.workloadStatus(name)], (b) => WorkloadStatus.decode(b), opts);
    return r?.value;
  }

  async setWorkloadStatus(name: string, status: WorkloadStatus, opts?: CallOptions): Promise<void> {
    const key = this.keys.workloadStatus(name);
    await this.call(`set the status of workload "${name}"`, opts, () =>
      this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(WorkloadStatus.encode(status).finish()) }),
    );
  }

  async appendEvents(events: readonly Event[], opts?: CallOptions): Promise<void> {
    if (events.length === 0) return;
    // Of a burst larger than the history, only the newest EVENTS_KEPT would survive the prune below:
    // write only those (placing 10,000 replicas makes 20,000 events at once).
    const kept = events.length > EVENTS_KEPT ? [...events].sort((a, b) => a.unixMs - b.unixMs).slice(events.length - EVENTS_KEPT) : events;
    const ops: IRequestOp[] = kept.map((e): IRequestOp => ({
      // A counter keeps events of one millisecond in append order; the random part keeps controllers apart.
      request_put: { key: Buffer.from(this.keys.event(e.unixMs, `${(this.eventSeq++ % 0x100000000).toString(16).padStart(8, '0')}${randomUUID().slice(0, 4)}`)), value: Buffer.from(Event.encode(e).finish()) },
    }));
    for (let i = 0; i < ops.length; i += CONTAINER_OPS_PER_TXN) {
      await this.txn(`record ${Math.min(CONTAINER_OPS_PER_TXN, ops.length - i)} events`, opts, [], ops.slice(i, i + CONTAINER_OPS_PER_TXN));
    }
    // Prune with some slack so that not every append pays for it.
    const prefix = this.keys.events();
    const counted = await this.call('count events', opts, () =>
      this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix), count_only: true }));
    const excess = Number(counted.count) - EVENTS_KEPT;
    if (excess <= EVENTS_KEPT / 10) return;
    const oldest = await this.call('list old events', opts, () =>
      this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix), keys_only: true, limit: String(excess), sort_order: 'Ascend', sort_target: 'Key' }));
    const last = oldest.kvs[oldest.kvs.length - 1]?.key;
    if (!last) return;
    await this.call('prune events', opts, () =>
      this.client.kv.deleteRange({ key: Buffer.from(prefix), range_end: Buffer.concat([last, Buffer.from([0])]) }));
  }

  async listEvents(filter: EventFilter = {}, opts?: CallOptions): Promise<Event[]> {
    const start = filter.sinceUnixMs ? this.keys.event(filter.sinceUnixMs, '') : this.keys.events();
    const res = await this.call('list events', opts, () =>
      this.client.kv.range({ key: Buffer.from(start), range_end: prefixEnd(this.keys.events()), sort_order: 'Ascend', sort_target: 'Key' }));
    return filterEvents(res.kvs.map((kv) => Event.decode(kv.value)), filter);
  }

  async listVolumes(opts?: CallOptions): Promise<Volume[]> {
    const { kvs } = await this.listPrefix('list volumes', this.keys.volumes(), opts);
    return kvs.map((kv) => Volume.decode(kv.value));
  }

  async getVolume(name: string, opts?: CallOptions): Promise<Volume | undefined> {
    const [r] = await this.readMany(`get volume "${name}"`, [this.keys.volume(name)], (b) => Volume.decode(b), opts);
    return r?.value;
  }

  async createVolume(volume: Volume, opts?: CallOptions): Promise<Volume> {
    const key = Buffer.from(this.keys.volume(volume.name));
    const stored: Volume = { ...volume, inUseBy: [] };
    const res = await this.txn(`create volume "${volume.name}"`, opts,
      [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
      [{ request_put: { key, value: Buffer.from(Volume.encode(stored).finish()) } }]);
    if (!res.succeeded) throw new AlreadyExistsError('volume', volume.name, { message: `volume "${volume.name}" already exists` });
    return stored;
  }

  async putVolume(volume: Volume, opts?: CallOptions): Promise<void> {
    const stored: Volume = { ...volume, inUseBy: [] };
    await this.call(`write volume "${volume.name}"`, opts, () =>
      this.client.kv.put({ key: Buffer.from(this.keys.volume(volume.name)), value: Buffer.from(Volume.encode(stored).finish()) }));
  }

  async deleteVolumes(names: readonly string[], opts?: CallOptions): Promise<void> {
    for (let i = 0; i < names.length; i += CONTAINER_OPS_PER_TXN) {
      const batch = names.slice(i, i + CONTAINER_OPS_PER_TXN);
      await this.txn(`delete ${batch.length} volumes`, opts, [], batch.map((n): IRequestOp => ({ request_delete_range: { key: Buffer.from(this.keys.volume(n)) } })));
    }
  }

  async clusterId(opts?: CallOptions): Promise<string> {
    if (this.cachedClusterId) return this.cachedClusterId;
    const key = Buffer.from(this.keys.clusterId());
    const res = await this.txn('read the cluster id', opts,
      [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
      [{ request_put: { key, value: Buffer.from(randomUUID()) } }, { request_range: { key } }],
      [{ request_range: { key } }],
    );
    const id = res.responses[res.succeeded ? 1 : 0]?.response_range?.kvs[0]?.value.toString();
    if (!id) throw new InternalError('failed to read the cluster id: the key is empty');
    this.cachedClusterId = id;
    return id;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers.clear();
    this.client.close();
  }
}
