/**
 * Reconciler: carries out decide() while this controller leads.
 *
 * Lifecycle
 * - attach() subscribes to the election; each term starts a loop that ends
 *   when `term.signal` aborts (lease lost, resigned, stopped). detach() ends it.
 * - At the start of a term it reads every container record and workload from
 *   the store (adopting what an earlier leader decided), then watches
 *   workloads. A pass (decide + act) runs after any workload change, container
 *   report, node transition or finished agent call (coalesced), and at least
 *   every `resyncIntervalMs` (30 s), which also re-reads the store in case a
 *   watch missed something.
 *
 * Crash safety
 * - Records are written (one etcd transaction per pass, batched when large)
 *   before RunContainer is called for them, and RunContainer is idempotent by
 *   the record's id: a leader that dies between the two leaves a record the
 *   next leader runs again, never a container without a record.
 * - A removal first rewrites the record as REMOVED, then stops and removes the
 *   container, then deletes the record; a leader dying in between repeats the
 *   remaining steps (a NOT_FOUND from the agent counts as removed). The stop
 *   includes the replica's connection draining (the agent reports it
 *   draining, waits spec.drain_seconds, then signals it), so the container
 *   and its record stay, shown draining, until the stop has ended; a rolling
 *   update counts it as gone from the moment its record is REMOVED.
 *
 * Agent calls run in the background with bounded concurrency; a failed call is
 * retried on a later pass after a backoff (0.5 s doubling to 30 s). A
 * successful RunContainer is not repeated for RUN_SETTLE_MS while the agent's
 * report catches up.
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { isCode, messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { type Condition, type Container, type Workload, type WorkloadStatus } from '../../proto/gen/berth/v1/types.js';
import type { AgentDialer, RunOutcome } from '../agents/index.js';
import type { Membership, ObservedState } from '../nodes/index.js';
import type { ContainerRecordStore, LeaderElection, LeadershipTerm, NodeStore, VolumeStore, WorkloadStore } from '../store/index.js';
import { containerSpecFor, decide, templateKey, type ReconcileNode, type RemoveAction, type Rollback } from './decide.js';
import type { EventSink } from './events.js';
import { reconcileNodes } from './nodes.js';
import { rollbackCause } from './progress.js';

export const RESYNC_INTERVAL_MS = 30_000;
/** How long a successful RunContainer is not repeated while waiting for the report. */
export const RUN_SETTLE_MS = 15_000;
/** Agent calls in flight (each call starts up to RUN_BATCH containers on one node). */
export const DEFAULT_CONCURRENCY = 128;
/** A pass may use node records read this long ago (cordons and new registrations show within it). */
export const NODE_RECORDS_MAX_AGE_MS = 1000;
/** Most containers started on one node by one agent call (AgentBatchService.RunContainers). */
export const RUN_BATCH = 100;
/** A new controller listens this long (a heartbeat interval plus slack) before its first pass. */
export const FIRST_HEARTBEATS_MS = 1500;
/** The same decision (reason, name, message) is recorded as an event at most this often. */
export const EVENT_REPEAT_MS = 60_000;
/** Seconds between SIGTERM and SIGKILL when the reconciler stops a replica. */
export const STOP_GRACE_SECONDS = 10;

export interface ReconcilerOptions {
  store: Pick<WorkloadStore, 'listWorkloads' | 'watchWorkloads' | 'workloadHistory' | 'applyWorkloads'> & Pick<ContainerRecordStore, 'listContainerRecords' | 'getContainerRecord' | 'writeContainerRecords' | 'setWorkloadStatus'>
    & Pick<NodeStore, 'listDrainingNodes'>;
  election: Pick<LeaderElection, 'onTerm'>;
  membership: Pick<Membership, 'list' | 'onTransition' | 'listeningSinceUnixMs'>;
  observed: ObservedState;
  agents: AgentDialer;
  /** Volume records: replicas that mount an existing volume go to its node; first uses are recorded here. */
  volumes?: Pick<VolumeStore, 'listVolumes' | 'createVolume'>;
  /** Where decisions are recorded as events (etcd history + NATS). */
  events?: EventSink;
  logger?: Logger;
  now?: () => number;
  newId?: () => string;
  resyncIntervalMs?: number;
  concurrency?: number;
  /** Delay used to coalesce triggers into one pass, ms (default 20). */
  coalesceMs?: number;
}

interface Backoff {
  failures: number;
  nextUnixMs: number;
  /**
   * Failed starts that count against the revision (and roll it back at
   * ROLLBACK_AFTER_FAILURES): not those where the node's agent could not be
   * reached, which say nothing about the revision (a node that died keeps
   * failing calls until it is NotReady and its replicas move).
   */
  revisionFailures: number;
}

/** The agent call did not get an answer from the agent (node down, link cut, too slow). */
function unreachable(err: unknown): boolean {
  return isCode(err, 'unavailable') || isCode(err, 'deadline_exceeded') || isCode(err, 'cancelled');
}

/** State of one term; thrown away when the term ends. */
class TermState {
  readonly workloads = new Map<string, Workload>();
  readonly records = new Map<string, Container>();
  readonly inflight = new Set<string>();
  readonly ranAt = new Map<string, number>();
  readonly backoff = new Map<string, Backoff>();
  readonly statuses = new Map<string, WorkloadStatus>();
  /** Records this term wrote and has not run yet (known current; no need to re-read before the first run). */
  readonly fresh = new Set<string>();
  /** Records whose container an agent has reported at least once since it was last run. */
  readonly seen = new Set<string>();
  /** Events recorded recently (reason, name, message -> unix ms), so a repeated decision is recorded once a minute at most. */
  readonly recentEvents = new Map<string, number>();
  /** Rollouts already rolled back this term (workload/revision). */
  readonly rolledBack = new Set<string>();
  /** Each node's condition as the last pass saw it (node events are recorded on changes). */
  readonly nodeConditions = new Map<string, ReconcileNode['condition']>();
  wake: (() => void) | undefined;
  dirty = true;
  running = 0;
  readonly queue: (() => Promise<void>)[] = [];
  passes = 0;
  /** How long the last pass took, ms: the next one waits at least this long, so passes use at most half the time. */
  lastPassMs = 0;
  constructor(readonly term: LeadershipTerm) {}
}

function sameStatus(a: WorkloadStatus | undefined, b: WorkloadStatus): boolean {
  if (!a) return false;
  const strip = (s: WorkloadStatus): string => JSON.stringify({ ...s, conditions: s.conditions.map((c) => ({ ...c, sinceUnixMs: 0 })) });
  return strip(a) === strip(b);
}

/** Keeps each condition's `since` while its status and reason stay the same. */
function carrySince(prev: WorkloadStatus | undefined, next: WorkloadStatus): WorkloadStatus {
  const conditions = next.conditions.map((c): Condition => {
    const p = prev?.conditions.find((x) => x.type === c.type);
    return p && p.status === c.status && p.reason === c.reason ? { ...c, sinceUnixMs: p.sinceUnixMs } : c;
  });
  return { ...next, conditions };
}

export class Reconciler {
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly newId: () => string;
  private unsubscribe: (() => void) | undefined;
  private state: TermState | undefined;
  /** Passes run (all terms); for tests and metrics. */
  passes = 0;

  constructor(private readonly opts: ReconcilerOptions) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'reconciler' });
    this.now = opts.now ?? Date.now;
    this.newId = opts.newId ?? (() => randomBytes(32).toString('hex'));
  }

  /** Starts reconciling during every term of this controller. */
  attach(): void {
    this.unsubscribe ??= this.opts.election.onTerm((term) => {
      void this.runTerm(term).catch((err: unknown) => this.logger.error('reconcile loop failed', { error: messageOf(err) }));
    });
  }

  detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Asks for a pass soon (coalesced). */
  trigger(): void {
    const s = this.state;
    if (!s) return;
    s.dirty = true;
    s.wake?.();
  }

  private async runTerm(term: LeadershipTerm): Promise<void> {
    const s = new TermState(term);
    this.state = s;
    const signal = term.signal;
    // Every store and agent call of the term listens on this signal; many run at once.
    setMaxListeners(0, signal);
    this.logger.info('reconciler started', { controllerId: term.controllerId });
    const unsubs: (() => void)[] = [
      this.opts.observed.onChange(() => this.trigger()),
      this.opts.membership.onTransition(() => this.trigger()),
    ];
    const resync = setInterval(() => void this.resync(s).then(() => this.trigger(), () => undefined), this.opts.resyncIntervalMs ?? RESYNC_INTERVAL_MS);
    const wait = (ms: number): Promise<void> => new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
    try {
      // Adopt what is stored; retry until it works or the term ends.
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          await this.resync(s);
          break;
        } catch (err) {
          this.logger.warn('failed to read the desired state; retrying', { error: messageOf(err), attempt });
          await wait(1000);
        }
      }
      void this.watch(s);
      // A controller that just started has not heard every node's first heartbeat yet; placing
      // now would put every new replica on the first node heard from.
      const listened = this.now() - this.opts.membership.listeningSinceUnixMs;
      if (listened < FIRST_HEARTBEATS_MS) await wait(FIRST_HEARTBEATS_MS - listened);
      while (!signal.aborted) {
        if (!s.dirty) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              signal.removeEventListener('abort', done);
              resolve();
            };
            s.wake = done;
            signal.addEventListener('abort', done, { once: true });
          });
          s.wake = undefined;
          continue;
        }
        await wait(Math.max(this.opts.coalesceMs ?? 20, s.lastPassMs));
        if (signal.aborted) break;
        s.dirty = false;
        const started = this.now();
        try {
          await this.pass(s);
          s.lastPassMs = Math.min(this.now() - started, 1000);
        } catch (err) {
          if (signal.aborted) break;
          this.logger.warn('reconcile pass failed; retrying', { error: messageOf(err) });
          await wait(1000);
          s.dirty = true;
        }
      }
    } finally {
      clearInterval(resync);
      for (const u of unsubs) u();
      if (this.state === s) this.state = undefined;
      this.logger.info('reconciler stopped', { controllerId: term.controllerId });
    }
  }

  private async resync(s: TermState): Promise<void> {
    const signal = s.term.signal;
    const [workloads, records] = await Promise.all([
      this.opts.store.listWorkloads(undefined, { signal }),
      this.opts.store.listContainerRecords({}, { signal }),
    ]);
    s.workloads.clear();
    for (const w of workloads) s.workloads.set(w.metadata?.name ?? '', w);
    s.records.clear();
    for (const r of records) s.records.set(r.id, r);
  }

  private async watch(s: TermState): Promise<void> {
    const signal = s.term.signal;
    while (!signal.aborted) {
      try {
        for await (const change of this.opts.store.watchWorkloads({ signal })) {
          const name = change.workload.metadata?.name ?? '';
          if (change.type === 'deleted') s.workloads.delete(name);
          else s.workloads.set(name, change.workload);
          this.trigger();
        }
      } catch (err) {
        if (signal.aborted) return;
        this.logger.warn('workload watch failed; restarting', { error: messageOf(err) });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private async nodes(s: TermState): Promise<{ nodes: ReconcileNode[]; addresses: Map<string, string> }> {
    const [list, draining] = await Promise.all([
      this.opts.membership.list({ signal: s.term.signal, maxAgeMs: NODE_RECORDS_MAX_AGE_MS }),
      this.opts.store.listDrainingNodes({ signal: s.term.signal }),
    ]);
    const addresses = new Map<string, string>();
    for (const n of list) if (n.spec) addresses.set(n.spec.name, n.spec.address);
    const nodes = reconcileNodes(list, this.now() - this.opts.membership.listeningSinceUnixMs, new Set(draining));
    return { nodes, addresses };
  }

  /** One evaluation: decide, write records, write statuses, start agent calls. */
  private async pass(s: TermState): Promise<void> {
    const signal = s.term.signal;
    const { nodes, addresses } = await this.nodes(s);
    for (const n of nodes) {
      const before = s.nodeConditions.get(n.name);
      s.nodeConditions.set(n.name, n.condition);
      if (before === n.condition || n.condition === 'unknown') continue;
      if (n.condition === 'lost') {
        this.opts.events?.emit({ kind: 'node', name: n.name, reason: 'NodeNotReady', node: n.name, workload: '', severity: 'warning', message: `node "${n.name}" is not ready: no heartbeat for 5 s; its replicas are placed elsewhere` });
      } else if (before === 'lost') {
        this.opts.events?.emit({ kind: 'node', name: n.name, reason: 'NodeReady', node: n.name, workload: '', severity: 'normal', message: `node "${n.name}" is ready again` });
      }
    }
    const observed = nodes.map((n) => ({ node: n.name, synced: this.opts.observed.synced(n.name), containers: this.opts.observed.containers(n.name) }));
    for (const o of observed) for (const c of o.containers) if (s.records.has(c.id)) s.seen.add(c.id);
    s.passes++;
    this.passes++;
    const evalId = `${s.term.controllerId}/${s.term.startedUnixMs}/${s.passes}`;
    const volumes = this.opts.volumes ? new Map((await this.opts.volumes.listVolumes({ signal })).map((v) => [v.name, v.node])) : undefined;
    const plan = decide({
      workloads: [...s.workloads.values()], records: [...s.records.values()], nodes, observed, evalId, now: this.now(), newId: this.newId,
      startFailures: new Map([...s.backoff.entries()].map(([id, b]) => [id, b.revisionFailures])),
      ...(volumes ? { volumes } : {}),
    });
    for (const rb of plan.rollbacks) await this.rollback(s, rb);
    // Volumes used for the first time are recorded on their node before the replicas that made them run.
    for (const c of plan.claimVolumes ?? []) {
      await this.opts.volumes?.createVolume({ name: c.name, node: c.node, mountpoint: '', createdUnixMs: this.now(), labels: {}, inUseBy: [] }, { signal }).catch((err: unknown) => {
        if (!isCode(err, 'already_exists')) throw err;
      });
    }

    const put = [...plan.create, ...plan.markRemoved];
    if (put.length > 0 || plan.deleteRecords.length > 0) {
      await this.opts.store.writeContainerRecords({ put, delete: plan.deleteRecords }, { signal });
      for (const r of put) s.records.set(r.id, r);
      for (const r of plan.create) s.fresh.add(r.id);
      for (const id of plan.deleteRecords) {
        s.records.delete(id);
        s.ranAt.delete(id);
        s.backoff.delete(id);
        s.fresh.delete(id);
        s.seen.delete(id);
      }
    }
    const nowMs = this.now();
    for (const [k, t] of s.recentEvents) if (nowMs - t >= EVENT_REPEAT_MS) s.recentEvents.delete(k);
    for (const e of plan.events) {
      const key = `${e.reason}\u0000${e.name}\u0000${e.message}`;
      if (s.recentEvents.has(key)) continue;
      s.recentEvents.set(key, nowMs);
      const fields = { kind: e.kind, name: e.name, reason: e.reason, node: e.node, message: e.message };
      if (e.severity === 'warning') this.logger.warn('event', fields);
      // Checked first: thousands of events per pass cost even when the level drops them.
      else if (this.logger.isInfoEnabled()) this.logger.info('event', fields);
      this.opts.events?.emit({ ...e, workload: e.workload });
    }

    await Promise.all([...plan.statuses].map(async ([name, status]) => {
      const prev = s.statuses.get(name);
      const next = carrySince(prev, status);
      if (sameStatus(prev, next)) return;
      try {
        await this.opts.store.setWorkloadStatus(name, next, { signal });
        s.statuses.set(name, next);
      } catch (err) {
        if (!isCode(err, 'not_found')) this.logger.warn('failed to write workload status', { workload: name, error: messageOf(err) });
      }
    }));
    for (const name of [...s.statuses.keys()]) if (!plan.statuses.has(name)) s.statuses.delete(name);

    const now = this.now();
    // Starts go to each node in batches: one agent call per node rather than one per replica.
    const runs = new Map<string, Container[]>();
    for (const r of plan.run) {
      const address = addresses.get(r.node);
      if (!address || s.inflight.has(r.id)) continue;
      const ran = s.ranAt.get(r.id);
      // Wait for the report after a run, unless the container was reported and is gone again.
      if (ran !== undefined && now - ran < RUN_SETTLE_MS && !s.seen.has(r.id)) continue;
      if ((s.backoff.get(r.id)?.nextUnixMs ?? 0) > now) continue;
      const list = runs.get(r.node);
      if (list) list.push(r);
      else runs.set(r.node, [r]);
    }
    for (const [node, list] of runs) {
      const address = addresses.get(node) as string;
      for (let i = 0; i < list.length; i += RUN_BATCH) this.enqueueRuns(s, node, address, list.slice(i, i + RUN_BATCH));
    }
    for (const rm of plan.remove) {
      const address = addresses.get(rm.node);
      if (!address || s.inflight.has(rm.id)) continue;
      if ((s.backoff.get(rm.id)?.nextUnixMs ?? 0) > now) continue;
      this.enqueue(s, rm.id, { reason: 'RemoveFailed', name: rm.name, node: rm.node, workload: rm.workload }, () => this.remove(s, rm, address));
    }
  }

  private enqueue(s: TermState, id: string, what: { reason: string; name: string; node: string; workload: string }, task: () => Promise<void>): void {
    s.inflight.add(id);
    s.queue.push(async () => {
      try {
        await task();
        s.backoff.delete(id);
      } catch (err) {
        this.failed(s, id, what, err);
      } finally {
        s.inflight.delete(id);
        this.trigger();
      }
    });
    this.drain(s);
  }

  /** Starts records on one node with one agent call; each record succeeds or fails (and backs off) on its own. */
  private enqueueRuns(s: TermState, node: string, address: string, records: readonly Container[]): void {
    for (const r of records) s.inflight.add(r.id);
    s.queue.push(async () => {
      let failures: Map<string, unknown>;
      try {
        failures = await this.runMany(s, node, address, records);
      } catch (err) {
        failures = new Map(records.map((r) => [r.id, err]));
      }
      for (const r of records) {
        const err = failures.get(r.id);
        if (failures.has(r.id)) this.failed(s, r.id, { reason: 'StartFailed', name: r.name, node: r.node, workload: r.workload }, err);
        else s.backoff.delete(r.id);
        s.inflight.delete(r.id);
      }
      this.trigger();
    });
    this.drain(s);
  }

  /** Backs a failed agent call off (0.5 s doubling to 30 s) and records it as an event. */
  private failed(s: TermState, id: string, what: { reason: string; name: string; node: string; workload: string }, err: unknown): void {
    if (s.term.signal.aborted) return;
    const b = s.backoff.get(id) ?? { failures: 0, nextUnixMs: 0, revisionFailures: 0 };
    b.failures++;
    if (what.reason === 'StartFailed' && !unreachable(err)) b.revisionFailures++;
    const delay = Math.min(500 * 2 ** (b.failures - 1), 30_000);
    b.nextUnixMs = this.now() + delay;
    s.backoff.set(id, b);
    this.logger.warn('agent call failed; will retry', { containerId: id, failures: b.failures, retryInMs: delay, error: messageOf(err) });
    const message = `${what.reason === 'StartFailed' ? 'failed to start' : 'failed to remove'} "${what.name}" on node "${what.node}": ${messageOf(err)}; retrying in ${Math.round(delay / 1000)} s`;
    const key = `${what.reason}\u0000${what.name}\u0000${messageOf(err)}`;
    if (!s.recentEvents.has(key)) {
      s.recentEvents.set(key, this.now());
      this.opts.events?.emit({ kind: 'container', name: what.name, reason: what.reason, node: what.node, workload: what.workload, severity: 'warning', message });
    }
    setTimeout(() => this.trigger(), delay).unref();
  }

  private drain(s: TermState): void {
    const limit = this.opts.concurrency ?? DEFAULT_CONCURRENCY;
    while (s.running < limit && s.queue.length > 0) {
      const task = s.queue.shift() as () => Promise<void>;
      s.running++;
      void task().finally(() => {
        s.running--;
        this.drain(s);
      });
    }
  }

  /** Returns a workload to the newest earlier revision whose replicas worked (a new revision, cause "rollback to N: revision M failed: why"). */
  private async rollback(s: TermState, rb: Rollback): Promise<void> {
    const key = `${rb.workload}/${rb.revision}`;
    if (s.rolledBack.has(key)) return;
    s.rolledBack.add(key);
    const signal = s.term.signal;
    try {
      const history = await this.opts.store.workloadHistory(rb.workload, { signal });
      const target = [...history].reverse().find((h) => h.revision < rb.revision && templateKey(containerSpecFor(rb.workload, h.spec)) === rb.toTemplate);
      const w = s.workloads.get(rb.workload);
      if (!target?.spec || !w?.spec) {
        this.logger.warn('no earlier revision to roll back to', { workload: rb.workload, revision: rb.revision });
        return;
      }
      const spec = { ...target.spec, replicas: w.spec.replicas };
      const [outcome] = await this.opts.store.applyWorkloads([{ name: rb.workload, labels: { ...(w.metadata?.labels ?? {}) }, spec }], { signal, cause: rollbackCause(target.revision, rb.revision, rb.reason) });
      const message = `rolled back revision ${rb.revision} to revision ${target.revision} (now revision ${outcome?.revision ?? '?'}): ${rb.reason}`;
      this.logger.warn('event', { kind: 'workload', name: rb.workload, reason: 'RolledBack', message });
      this.opts.events?.emit({ kind: 'workload', name: rb.workload, reason: 'RolledBack', node: '', workload: rb.workload, severity: 'warning', message });
    } catch (err) {
      s.rolledBack.delete(key);
      this.logger.warn('failed to roll back', { workload: rb.workload, revision: rb.revision, error: messageOf(err) });
    }
  }

  /** A record adopted from the store or run before: is it still wanted as it is? (ContainerService.Remove on any controller may have removed it.) */
  private async stillWanted(s: TermState, r: Container): Promise<boolean> {
    if (s.fresh.has(r.id)) return true;
    let stored: Container | undefined;
    try {
      stored = await this.opts.store.getContainerRecord(r.id, { signal: s.term.signal });
    } catch (err) {
      if (!isCode(err, 'not_found')) throw err;
    }
    if (!stored || stored.desiredState !== r.desiredState || stored.node !== r.node) {
      if (stored) s.records.set(r.id, stored);
      else s.records.delete(r.id);
      return false;
    }
    return true;
  }

  /** Runs records on one node (one batch call); returns the failures by record id. */
  private async runMany(s: TermState, node: string, address: string, records: readonly Container[]): Promise<Map<string, unknown>> {
    const failures = new Map<string, unknown>();
    const wanted: Container[] = [];
    await Promise.all(records.map(async (r) => {
      try {
        if (await this.stillWanted(s, r)) wanted.push(r);
      } catch (err) {
        failures.set(r.id, err);
      }
    }));
    if (wanted.length === 0) return failures;
    for (const r of wanted) {
      s.fresh.delete(r.id);
      s.seen.delete(r.id);
    }
    const agent = this.opts.agents.agent(node, address);
    const signal = s.term.signal;
    const reqs = wanted.map((r) => ({
      id: r.id, name: r.name, ...(r.spec ? { spec: r.spec } : {}), workload: r.workload, revision: r.revision, replica: r.replica,
    }));
    const outcomes: RunOutcome[] | { id: string; error?: unknown }[] = agent.runContainers
      ? await agent.runContainers(reqs, { signal })
      : await Promise.all(reqs.map((req) => agent.runContainer(req, { signal }).then(() => ({ id: req.id }), (error: unknown) => ({ id: req.id, error }))));
    const byId = new Map(wanted.map((r) => [r.id, r]));
    for (const o of outcomes) {
      const r = byId.get(o.id);
      if (!r) continue;
      if (o.error !== undefined) {
        failures.set(o.id, o.error);
        continue;
      }
      s.ranAt.set(r.id, this.now());
      const message = `agent of node "${r.node}" runs "${r.name}"`;
      if (this.logger.isInfoEnabled()) this.logger.info('event', { kind: 'container', name: r.name, reason: 'Started', node: r.node, message });
      this.opts.events?.emit({ kind: 'container', name: r.name, reason: 'Started', node: r.node, message, severity: 'normal', workload: r.workload });
    }
    return failures;
  }

  private async remove(s: TermState, rm: RemoveAction, address: string): Promise<void> {
    const agent = this.opts.agents.agent(rm.node, address);
    const signal = s.term.signal;
    try {
      await agent.stopContainer({ id: rm.id, graceSeconds: STOP_GRACE_SECONDS }, { signal });
    } catch (err) {
      if (!isCode(err, 'not_found')) throw err;
    }
    try {
      await agent.removeContainer({ id: rm.id, force: true }, { signal });
    } catch (err) {
      if (!isCode(err, 'not_found')) throw err;
    }
    this.opts.observed.forget(rm.node, rm.id);
    if (rm.deleteRecord && s.records.has(rm.id)) {
      await this.opts.store.writeContainerRecords({ delete: [rm.id] }, { signal });
      s.records.delete(rm.id);
      s.ranAt.delete(rm.id);
    }
    const message = `removed "${rm.name}" from node "${rm.node}"`;
    this.logger.info('event', { kind: 'container', name: rm.name, reason: 'Removed', node: rm.node, message });
    this.opts.events?.emit({ kind: 'container', name: rm.name, reason: 'Removed', node: rm.node, message, severity: 'normal', workload: rm.workload });
  }
}
