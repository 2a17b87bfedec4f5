/**
 * Node membership: which nodes exist (records in the store, created by
 * NodeService.Register) and which are alive (heartbeats on NATS).
 *
 * Vocabulary
 * - record: the stored Node (spec from the agent, status last persisted by a leader).
 * - live status: this controller's own view from heartbeats (tracker.ts). Every
 *   controller keeps one; it is what NodeService.List shows.
 * - transition: a node's live state changing (Ready <-> NotReady). Every
 *   controller logs its transitions; only the leader persists them in the record.
 *
 * Lifecycle: start() subscribes to heartbeats and starts the check loop (every
 * CHECK_INTERVAL_MS) and the record refresh; stop() ends both and unsubscribes.
 *
 * A controller that just started has heard nothing yet, so every node looks
 * NotReady; the leader therefore persists NotReady only after it has been
 * listening for a full READY_WINDOW_MS, so a failover does not mark a healthy
 * fleet NotReady for a second.
 */
import { messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { NodeState, type Node, type NodeSpec, type NodeStatus } from '../../proto/gen/berth/v1/types.js';
import type { Heartbeat } from '../../proto/gen/berth/v1/status.js';
import type { CallOptions, LeaderElection, NodeStore } from '../store/index.js';
import type { HeartbeatSource } from './nats.js';
import { CHECK_INTERVAL_MS, HeartbeatTracker, READY_WINDOW_MS, type LiveStatus } from './tracker.js';

/** How often the record cache is re-read from the store. */
export const REFRESH_INTERVAL_MS = 2000;

export interface MembershipOptions {
  store: NodeStore;
  election: Pick<LeaderElection, 'isLeader'>;
  heartbeats: HeartbeatSource;
  logger?: Logger;
  now?: () => number;
  readyWindowMs?: number;
  checkIntervalMs?: number;
  refreshIntervalMs?: number;
}

export function stateName(state: NodeState): string {
  return state === NodeState.NODE_STATE_READY ? 'Ready' : state === NodeState.NODE_STATE_NOT_READY ? 'NotReady' : 'Unknown';
}

export class Membership {
  private readonly tracker: HeartbeatTracker;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly startedUnixMs: number;
  private readonly windowMs: number;
  private readonly records = new Map<string, Node>();
  /** When `records` was last read whole from the store (unix ms; 0 = never). */
  private recordsReadUnixMs = 0;
  /** The last live state logged per node (this controller's view). */
  private readonly logged = new Map<string, NodeState>();
  private timers: NodeJS.Timeout[] = [];
  private readonly transitionListeners = new Set<(node: string, state: NodeState) => void>();
  private checking = false;
  private refreshFailing = false;
  private stopped = false;

  constructor(private readonly opts: MembershipOptions) {
    this.now = opts.now ?? Date.now;
    this.startedUnixMs = this.now();
    this.windowMs = opts.readyWindowMs ?? READY_WINDOW_MS;
    this.tracker = new HeartbeatTracker(this.startedUnixMs, this.windowMs);
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'membership' });
  }

  /** Starts the loops, then resolves once heartbeats are being received (NATS connected and subscribed). */
  async start(): Promise<void> {
    this.timers.push(setInterval(() => void this.check(), this.opts.checkIntervalMs ?? CHECK_INTERVAL_MS));
    this.timers.push(setInterval(() => void this.refreshLogged(), this.opts.refreshIntervalMs ?? REFRESH_INTERVAL_MS));
    await this.refreshLogged();
    await this.opts.heartbeats.start((node, hb) => this.observe(node, hb));
  }

  /** Feeds one heartbeat (from the HeartbeatSource). */
  observe(node: string, hb: Heartbeat): void {
    if (this.tracker.observe(node, hb, this.now())) void this.checkOne(node);
  }

  /** When this controller started listening for heartbeats (unix ms). */
  get listeningSinceUnixMs(): number {
    return this.startedUnixMs;
  }

  /** Calls `fn(node, state)` on every live transition this controller sees; returns an unsubscribe function. */
  onTransition(fn: (node: string, state: NodeState) => void): () => void {
    this.transitionListeners.add(fn);
    return () => this.transitionListeners.delete(fn);
  }

  /** Creates or refreshes a node record (NodeService.Register). */
  async register(spec: NodeSpec, opts?: CallOptions): Promise<Node> {
    const node = await this.opts.store.registerNode(spec, opts);
    this.records.set(spec.name, node);
    this.logger.info('node registered', { node: spec.name, address: spec.address, agentVersion: spec.agentVersion });
    return this.merge(node);
  }

  /** Every node record with this controller's live status merged in. */
  /**
   * With `maxAgeMs`, the records as last read (refreshed every REFRESH_INTERVAL_MS,
   * plus registrations and transitions this controller saw) when that read is
   * at most `maxAgeMs` old: the reconciler lists nodes on every pass, and
   * reading 1,000 records from etcd each time costs more than the pass.
   */
  async list(opts?: CallOptions & { maxAgeMs?: number }): Promise<Node[]> {
    if (opts?.maxAgeMs !== undefined && this.recordsReadUnixMs > 0 && this.now() - this.recordsReadUnixMs <= opts.maxAgeMs) {
      const names = [...this.records.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return names.map((name) => this.merge(this.records.get(name) as Node));
    }
    const readAt = this.now();
    const nodes = await this.opts.store.listNodes(opts);
    for (const n of nodes) if (n.spec) this.records.set(n.spec.name, n);
    this.recordsReadUnixMs = readAt;
    return nodes.map((n) => this.merge(n));
  }

  liveStatus(node: string): LiveStatus {
    return this.tracker.status(node, this.now());
  }

  /** The record with live state, reason, last heartbeat and container count. */
  merge(node: Node): Node {
    const live = this.liveStatus(node.spec?.name ?? '');
    const persisted: NodeStatus = node.status ?? {
      state: NodeState.NODE_STATE_UNSPECIFIED, lastHeartbeatUnixMs: 0, registeredUnixMs: 0, reason: '', containers: 0,
    };
    return {
      ...node,
      status: {
        ...persisted,
        state: live.state,
        reason: live.reason,
        lastHeartbeatUnixMs: live.lastHeartbeatUnixMs || persisted.lastHeartbeatUnixMs,
        containers: live.lastHeartbeatUnixMs ? live.containers : persisted.containers,
      },
    };
  }

  /** Refreshes; the first failure of a streak is a warning, repeats are debug lines. */
  private async refreshLogged(): Promise<void> {
    try {
      await this.refresh();
      this.refreshFailing = false;
    } catch (err) {
      if (this.refreshFailing) this.logger.debug('failed to read node records', { error: messageOf(err) });
      else this.logger.warn('failed to read node records', { error: messageOf(err) });
      this.refreshFailing = true;
    }
  }

  private async refresh(): Promise<void> {
    const readAt = this.now();
    const nodes = await this.opts.store.listNodes();
    this.records.clear();
    for (const n of nodes) if (n.spec) this.records.set(n.spec.name, n);
    this.recordsReadUnixMs = readAt;
  }

  /** Evaluates every known node: logs transitions; the leader persists them. */
  async check(): Promise<void> {
    if (this.checking || this.stopped) return;
    this.checking = true;
    try {
      for (const name of new Set([...this.records.keys(), ...this.tracker.nodes()])) await this.checkOne(name);
    } finally {
      this.checking = false;
    }
  }

  private async checkOne(name: string): Promise<void> {
    if (this.stopped) return;
    const live = this.liveStatus(name);
    const before = this.logged.get(name);
    const record = this.records.get(name);
    if (before !== live.state) {
      this.logged.set(name, live.state);
      const fields = { node: name, state: stateName(live.state), previous: before === undefined ? null : stateName(before), reason: live.reason, lastHeartbeatUnixMs: live.lastHeartbeatUnixMs, registered: record !== undefined };
      if (live.state === NodeState.NODE_STATE_READY) this.logger.info('node ready', fields);
      else this.logger.warn('node not ready', fields);
      for (const fn of this.transitionListeners) fn(name, live.state);
    }
    if (!record || !this.opts.election.isLeader()) return;
    if (record.status?.state === live.state) return;
    const listenedLongEnough = this.now() - this.startedUnixMs >= this.windowMs;
    if (live.state !== NodeState.NODE_STATE_READY && !listenedLongEnough) return;
    try {
      const status: NodeStatus = {
        ...(record.status ?? { registeredUnixMs: 0, containers: 0 }),
        state: live.state,
        reason: live.reason,
        lastHeartbeatUnixMs: live.lastHeartbeatUnixMs || (record.status?.lastHeartbeatUnixMs ?? 0),
        containers: live.containers,
      };
      const saved = await this.opts.store.setNodeStatus(name, status);
      this.records.set(name, saved);
      this.logger.info('node status persisted', { node: name, state: stateName(live.state), reason: live.reason });
    } catch (err) {
      this.logger.warn('failed to persist node status', { node: name, error: messageOf(err) });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.opts.heartbeats.stop();
  }
}
